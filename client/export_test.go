package client

import (
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// Backoff exposes the backoff computation to the tests.
func Backoff(n int, lo, hi time.Duration, rnd func(int64) int64) time.Duration {
	return backoff(n, lo, hi, rnd)
}

// DecodeFrames exposes the frame decoder to the tests.
func DecodeFrames(b []byte) ([]wire.Frame, error) { return decodeFrames(nil, b) }

// SubscribeCommand exposes the subscribe encoder to the tests.
func SubscribeCommand(id, topic string, since *fanout.Position, snapshot bool) []byte {
	return subscribeCommand(id, topic, since, snapshot)
}
