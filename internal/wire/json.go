// Package wire holds the JSON protocol of docs/PROTOCOL.md: the encoding of
// server frames, shared by every transport that speaks JSON (WebSocket, SSE),
// and the decoding of client commands.
package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/gofanout/fanout"
)

// JSON is the encoding of a message as a "msg" frame. Each message is
// encoded once however many sessions receive it.
var JSON = fanout.NewEncoding("json", func(m *fanout.Message) []byte {
	return appendMessage(make([]byte, 0, 96+len(m.Topic)+len(m.Key)+len(m.Data)*4/3), m)
})

func appendMessage(b []byte, m *fanout.Message) []byte {
	b = append(b, `{"type":"msg","topic":`...)
	b = appendString(b, m.Topic)
	b = append(b, `,"epoch":`...)
	b = appendString(b, m.Position.Epoch)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, m.Position.Seq, 10)
	if m.Key != "" {
		b = append(b, `,"key":`...)
		b = appendString(b, m.Key)
	}
	if !m.Time.IsZero() {
		b = append(b, `,"time":`...)
		b = strconv.AppendInt(b, m.Time.UnixMilli(), 10)
	}
	if len(m.Header) > 0 {
		h, _ := json.Marshal(m.Header)
		b = append(b, `,"header":`...)
		b = append(b, h...)
	}
	b = AppendData(b, m.Data)
	return append(b, '}')
}

// AppendData appends the payload as `,"data":<json>` when it is valid JSON
// in valid UTF-8 that a JSON decoder hands back byte for byte (no line
// breaks, which separate frames, and no surrounding white space), and as
// `,"data64":"<base64>"` otherwise, so that any bytes travel unchanged.
// (encoding/json accepts invalid UTF-8 inside strings, which a WebSocket text
// message must not carry.)
func AppendData(b, data []byte) []byte {
	if len(data) > 0 && !bytes.ContainsAny(data, "\n\r") && !isSpace(data[0]) && !isSpace(data[len(data)-1]) &&
		utf8.Valid(data) && json.Valid(data) {
		b = append(b, `,"data":`...)
		return append(b, data...)
	}
	b = append(b, `,"data64":"`...)
	b = base64.StdEncoding.AppendEncode(b, data)
	return append(b, '"')
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// AppendFrame appends f as one line of JSON, without the newline.
func AppendFrame(b []byte, f fanout.Frame) []byte {
	switch f.Type {
	case fanout.FrameMessage:
		return append(b, f.Message.Encode(JSON)...)
	case fanout.FrameReply:
		return appendReply(b, f.Reply)
	case fanout.FrameSnapshot:
		s := f.Snapshot
		b = append(b, `{"type":"snapshot","topic":`...)
		b = appendString(b, s.Topic)
		b = append(b, `,"position":`...)
		b = AppendPosition(b, s.Position)
		b = append(b, `,"items":[`...)
		for i, m := range s.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, m.Encode(JSON)...)
		}
		return append(b, "]}"...)
	case fanout.FrameClose:
		c := f.Close
		b = append(b, `{"type":"close","code":`...)
		b = strconv.AppendInt(b, int64(c.Code), 10)
		b = append(b, `,"reason":`...)
		b = appendString(b, c.Reason)
		b = append(b, `,"reconnect":`...)
		b = strconv.AppendBool(b, c.Reconnect)
		return append(b, '}')
	}
	panic(fmt.Sprintf("wire: unknown frame type %d", f.Type))
}

func appendReply(b []byte, r *fanout.Reply) []byte {
	b = append(b, `{"type":"reply","id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, r.Err == nil)
	if r.Topic != "" {
		b = append(b, `,"topic":`...)
		b = appendString(b, r.Topic)
	}
	if r.Err != nil {
		b = append(b, `,"error":{"code":`...)
		b = appendString(b, fanout.ErrorCode(r.Err))
		b = append(b, `,"message":`...)
		b = appendString(b, r.Err.Error())
		b = append(b, '}')
	}
	if r.Position != nil {
		b = append(b, `,"position":`...)
		b = AppendPosition(b, *r.Position)
	}
	if r.Recovered != nil {
		b = append(b, `,"recovered":`...)
		b = strconv.AppendBool(b, *r.Recovered)
	}
	return append(b, '}')
}

// AppendPosition appends p as {"epoch":"…","seq":N}.
func AppendPosition(b []byte, p fanout.Position) []byte {
	b = append(b, `{"epoch":`...)
	b = appendString(b, p.Epoch)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	return append(b, '}')
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
