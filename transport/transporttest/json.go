package transporttest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/gofanout/fanout"
)

// ParseJSON decodes one server frame of the JSON protocol of
// docs/PROTOCOL.md (as written by WebSocket and Server-Sent Events) into an
// Event, for the adapters of JSON transports. It is strict: unknown frame
// types, a missing type, and payloads that are not valid base64 are errors.
func ParseJSON(b []byte) (Event, error) {
	var f jsonFrame
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return Event{}, fmt.Errorf("transporttest: frame %q: %w", b, err)
	}
	if d.More() {
		return Event{}, fmt.Errorf("transporttest: frame %q: trailing data", b)
	}
	e, err := f.event()
	if err != nil {
		return Event{}, fmt.Errorf("transporttest: frame %q: %w", b, err)
	}
	return e, nil
}

type jsonPosition struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

type jsonFrame struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Topic string `json:"topic"`

	// reply
	OK    *bool `json:"ok"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Position  *jsonPosition `json:"position"`
	Recovered *bool         `json:"recovered"`

	// msg
	Epoch  string            `json:"epoch"`
	Seq    uint64            `json:"seq"`
	Key    string            `json:"key"`
	Time   int64             `json:"time"`
	Header map[string]string `json:"header"`
	Data   json.RawMessage   `json:"data"`
	Data64 *string           `json:"data64"`

	// snapshot
	Items []jsonFrame `json:"items"`

	// close
	Code      int    `json:"code"`
	Reason    string `json:"reason"`
	Reconnect bool   `json:"reconnect"`
}

func (f *jsonFrame) event() (Event, error) {
	e := Event{Topic: f.Topic}
	switch f.Type {
	case "reply":
		e.Type = EventReply
		e.ID = f.ID
		if f.OK == nil {
			return Event{}, fmt.Errorf("reply without ok")
		}
		if *f.OK == (f.Error != nil) {
			return Event{}, fmt.Errorf("reply ok=%v disagrees with its error", *f.OK)
		}
		if f.Error != nil {
			e.Error = f.Error.Code
			if e.Error == "" {
				return Event{}, fmt.Errorf("reply error without code")
			}
		}
		if f.Position != nil {
			e.Position = fanout.Position(*f.Position)
		}
		e.Recovered = f.Recovered
	case "msg":
		e.Type = EventMessage
		e.Position = fanout.Position{Epoch: f.Epoch, Seq: f.Seq}
		e.Key = f.Key
		switch {
		case f.Data != nil && f.Data64 != nil:
			return Event{}, fmt.Errorf("msg with data and data64")
		case f.Data64 != nil:
			d, err := base64.StdEncoding.DecodeString(*f.Data64)
			if err != nil {
				return Event{}, fmt.Errorf("data64: %w", err)
			}
			e.Data = d
		case f.Data != nil:
			e.Data = []byte(f.Data)
		default:
			return Event{}, fmt.Errorf("msg without data")
		}
	case "snapshot":
		e.Type = EventSnapshot
		if f.Position == nil {
			return Event{}, fmt.Errorf("snapshot without position")
		}
		e.Position = fanout.Position(*f.Position)
		e.Items = make([]Event, 0, len(f.Items))
		for i := range f.Items {
			it, err := f.Items[i].event()
			if err != nil {
				return Event{}, fmt.Errorf("snapshot item %d: %w", i, err)
			}
			if it.Type != EventMessage {
				return Event{}, fmt.Errorf("snapshot item %d is a %s", i, it.Type)
			}
			e.Items = append(e.Items, it)
		}
	case "close":
		e.Type = EventClose
		e.Code = fanout.CloseCode(f.Code)
		e.Reason = f.Reason
		e.Reconnect = f.Reconnect
	case "":
		return Event{}, fmt.Errorf("frame without type")
	default:
		return Event{}, fmt.Errorf("unknown frame type %q", f.Type)
	}
	return e, nil
}
