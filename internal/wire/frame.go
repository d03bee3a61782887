package wire

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/payload"
)

// Frame types, the "type" of a server frame.
const (
	FrameReply    = "reply"
	FrameMsg      = "msg"
	FrameSnapshot = "snapshot"
	FrameClose    = "close"
)

// Frame types of server-side subscriptions (see subscribed.go).
const (
	FrameSubscribed   = "subscribed"
	FrameUnsubscribed = "unsubscribed"
)

// Error is the error of a failed reply: a code of the protocol's table
// (see [fanout.ErrorCode]) and a message for people.
type Error struct {
	Code    string
	Message string
}

// Frame is one server frame as a client decodes it. Type says which
// fields are set:
//
//   - reply: ID, OK, Error (when not OK), and Topic, Position, Recovered
//     when the server sent them
//   - msg: Message, and Topic (the message's)
//   - snapshot: Topic, Position, Items
//   - close: Code, Reason, Reconnect
//   - subscribed: Topic, Position, Snapshot
//   - unsubscribed: Topic
//   - expiry: Expires
//
// A reply to auth or refresh carries Expires too, unless the credentials
// never expire.
//   - join, leave: Topic, Client
//
// A reply to presence has Presence, one to presence_count has Count.
type Frame struct {
	Type string

	ID        string
	OK        bool
	Error     *Error
	Recovered *bool

	Topic    string
	Position *fanout.Position

	Message *fanout.Message
	Items   []*fanout.Message

	Code      fanout.CloseCode
	Reason    string
	Reconnect bool

	// Snapshot: a snapshot frame follows this subscribed frame.
	Snapshot bool
	Expires  time.Time
	Presence []fanout.ClientInfo
	Count    *int
	Client   *fanout.ClientInfo
}

// ErrMalformed matches every error of the frame decoder.
var ErrMalformed = errors.New("wire: malformed server frame")

// ParseFrame decodes one frame strictly: field names exactly as
// documented, no member twice, no unknown field or frame type, the fields
// each type requires. Its errors match [ErrMalformed].
func ParseFrame(b []byte) (Frame, error) { return parseFrame(b, true) }

// ParseFrames appends the frames of one WebSocket message to dst: frames
// separated by "\n" (JSON strings escape line breaks, so a line feed
// always ends a frame). With strict, each frame is decoded as by
// [ParseFrame]. Without, as a client that a newer server may talk to
// does: unknown fields are ignored, and frames of unknown types and empty
// lines are skipped.
func ParseFrames(dst []Frame, b []byte, strict bool) ([]Frame, error) {
	for len(b) > 0 || strict {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if !strict && len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f, err := parseFrame(line, strict)
		if err != nil {
			return dst, err
		}
		if f.Type != "" {
			dst = append(dst, f)
		}
		if b == nil {
			break
		}
	}
	return dst, nil
}

// Frame field names, besides those of commands.
const (
	fieldOK        = "ok"
	fieldError     = "error"
	fieldCode      = "code"
	fieldMessage   = "message"
	fieldPosition  = "position"
	fieldRecovered = "recovered"
	fieldTime      = "time"
	fieldItems     = "items"
	fieldReason    = "reason"
	fieldReconnect = "reconnect"
)

// parseFrame decodes one frame. Without strict, a frame of an unknown
// type comes back with an empty Type.
func parseFrame(b []byte, strict bool) (Frame, error) {
	var arr [10]payload.Member
	ms, err := payload.Members(arr[:0], b)
	if err != nil {
		return Frame{}, malformed(err)
	}
	var typ string
	for _, m := range ms {
		if m.Name == fieldType {
			if typ, err = payload.String(m.Name, m.Value); err != nil {
				return Frame{}, malformed(err)
			}
		}
	}
	var f Frame
	switch typ {
	case FrameReply:
		f, err = parseReply(ms, strict)
	case FrameMsg:
		f.Message, err = parseMessage(ms, strict)
		if err == nil {
			f.Topic = f.Message.Topic
		}
	case FrameSnapshot:
		f, err = parseSnapshot(ms, strict)
	case FrameClose:
		f, err = parseClose(ms, strict)
	case FrameSubscribed, FrameUnsubscribed:
		f, err = parseSubscribed(typ, ms, strict)
	case FrameExpiry:
		f, err = parseExpiry(ms, strict)
	case FrameJoin, FrameLeave:
		f, err = parsePresenceEvent(ms, strict)
	case "":
		return Frame{}, malformed(fmt.Errorf("missing %q", fieldType))
	default:
		if strict {
			return Frame{}, malformed(fmt.Errorf("unknown frame type %q", typ))
		}
		return Frame{}, nil
	}
	if err != nil {
		return Frame{}, malformed(fmt.Errorf("%s: %w", typ, err))
	}
	f.Type = typ
	return f, nil
}

func malformed(err error) error { return fmt.Errorf("%w: %v", ErrMalformed, err) }

func parseReply(ms []payload.Member, strict bool) (Frame, error) {
	var f Frame
	var err error
	ok := false
	for _, m := range ms {
		switch m.Name {
		case fieldType:
		case fieldID:
			f.ID, err = payload.String(m.Name, m.Value)
		case fieldOK:
			ok = true
			f.OK, err = payload.Bool(m.Name, m.Value)
		case payload.FieldTopic:
			f.Topic, err = payload.String(m.Name, m.Value)
		case fieldError:
			f.Error, err = parseError(m.Value)
		case fieldPosition:
			var p fanout.Position
			p, err = parsePosition(m.Name, m.Value)
			f.Position = &p
		case fieldRecovered:
			var r bool
			r, err = payload.Bool(m.Name, m.Value)
			f.Recovered = &r
		case fieldExpires:
			f.Expires, err = parseExpires(m.Name, m.Value)
		case fieldPresence:
			f.Presence, err = parsePresenceList(m.Value, strict)
		case fieldCount:
			var n int64
			n, err = payload.Int(m.Name, m.Value)
			if err == nil && (n < 0 || n > 1<<31-1) {
				err = fmt.Errorf("%q out of range", fieldCount)
			}
			c := int(n)
			f.Count = &c
		default:
			if strict {
				err = payload.Unknown(m.Name)
			}
		}
		if err != nil {
			return Frame{}, err
		}
	}
	switch {
	case !ok:
		return Frame{}, fmt.Errorf("missing %q", fieldOK)
	case f.OK && f.Error != nil:
		return Frame{}, fmt.Errorf("%q with %q true", fieldError, fieldOK)
	case !f.OK && (f.Error == nil || f.Error.Code == ""):
		return Frame{}, fmt.Errorf("%q false without an error code", fieldOK)
	}
	return f, nil
}

func parseError(v []byte) (*Error, error) {
	if len(v) == 0 || v[0] != '{' {
		return nil, fmt.Errorf("%q must be an object", fieldError)
	}
	ms, err := payload.Members(nil, v)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", fieldError, err)
	}
	var e Error
	for _, m := range ms {
		switch m.Name {
		case fieldCode:
			e.Code, err = payload.String(m.Name, m.Value)
		case fieldMessage:
			e.Message, err = payload.String(m.Name, m.Value)
		default:
			err = payload.Unknown(m.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("%q: %w", fieldError, err)
		}
	}
	return &e, nil
}

func parseMessage(ms []payload.Member, strict bool) (*fanout.Message, error) {
	m := &fanout.Message{}
	var data, data64 []byte
	seq := false
	var err error
	for _, e := range ms {
		switch e.Name {
		case fieldType:
		case payload.FieldTopic:
			m.Topic, err = payload.String(e.Name, e.Value)
		case fieldEpoch:
			m.Position.Epoch, err = payload.String(e.Name, e.Value)
		case fieldSeq:
			seq = true
			m.Position.Seq, err = payload.Uint(e.Name, e.Value)
		case payload.FieldKey:
			m.Key, err = payload.String(e.Name, e.Value)
		case fieldTime:
			var ms int64
			ms, err = payload.Int(e.Name, e.Value)
			m.Time = time.UnixMilli(ms)
		case payload.FieldHeader:
			m.Header, err = payload.StringMap(e.Name, e.Value)
		case payload.FieldData:
			data = e.Value
		case payload.FieldData64:
			data64 = e.Value
		default:
			if strict {
				err = payload.Unknown(e.Name)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if m.Topic == "" || !seq {
		return nil, fmt.Errorf("missing %q or %q", payload.FieldTopic, fieldSeq)
	}
	if m.Data, err = payload.DecodeData(data, data64); err != nil {
		return nil, err
	}
	return m, nil
}

func parseSnapshot(ms []payload.Member, strict bool) (Frame, error) {
	var f Frame
	var err error
	var items []byte
	for _, m := range ms {
		switch m.Name {
		case fieldType:
		case payload.FieldTopic:
			f.Topic, err = payload.String(m.Name, m.Value)
		case fieldPosition:
			var p fanout.Position
			p, err = parsePosition(m.Name, m.Value)
			f.Position = &p
		case fieldItems:
			items = m.Value
		default:
			if strict {
				err = payload.Unknown(m.Name)
			}
		}
		if err != nil {
			return Frame{}, err
		}
	}
	if f.Topic == "" || f.Position == nil || items == nil {
		return Frame{}, fmt.Errorf("missing %q, %q or %q", payload.FieldTopic, fieldPosition, fieldItems)
	}
	if f.Items, err = parseItems(items, f.Topic, strict); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// parseItems decodes the array of msg frames of a snapshot of topic.
func parseItems(v []byte, topic string, strict bool) ([]*fanout.Message, error) {
	if len(v) == 0 || v[0] != '[' {
		return nil, fmt.Errorf("%q must be an array", fieldItems)
	}
	elems, err := payload.Elements(v)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", fieldItems, err)
	}
	items := make([]*fanout.Message, 0, len(elems))
	for i, el := range elems {
		ms, err := payload.Members(nil, el)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		typ := ""
		for _, m := range ms {
			if m.Name == fieldType {
				typ, _ = payload.String(m.Name, m.Value)
			}
		}
		if typ != FrameMsg {
			return nil, fmt.Errorf("item %d is not a %s", i, FrameMsg)
		}
		m, err := parseMessage(ms, strict)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		if m.Topic != topic {
			return nil, fmt.Errorf("item %d of topic %q", i, m.Topic)
		}
		items = append(items, m)
	}
	return items, nil
}

func parseClose(ms []payload.Member, strict bool) (Frame, error) {
	var f Frame
	var err error
	code := false
	for _, m := range ms {
		switch m.Name {
		case fieldType:
		case fieldCode:
			code = true
			var n int64
			n, err = payload.Int(m.Name, m.Value)
			if err == nil && (n < 0 || n > 1<<31-1) {
				err = fmt.Errorf("%q out of range", fieldCode)
			}
			f.Code = fanout.CloseCode(n)
		case fieldReason:
			f.Reason, err = payload.String(m.Name, m.Value)
		case fieldReconnect:
			f.Reconnect, err = payload.Bool(m.Name, m.Value)
		default:
			if strict {
				err = payload.Unknown(m.Name)
			}
		}
		if err != nil {
			return Frame{}, err
		}
	}
	if !code {
		return Frame{}, fmt.Errorf("missing %q", fieldCode)
	}
	return f, nil
}

// Append appends f as one line of JSON, as the server writes it: for a
// frame that ParseFrame decoded from the server's bytes, the same bytes.
func (f *Frame) Append(b []byte) []byte {
	switch f.Type {
	case FrameReply:
		var e *Error
		if !f.OK {
			e = f.Error
			if e == nil {
				e = &Error{Code: "internal"}
			}
		}
		return appendReply(b, f.ID, f.Topic, e, f.Position, f.Recovered, f.Expires, f.Presence, f.Count)
	case FrameMsg:
		return appendMessage(b, f.Message)
	case FrameSnapshot:
		var pos fanout.Position
		if f.Position != nil {
			pos = *f.Position
		}
		return appendSnapshot(b, f.Topic, pos, f.Items)
	case FrameClose:
		return appendClose(b, f.Code, f.Reason, f.Reconnect)
	case FrameSubscribed:
		return appendSubscribed(b, f.Topic, f.Position, f.Snapshot)
	case FrameUnsubscribed:
		return appendUnsubscribed(b, f.Topic)
	case FrameExpiry:
		return appendExpiry(b, f.Expires)
	case FrameJoin, FrameLeave:
		var c fanout.ClientInfo
		if f.Client != nil {
			c = *f.Client
		}
		return appendPresenceEvent(b, &fanout.PresenceEvent{Topic: f.Topic, Leave: f.Type == FrameLeave, Client: c})
	}
	panic(fmt.Sprintf("wire: unknown frame type %q", f.Type))
}
