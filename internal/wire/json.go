// Package wire is the JSON protocol of docs/PROTOCOL.md, in both
// directions: client commands ([Command], decoded by the server with
// [ParseCommand], encoded by the Go client with [AppendCommand]) and
// server frames (encoded by the transports that speak JSON, WebSocket and
// Server-Sent Events, with [AppendFrame] and [JSON]; decoded by the Go
// client and the tests with [ParseFrame]). The rule for "data" and
// "data64" and the strict decoding of objects live in internal/payload,
// which the HTTP publish endpoint shares.
package wire

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/payload"
)

// JSON is the encoding of a message as a "msg" frame. Each message is
// encoded once however many sessions receive it.
var JSON = fanout.NewEncoding("json", func(m *fanout.Message) []byte {
	n := 96 + len(m.Topic) + len(m.Key) + len(m.Data)*4/3
	for k, v := range m.Header {
		n += len(k) + len(v) + 8
	}
	return appendMessage(make([]byte, 0, n), m)
})

// appendMessage appends m as a msg frame: type, topic, epoch, seq, then
// key, time and header when set, then data or data64.
func appendMessage(b []byte, m *fanout.Message) []byte {
	b = append(b, `{"type":"msg","topic":`...)
	b = payload.AppendString(b, m.Topic)
	b = append(b, `,"epoch":`...)
	b = payload.AppendString(b, m.Position.Epoch)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, m.Position.Seq, 10)
	if m.Key != "" {
		b = append(b, `,"key":`...)
		b = payload.AppendString(b, m.Key)
	}
	if !m.Time.IsZero() {
		b = append(b, `,"time":`...)
		b = strconv.AppendInt(b, m.Time.UnixMilli(), 10)
	}
	if len(m.Header) > 0 {
		b = append(b, `,"header":`...)
		b = payload.AppendStringMap(b, m.Header)
	}
	b = payload.AppendData(b, m.Data)
	return append(b, '}')
}

// AppendFrame appends f as one line of JSON, without the newline.
func AppendFrame(b []byte, f fanout.Frame) []byte {
	switch f.Type {
	case fanout.FrameMessage:
		return append(b, f.Message.Encode(JSON)...)
	case fanout.FrameReply:
		r := f.Reply
		var e *Error
		if r.Err != nil {
			e = &Error{Code: fanout.ErrorCode(r.Err), Message: fanout.ErrorMessage(r.Err)}
		}
		return appendReply(b, r.ID, r.Topic, e, r.Position, r.Recovered, r.ExpiresAt, r.Presence, r.Count)
	case fanout.FrameSnapshot:
		s := f.Snapshot
		return appendSnapshot(b, s.Topic, s.Position, s.Items)
	case fanout.FrameClose:
		c := f.Close
		return appendClose(b, c.Code, c.Reason, c.Reconnect)
	case fanout.FrameSubscribed:
		r := f.Reply
		return appendSubscribed(b, r.Topic, r.Position, r.Snapshot)
	case fanout.FrameUnsubscribed:
		return appendUnsubscribed(b, f.Reply.Topic)
	case fanout.FrameExpiry:
		return appendExpiry(b, f.Expiry.ExpiresAt)
	case fanout.FrameJoin, fanout.FrameLeave:
		return appendPresenceEvent(b, f.Event)
	}
	panic(fmt.Sprintf("wire: unknown frame type %d", f.Type))
}

func appendReply(b []byte, id, topic string, e *Error, pos *fanout.Position, recovered *bool, expires time.Time, presence []fanout.ClientInfo, count *int) []byte {
	b = append(b, `{"type":"reply","id":`...)
	b = payload.AppendString(b, id)
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, e == nil)
	if topic != "" {
		b = append(b, `,"topic":`...)
		b = payload.AppendString(b, topic)
	}
	if e != nil {
		b = append(b, `,"error":{"code":`...)
		b = payload.AppendString(b, e.Code)
		b = append(b, `,"message":`...)
		b = payload.AppendString(b, e.Message)
		b = append(b, '}')
	}
	if pos != nil {
		b = append(b, `,"position":`...)
		b = AppendPosition(b, *pos)
	}
	if recovered != nil {
		b = append(b, `,"recovered":`...)
		b = strconv.AppendBool(b, *recovered)
	}
	b = appendExpires(b, expires)
	b = appendPresenceReply(b, presence, count)
	return append(b, '}')
}

func appendSnapshot(b []byte, topic string, pos fanout.Position, items []*fanout.Message) []byte {
	b = append(b, `{"type":"snapshot","topic":`...)
	b = payload.AppendString(b, topic)
	b = append(b, `,"position":`...)
	b = AppendPosition(b, pos)
	b = append(b, `,"items":[`...)
	for i, m := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Encode(JSON)...)
	}
	return append(b, "]}"...)
}

func appendClose(b []byte, code fanout.CloseCode, reason string, reconnect bool) []byte {
	b = append(b, `{"type":"close","code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"reason":`...)
	b = payload.AppendString(b, reason)
	b = append(b, `,"reconnect":`...)
	b = strconv.AppendBool(b, reconnect)
	return append(b, '}')
}

// AppendPosition appends p as {"epoch":"…","seq":N}.
func AppendPosition(b []byte, p fanout.Position) []byte {
	b = append(b, `{"epoch":`...)
	b = payload.AppendString(b, p.Epoch)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	return append(b, '}')
}
