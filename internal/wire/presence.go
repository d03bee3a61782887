package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/payload"
)

// Presence commands and frames.
const (
	// CmdPresence asks for a topic's presence: the reply carries
	// "presence", an array of clients.
	CmdPresence = "presence"
	// CmdPresenceCount asks for how many clients a topic's presence
	// has: the reply carries "count".
	CmdPresenceCount = "presence_count"

	// FrameJoin and FrameLeave say that a client subscribed to, or left,
	// a topic whose options enable join/leave: "topic" and "client".
	FrameJoin  = "join"
	FrameLeave = "leave"
)

// Field names of presence.
const (
	fieldPresence  = "presence"
	fieldCount     = "count"
	fieldClient    = "client"
	fieldPrincipal = "principal"
	fieldSession   = "session"
	fieldInfo      = "info"
)

// appendClient appends c as {"principal","session"[,"info"]}; info is
// written as the JSON value it is, or left out when it is not valid JSON.
func appendClient(b []byte, c *fanout.ClientInfo) []byte {
	b = append(b, `{"principal":`...)
	b = payload.AppendString(b, c.Principal)
	b = append(b, `,"session":`...)
	b = payload.AppendString(b, c.Session)
	if len(c.Info) > 0 && json.Valid(c.Info) {
		b = append(b, `,"info":`...)
		b = appendCompact(b, c.Info)
	}
	return append(b, '}')
}

// appendCompact appends the JSON value v without line breaks, which end
// a frame.
func appendCompact(b []byte, v []byte) []byte {
	for _, c := range v {
		if c == '\n' || c == '\r' {
			return appendCompactSlow(b, v)
		}
	}
	return append(b, v...)
}

func appendCompactSlow(b []byte, v []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return append(b, "null"...)
	}
	return append(b, buf.Bytes()...)
}

// presenceEvent appends a join or leave frame.
func appendPresenceEvent(b []byte, e *fanout.PresenceEvent) []byte {
	if e.Leave {
		b = append(b, `{"type":"leave","topic":`...)
	} else {
		b = append(b, `{"type":"join","topic":`...)
	}
	b = payload.AppendString(b, e.Topic)
	b = append(b, `,"client":`...)
	b = appendClient(b, &e.Client)
	return append(b, '}')
}

// appendPresenceReply appends the presence or count member of a reply.
func appendPresenceReply(b []byte, presence []fanout.ClientInfo, count *int) []byte {
	if presence != nil {
		b = append(b, `,"presence":[`...)
		for i := range presence {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendClient(b, &presence[i])
		}
		b = append(b, ']')
	}
	if count != nil {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(*count), 10)
	}
	return b
}

// parseClient decodes {"principal","session","info"}.
func parseClient(name string, v []byte, strict bool) (fanout.ClientInfo, error) {
	var c fanout.ClientInfo
	if len(v) == 0 || v[0] != '{' {
		return c, fmt.Errorf("%q must be an object", name)
	}
	ms, err := payload.Members(nil, v)
	if err != nil {
		return c, fmt.Errorf("%q: %w", name, err)
	}
	session := false
	for _, m := range ms {
		switch m.Name {
		case fieldPrincipal:
			c.Principal, err = payload.String(m.Name, m.Value)
		case fieldSession:
			session = true
			c.Session, err = payload.String(m.Name, m.Value)
		case fieldInfo:
			if !payload.IsNull(m.Value) {
				c.Info = append(json.RawMessage(nil), m.Value...)
			}
		default:
			if strict {
				err = payload.Unknown(m.Name)
			}
		}
		if err != nil {
			return c, fmt.Errorf("%q: %w", name, err)
		}
	}
	if !session {
		return c, fmt.Errorf("%q needs %q", name, fieldSession)
	}
	return c, nil
}

// parsePresenceList decodes the presence array of a reply.
func parsePresenceList(v []byte, strict bool) ([]fanout.ClientInfo, error) {
	if len(v) == 0 || v[0] != '[' {
		return nil, fmt.Errorf("%q must be an array", fieldPresence)
	}
	elems, err := payload.Elements(v)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", fieldPresence, err)
	}
	l := make([]fanout.ClientInfo, 0, len(elems))
	for _, el := range elems {
		c, err := parseClient(fieldPresence, el, strict)
		if err != nil {
			return nil, err
		}
		l = append(l, c)
	}
	return l, nil
}

// parsePresenceEvent decodes a join or leave frame.
func parsePresenceEvent(ms []payload.Member, strict bool) (Frame, error) {
	var f Frame
	var err error
	var client *fanout.ClientInfo
	for _, m := range ms {
		switch m.Name {
		case fieldType:
		case payload.FieldTopic:
			f.Topic, err = payload.String(m.Name, m.Value)
		case fieldClient:
			var c fanout.ClientInfo
			c, err = parseClient(m.Name, m.Value, strict)
			client = &c
		default:
			if strict {
				err = payload.Unknown(m.Name)
			}
		}
		if err != nil {
			return Frame{}, err
		}
	}
	if f.Topic == "" || client == nil {
		return Frame{}, fmt.Errorf("missing %q or %q", payload.FieldTopic, fieldClient)
	}
	f.Client = client
	return f, nil
}
