package transporttest

import (
	"fmt"

	"github.com/gofanout/fanout/internal/wire"
)

// ParseJSON decodes one server frame of the JSON protocol of
// docs/PROTOCOL.md (as written by WebSocket and Server-Sent Events) into an
// Event, for the adapters of JSON transports. It is strict, as
// [wire.ParseFrame] is: unknown frame types and fields, a missing type, a
// member given twice and payloads that are not valid base64 are errors.
func ParseJSON(b []byte) (Event, error) {
	f, err := wire.ParseFrame(b)
	if err != nil {
		return Event{}, fmt.Errorf("transporttest: frame %q: %w", b, err)
	}
	e := Event{Topic: f.Topic}
	switch f.Type {
	case wire.FrameReply:
		e.Type = EventReply
		e.ID = f.ID
		if f.Error != nil {
			e.Error = f.Error.Code
		}
		if f.Position != nil {
			e.Position = *f.Position
		}
		e.Recovered = f.Recovered
	case wire.FrameMsg:
		e = messageEvent(f)
	case wire.FrameSnapshot:
		e.Type = EventSnapshot
		e.Position = *f.Position
		e.Items = make([]Event, 0, len(f.Items))
		for _, m := range f.Items {
			e.Items = append(e.Items, messageEvent(wire.Frame{Type: wire.FrameMsg, Topic: m.Topic, Message: m}))
		}
	case wire.FrameClose:
		e.Type = EventClose
		e.Code = f.Code
		e.Reason = f.Reason
		e.Reconnect = f.Reconnect
	}
	return e, nil
}

func messageEvent(f wire.Frame) Event {
	m := f.Message
	return Event{Type: EventMessage, Topic: m.Topic, Position: m.Position, Key: m.Key, Data: m.Data}
}
