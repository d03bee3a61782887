package wire

import (
	"fmt"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/payload"
)

// appendSubscribed appends a subscribed frame: type, topic, position,
// then snapshot when a snapshot frame follows.
func appendSubscribed(b []byte, topic string, pos *fanout.Position, snapshot bool) []byte {
	b = append(b, `{"type":"subscribed","topic":`...)
	b = payload.AppendString(b, topic)
	if pos != nil {
		b = append(b, `,"position":`...)
		b = AppendPosition(b, *pos)
	}
	if snapshot {
		b = append(b, `,"snapshot":true`...)
	}
	return append(b, '}')
}

// appendUnsubscribed appends an unsubscribed frame.
func appendUnsubscribed(b []byte, topic string) []byte {
	b = append(b, `{"type":"unsubscribed","topic":`...)
	b = payload.AppendString(b, topic)
	return append(b, '}')
}

// parseSubscribed decodes a subscribed frame (topic and position
// required, snapshot optional) or an unsubscribed frame (topic only).
func parseSubscribed(typ string, ms []payload.Member, strict bool) (Frame, error) {
	var f Frame
	var err error
	for _, m := range ms {
		switch {
		case m.Name == fieldType:
		case m.Name == payload.FieldTopic:
			f.Topic, err = payload.String(m.Name, m.Value)
		case m.Name == fieldPosition && typ == FrameSubscribed:
			var p fanout.Position
			p, err = parsePosition(m.Name, m.Value)
			f.Position = &p
		case m.Name == fieldSnapshot && typ == FrameSubscribed:
			f.Snapshot, err = payload.Bool(m.Name, m.Value)
		default:
			if strict {
				err = payload.Unknown(m.Name)
			}
		}
		if err != nil {
			return Frame{}, err
		}
	}
	if f.Topic == "" {
		return Frame{}, fmt.Errorf("missing %q", payload.FieldTopic)
	}
	if typ == FrameSubscribed && f.Position == nil {
		return Frame{}, fmt.Errorf("missing %q", fieldPosition)
	}
	return f, nil
}
