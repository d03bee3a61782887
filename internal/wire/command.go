package wire

import (
	"fmt"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/payload"
)

// Command types.
const (
	CmdSubscribe   = "subscribe"
	CmdUnsubscribe = "unsubscribe"
	CmdPublish     = "publish"
	CmdPing        = "ping"
	// CmdPresence and CmdPresenceCount are in presence.go.
)

// Commands that carry credentials (see credentials.go).
const (
	CmdAuth    = "auth"
	CmdRefresh = "refresh"
)

// MaxIDLength bounds a command id, in bytes.
const MaxIDLength = 64

// Command is one client command. Type says which fields belong to it:
//
//   - subscribe: Topic, Since, Snapshot
//   - unsubscribe: Topic
//   - publish: Topic, Data, Key, IdempotencyKey, Header
//   - ping: none
//   - auth, refresh: Token
//   - presence, presence_count: Topic
//
// ID, at most [MaxIDLength] bytes, is echoed by the reply.
type Command struct {
	ID       string
	Type     string
	Topic    string
	Since    *fanout.Position
	Snapshot bool

	Data           []byte
	Key            string
	IdempotencyKey string
	Header         map[string]string

	Token string
}

// Field names of commands besides those of a publish (see package
// payload).
const (
	fieldID       = "id"
	fieldType     = "type"
	fieldSince    = "since"
	fieldSnapshot = "snapshot"
	fieldEpoch    = "epoch"
	fieldSeq      = "seq"
)

// ParseCommand decodes one command, strictly: field names exactly as
// documented, no member twice, no unknown field, nothing after the object.
// Its errors match [fanout.ErrBadRequest] or [fanout.ErrInvalidTopic];
// when the command is a JSON object whose id could be read, the returned
// command carries the id, so that the error reply can echo it.
func ParseCommand(b []byte) (Command, error) {
	var arr [8]payload.Member
	ms, err := payload.Members(arr[:0], b)
	var c Command
	for _, m := range ms {
		if m.Name == fieldID {
			id, idErr := payload.String(fieldID, m.Value)
			if idErr == nil && len(id) <= MaxIDLength {
				c.ID = id
			}
			if idErr == nil && len(id) > MaxIDLength {
				idErr = fmt.Errorf("%q longer than %d bytes", fieldID, MaxIDLength)
			}
			if err == nil {
				err = idErr
			}
		}
	}
	if err != nil {
		return c, badRequest(err)
	}
	var p payload.Publish
	tokenGiven := false
	for _, m := range ms {
		var err error
		switch m.Name {
		case fieldID:
		case fieldType:
			c.Type, err = payload.String(m.Name, m.Value)
		case fieldSnapshot:
			c.Snapshot, err = payload.Bool(m.Name, m.Value)
		case fieldSince:
			c.Since, err = parseSince(m.Value)
		case fieldToken:
			c.Token, err = payload.String(m.Name, m.Value)
			tokenGiven = true
		default:
			var known bool
			known, err = p.Set(m.Name, m.Value)
			if !known {
				err = payload.Unknown(m.Name)
			}
		}
		if err != nil {
			return c, badRequest(err)
		}
	}
	c.Topic = p.Topic
	if err := checkToken(c, tokenGiven, p.Topic != "" || c.Since != nil || c.Snapshot || p.Given()); err != nil {
		return c, err
	}
	switch c.Type {
	case CmdAuth, CmdRefresh:
		return c, nil
	case CmdPing:
		if p.Topic != "" || c.Since != nil || c.Snapshot || p.Given() {
			return c, badRequest(fmt.Errorf("a ping has no fields but %q and %q", fieldID, fieldType))
		}
		c.Topic = ""
		return c, nil
	case CmdSubscribe, CmdUnsubscribe, CmdPublish, CmdPresence, CmdPresenceCount:
	case "":
		return c, badRequest(fmt.Errorf("missing %q", fieldType))
	default:
		return c, badRequest(fmt.Errorf("unknown command type %q", c.Type))
	}
	if err := fanout.ValidateTopic(c.Topic); err != nil {
		return c, err
	}
	if c.Type != CmdSubscribe && (c.Since != nil || c.Snapshot) {
		return c, badRequest(fmt.Errorf("%q and %q belong to subscribe", fieldSince, fieldSnapshot))
	}
	if c.Type != CmdPublish {
		if p.Given() {
			return c, badRequest(fmt.Errorf("%q, %q, %q, %q and %q belong to publish",
				payload.FieldData, payload.FieldData64, payload.FieldKey, payload.FieldIdempotencyKey, payload.FieldHeader))
		}
		return c, nil
	}
	if err := p.Finish(); err != nil {
		return c, badRequest(err)
	}
	c.Data, c.Key, c.IdempotencyKey, c.Header = p.Data, p.Key, p.IdempotencyKey, p.Header
	return c, nil
}

func badRequest(err error) error { return fmt.Errorf("%w: %v", fanout.ErrBadRequest, err) }

// parseSince decodes {"epoch": "…", "seq": N}; seq is required, null is no
// position.
func parseSince(v []byte) (*fanout.Position, error) {
	if payload.IsNull(v) {
		return nil, nil
	}
	p, err := parsePosition(fieldSince, v)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// parsePosition decodes the position in the field name.
func parsePosition(name string, v []byte) (fanout.Position, error) {
	if len(v) == 0 || v[0] != '{' {
		return fanout.Position{}, fmt.Errorf("%q must be an object with %q and %q", name, fieldEpoch, fieldSeq)
	}
	var arr [2]payload.Member
	ms, err := payload.Members(arr[:0], v)
	if err != nil {
		return fanout.Position{}, fmt.Errorf("%q: %w", name, err)
	}
	var p fanout.Position
	seq := false
	for _, m := range ms {
		switch m.Name {
		case fieldEpoch:
			p.Epoch, err = payload.String(m.Name, m.Value)
		case fieldSeq:
			p.Seq, err = payload.Uint(m.Name, m.Value)
			seq = true
		default:
			err = payload.Unknown(m.Name)
		}
		if err != nil {
			return fanout.Position{}, fmt.Errorf("%q: %w", name, err)
		}
	}
	if !seq {
		return fanout.Position{}, fmt.Errorf("%q needs %q", name, fieldSeq)
	}
	return p, nil
}

// AppendCommand appends c as one line of JSON, the way the Go client
// sends it: fields in the order id, type, then those of c.Type as listed
// at [Command], empty optional fields left out, the payload of a publish
// by the rule of [payload.AppendPublishData].
func AppendCommand(b []byte, c Command) []byte {
	b = append(b, '{')
	if c.ID != "" {
		b = append(b, `"id":`...)
		b = payload.AppendString(b, c.ID)
		b = append(b, ',')
	}
	b = append(b, `"type":`...)
	b = payload.AppendString(b, c.Type)
	switch c.Type {
	case CmdSubscribe:
		b = append(b, `,"topic":`...)
		b = payload.AppendString(b, c.Topic)
		if c.Since != nil {
			b = append(b, `,"since":`...)
			b = AppendPosition(b, *c.Since)
		}
		if c.Snapshot {
			b = append(b, `,"snapshot":true`...)
		}
	case CmdUnsubscribe, CmdPresence, CmdPresenceCount:
		b = append(b, `,"topic":`...)
		b = payload.AppendString(b, c.Topic)
	case CmdAuth, CmdRefresh:
		b = append(b, `,"token":`...)
		b = payload.AppendString(b, c.Token)
	case CmdPublish:
		p := payload.Publish{Topic: c.Topic, Data: c.Data, Key: c.Key, IdempotencyKey: c.IdempotencyKey, Header: c.Header}
		b = p.Append(b)
	}
	return append(b, '}')
}
