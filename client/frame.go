package client

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// The client speaks the JSON protocol of package wire: it encodes commands
// with wire.AppendCommand and decodes the server's messages with
// wire.ParseFrames, leniently, so that a newer server may add fields and
// frame types.

func subscribeCommand(id, topic string, since *fanout.Position, snapshot bool) []byte {
	return wire.AppendCommand(nil, wire.Command{ID: id, Type: wire.CmdSubscribe, Topic: topic, Since: since, Snapshot: snapshot})
}

func unsubscribeCommand(id, topic string) []byte {
	return wire.AppendCommand(nil, wire.Command{ID: id, Type: wire.CmdUnsubscribe, Topic: topic})
}

func refreshCommand(id, token string) []byte {
	return wire.AppendCommand(nil, wire.Command{ID: id, Type: wire.CmdRefresh, Token: token})
}

func pingCommand(id string) []byte {
	return wire.AppendCommand(nil, wire.Command{ID: id, Type: wire.CmdPing})
}

// decodeFrames decodes one WebSocket message of the server.
func decodeFrames(dst []wire.Frame, b []byte) ([]wire.Frame, error) {
	return wire.ParseFrames(dst, b, false)
}

// message converts a decoded message.
func message(m *fanout.Message) Message {
	return Message{Topic: m.Topic, Position: m.Position, Key: m.Key, Data: m.Data, Time: m.Time, Header: m.Header}
}

func messages(ms []*fanout.Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = message(m)
	}
	return out
}

// newID formats a command id.
func newID(n uint64) string { return strconv.FormatUint(n, 36) }

// newIdempotencyKey returns a random idempotency key for a publish whose
// caller gave none.
func newIdempotencyKey() string {
	var b [16]byte
	rand.Read(b[:]) // never fails
	return "go-" + hex.EncodeToString(b[:])
}
