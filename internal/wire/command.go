package wire

import (
	"bytes"
	"encoding/json"
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
)

// MaxIDLength bounds a command id, in bytes.
const MaxIDLength = 64

// Command is one decoded client command.
type Command struct {
	ID       string
	Type     string
	Topic    string
	Since    *fanout.Position
	Snapshot bool
	Data     []byte
	Key      string
}

type rawCommand struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Topic    string          `json:"topic"`
	Since    *rawPosition    `json:"since"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
	Data64   *string         `json:"data64"`
	Key      string          `json:"key"`
}

type rawPosition struct {
	Epoch string  `json:"epoch"`
	Seq   *uint64 `json:"seq"`
}

// ParseCommand decodes one command. Its errors match [fanout.ErrBadRequest]
// or [fanout.ErrInvalidTopic]; when the id could be read, the returned
// command carries it, so that the error reply can echo it.
func ParseCommand(b []byte) (Command, error) {
	var r rawCommand
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return Command{ID: salvageID(b)}, fmt.Errorf("%w: %v", fanout.ErrBadRequest, err)
	}
	// Decoder.More would accept a trailing "}" or "]": check that only JSON
	// whitespace follows the command.
	if len(bytes.TrimLeft(b[d.InputOffset():], " \t\r\n")) > 0 {
		return Command{ID: salvageID(b)}, fmt.Errorf("%w: trailing data after the command", fanout.ErrBadRequest)
	}
	c := Command{Type: r.Type, Topic: r.Topic, Snapshot: r.Snapshot, Key: r.Key}
	if len(r.ID) > MaxIDLength {
		return c, fmt.Errorf("%w: id longer than %d bytes", fanout.ErrBadRequest, MaxIDLength)
	}
	c.ID = r.ID
	switch r.Type {
	case CmdPing:
		return c, nil
	case CmdSubscribe, CmdUnsubscribe, CmdPublish:
	case "":
		return c, fmt.Errorf("%w: missing command type", fanout.ErrBadRequest)
	default:
		return c, fmt.Errorf("%w: unknown command type %q", fanout.ErrBadRequest, r.Type)
	}
	if err := fanout.ValidateTopic(r.Topic); err != nil {
		return c, err
	}
	if r.Since != nil {
		if r.Type != CmdSubscribe || r.Since.Seq == nil {
			return c, fmt.Errorf("%w: since needs a seq and belongs to subscribe", fanout.ErrBadRequest)
		}
		c.Since = &fanout.Position{Epoch: r.Since.Epoch, Seq: *r.Since.Seq}
	}
	if r.Type == CmdPublish {
		data, err := Payload(r.Data, r.Data64)
		if err != nil {
			return c, err
		}
		c.Data = data
	} else if r.Data != nil || r.Data64 != nil || r.Key != "" {
		return c, fmt.Errorf("%w: data and key belong to publish", fanout.ErrBadRequest)
	}
	return c, nil
}

// Payload returns the bytes to publish from a "data" JSON value or a
// "data64" base64 string; exactly one must be given.
func Payload(data json.RawMessage, data64 *string) ([]byte, error) {
	b, err := payload.Decode(data, data64)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", fanout.ErrBadRequest, err)
	}
	return b, nil
}

// salvageID reads just the id of a command that failed to decode.
func salvageID(b []byte) string {
	var r struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(b, &r) != nil || len(r.ID) > MaxIDLength {
		return ""
	}
	return r.ID
}
