package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
)

// BenchmarkPresence measures Presence (every entry) and PresenceCount on a
// topic of 10,000 entries.
func BenchmarkPresence(b *testing.B) {
	const entries = 10000
	c := newClient(b, nil)
	n := fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(b, c)})
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
