package client

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// frameType says what a decoded server frame carries.
type frameType uint8

const (
	frameMessage frameType = iota + 1
	frameReply
	frameSnapshot
	frameClose
)

// frame is one decoded server frame of the JSON protocol.
type frame struct {
	typ frameType

	// frameMessage: msg. frameSnapshot: topic, pos, items.
	msg   Message
	topic string
	pos   *fanout.Position
	items []Message

	// frameReply.
	id        string
	ok        bool
	errCode   string
	errMsg    string
	recovered *bool

	// frameClose.
	code      fanout.CloseCode
	reason    string
	reconnect bool
}

// errMalformed matches every error of the frame decoder.
var errMalformed = errors.New("client: malformed server frame")

type rawPosition struct {
	Epoch string  `json:"epoch"`
	Seq   *uint64 `json:"seq"`
}

type rawError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// rawFrame holds every field a server frame may have. Unknown fields are
// ignored, so that the server may add some.
type rawFrame struct {
	Type string `json:"type"`

	Topic  string            `json:"topic"`
	Epoch  string            `json:"epoch"`
	Seq    *uint64           `json:"seq"`
	Key    string            `json:"key"`
	Time   *int64            `json:"time"`
	Header map[string]string `json:"header"`
	Data   json.RawMessage   `json:"data"`
	Data64 *string           `json:"data64"`

	ID        string       `json:"id"`
	OK        *bool        `json:"ok"`
	Error     *rawError    `json:"error"`
	Position  *rawPosition `json:"position"`
	Recovered *bool        `json:"recovered"`

	Items []json.RawMessage `json:"items"`

	Code      *int   `json:"code"`
	Reason    string `json:"reason"`
	Reconnect bool   `json:"reconnect"`
}

// decodeFrames decodes one WebSocket message: one or more frames separated
// by newlines (JSON strings escape newlines, so a newline always ends a
// frame). Empty lines are skipped; frames of unknown types are skipped, so
// that a newer server may send frames this client does not know. The frames
// are appended to dst.
func decodeFrames(dst []frame, b []byte) ([]frame, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f, known, err := decodeFrame(line)
		if err != nil {
			return dst, err
		}
		if known {
			dst = append(dst, f)
		}
	}
	return dst, nil
}

// decodeFrame decodes one frame. known is false for a well-formed frame of
// an unknown type.
func decodeFrame(line []byte) (f frame, known bool, err error) {
	var r rawFrame
	if err := json.Unmarshal(line, &r); err != nil {
		return frame{}, false, fmt.Errorf("%w: %v", errMalformed, err)
	}
	switch r.Type {
	case "msg":
		m, err := r.message()
		if err != nil {
			return frame{}, false, err
		}
		return frame{typ: frameMessage, msg: m, topic: m.Topic}, true, nil
	case "reply":
		if r.OK == nil {
			return frame{}, false, fmt.Errorf("%w: reply without ok", errMalformed)
		}
		f := frame{typ: frameReply, id: r.ID, ok: *r.OK, topic: r.Topic, recovered: r.Recovered}
		if r.Position != nil {
			p, err := r.Position.position()
			if err != nil {
				return frame{}, false, err
			}
			f.pos = &p
		}
		if !f.ok {
			if r.Error == nil || r.Error.Code == "" {
				return frame{}, false, fmt.Errorf("%w: failed reply without an error code", errMalformed)
			}
			f.errCode, f.errMsg = r.Error.Code, r.Error.Message
		}
		return f, true, nil
	case "snapshot":
		if r.Topic == "" || r.Position == nil {
			return frame{}, false, fmt.Errorf("%w: snapshot without topic or position", errMalformed)
		}
		p, err := r.Position.position()
		if err != nil {
			return frame{}, false, err
		}
		f := frame{typ: frameSnapshot, topic: r.Topic, pos: &p, items: make([]Message, 0, len(r.Items))}
		for _, it := range r.Items {
			var ri rawFrame
			if err := json.Unmarshal(it, &ri); err != nil {
				return frame{}, false, fmt.Errorf("%w: snapshot item: %v", errMalformed, err)
			}
			if ri.Type != "msg" {
				return frame{}, false, fmt.Errorf("%w: snapshot item of type %q", errMalformed, ri.Type)
			}
			m, err := ri.message()
			if err != nil {
				return frame{}, false, err
			}
			if m.Topic != r.Topic {
				return frame{}, false, fmt.Errorf("%w: snapshot item of topic %q in topic %q", errMalformed, m.Topic, r.Topic)
			}
			f.items = append(f.items, m)
		}
		return f, true, nil
	case "close":
		if r.Code == nil {
			return frame{}, false, fmt.Errorf("%w: close without code", errMalformed)
		}
		return frame{typ: frameClose, code: fanout.CloseCode(*r.Code), reason: r.Reason, reconnect: r.Reconnect}, true, nil
	case "":
		return frame{}, false, fmt.Errorf("%w: missing type", errMalformed)
	}
	return frame{}, false, nil
}

func (p *rawPosition) position() (fanout.Position, error) {
	if p.Seq == nil {
		return fanout.Position{}, fmt.Errorf("%w: position without seq", errMalformed)
	}
	return fanout.Position{Epoch: p.Epoch, Seq: *p.Seq}, nil
}

// message turns a "msg" frame into a Message.
func (r *rawFrame) message() (Message, error) {
	if r.Topic == "" || r.Seq == nil {
		return Message{}, fmt.Errorf("%w: msg without topic or seq", errMalformed)
	}
	m := Message{
		Topic:    r.Topic,
		Position: fanout.Position{Epoch: r.Epoch, Seq: *r.Seq},
		Key:      r.Key,
		Header:   r.Header,
	}
	if r.Time != nil {
		m.Time = time.UnixMilli(*r.Time)
	}
	switch {
	case r.Data != nil && r.Data64 != nil:
		return Message{}, fmt.Errorf("%w: msg with data and data64", errMalformed)
	case r.Data64 != nil:
		d, err := base64.StdEncoding.DecodeString(*r.Data64)
		if err != nil {
			return Message{}, fmt.Errorf("%w: data64: %v", errMalformed, err)
		}
		m.Data = d
	case r.Data != nil:
		m.Data = []byte(r.Data)
	default:
		return Message{}, fmt.Errorf("%w: msg without data", errMalformed)
	}
	return m, nil
}

// command is a client command, as sent on the wire.
type command struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Topic    string           `json:"topic,omitempty"`
	Since    *commandPosition `json:"since,omitempty"`
	Snapshot bool             `json:"snapshot,omitempty"`
	Data64   *string          `json:"data64,omitempty"`
	Key      string           `json:"key,omitempty"`
}

type commandPosition struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

func subscribeCommand(id, topic string, since *fanout.Position, snapshot bool) []byte {
	c := command{ID: id, Type: wire.CmdSubscribe, Topic: topic, Snapshot: snapshot}
	if since != nil {
		c.Since = &commandPosition{Epoch: since.Epoch, Seq: since.Seq}
	}
	return c.encode()
}

func unsubscribeCommand(id, topic string) []byte {
	return command{ID: id, Type: wire.CmdUnsubscribe, Topic: topic}.encode()
}

func pingCommand(id string) []byte {
	return command{ID: id, Type: wire.CmdPing}.encode()
}

// publishCommand sends data as JSON when it is a compact JSON value (the
// server compacts what arrives as "data"), else as base64, so that the
// subscribers receive exactly these bytes.
func publishCommand(id, topic string, data []byte, key string) []byte {
	c := command{ID: id, Type: wire.CmdPublish, Topic: topic, Key: key}
	if isCompactJSON(data) {
		// Splice the bytes in verbatim: json.Marshal would compact and
		// escape them.
		b := c.encode()
		b = append(b[:len(b)-1], `,"data":`...)
		b = append(b, data...)
		return append(b, '}')
	}
	s := base64.StdEncoding.EncodeToString(data)
	c.Data64 = &s
	return c.encode()
}

func (c command) encode() []byte {
	b, _ := json.Marshal(c) // cannot fail: strings and numbers only
	return b
}

// newID formats a command id.
func newID(n uint64) string { return strconv.FormatUint(n, 36) }

// isCompactJSON reports whether data is valid JSON that json.Compact leaves
// as it is.
func isCompactJSON(data []byte) bool {
	if len(data) == 0 || !utf8.Valid(data) {
		return false
	}
	var c bytes.Buffer
	return json.Compact(&c, data) == nil && bytes.Equal(c.Bytes(), data)
}
