package backplanetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/gofanout/fanout"
)

// BenchmarkPresence measures Presence (every entry) and PresenceCount on a
// topic of 10,000 entries of the node n, which it opens and closes.
func BenchmarkPresence(b *testing.B, n interface {
	fanout.Backplane
	fanout.PresenceBackplane
}) {
	const entries = 10000
	if err := n.Open(nopReceiver{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	ctx := context.Background()
	for i := range entries {
		ci := fanout.ClientInfo{Principal: fmt.Sprintf("user-%d", i), Session: fmt.Sprintf("node:%d", i), Info: []byte(`{"name":"a user"}`)}
		if err := n.AddPresence(ctx, "room", ci); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("presence", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if l, err := n.Presence(ctx, "room", entries); err != nil || len(l) != entries {
				b.Fatalf("%d entries, %v", len(l), err)
			}
		}
	})
	b.Run("count", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if k, err := n.PresenceCount(ctx, "room"); err != nil || k != entries {
				b.Fatalf("%d, %v", k, err)
			}
		}
	})
}

// nopReceiver drops what a node delivers.
type nopReceiver struct{}

func (nopReceiver) Deliver(*fanout.Message) {}
func (nopReceiver) Resync(string)           {}
