package client

import (
	"time"

	"github.com/gofanout/fanout"
)

// Backoff exposes the backoff computation to the tests.
func Backoff(n int, lo, hi time.Duration, rnd func(int64) int64) time.Duration {
	return backoff(n, lo, hi, rnd)
}

// DecodedFrame is a decoded server frame, for the tests.
type DecodedFrame struct {
	Type      string
	Message   Message
	Topic     string
	Position  *fanout.Position
	Items     []Message
	ID        string
	OK        bool
	ErrCode   string
	ErrMsg    string
	Recovered *bool
	Code      fanout.CloseCode
	Reason    string
	Reconnect bool
}

// DecodeFrames exposes the frame decoder to the tests.
func DecodeFrames(b []byte) ([]DecodedFrame, error) {
	fs, err := decodeFrames(nil, b)
	out := make([]DecodedFrame, len(fs))
	for i, f := range fs {
		d := DecodedFrame{
			Message: f.msg, Topic: f.topic, Position: f.pos, Items: f.items,
			ID: f.id, OK: f.ok, ErrCode: f.errCode, ErrMsg: f.errMsg, Recovered: f.recovered,
			Code: f.code, Reason: f.reason, Reconnect: f.reconnect,
		}
		d.Type = [...]string{"", "msg", "reply", "snapshot", "close"}[f.typ]
		out[i] = d
	}
	return out, err
}

// Commands expose the command encoders to the tests.
func SubscribeCommand(id, topic string, since *fanout.Position, snapshot bool) []byte {
	return subscribeCommand(id, topic, since, snapshot)
}

func PublishCommand(id, topic string, data []byte, key string) []byte {
	return publishCommand(id, topic, data, key)
}
