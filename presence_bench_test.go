package fanout_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/gofanout/fanout"
)

// BenchmarkFanoutPresence is BenchmarkFanout on a topic of 10,000
// subscribers with presence and join/leave off and on: one op is one
// delivery of one message to one session. With them on, the subscribers
// are in presence; join/leave is switched on once they have subscribed, so
// that the set-up does not deliver 50 million joins.
func BenchmarkFanoutPresence(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("subs=10000/presence=%v", on), func(b *testing.B) {
			benchFanoutPresence(b, 10000, on)
		})
	}
}

// presenceHub makes a hub whose topics have presence when on is set, and
// join/leave from when the returned switch is set.
func presenceHub(b *testing.B, on bool) (*fanout.Hub, *atomic.Bool) {
	joinLeave := new(atomic.Bool)
	h, err := fanout.NewHub(&fanout.HubOptions{
		QueueMessages: 1 << 16, QueueBytes: 1 << 30, MaxPresence: 1 << 20,
		TopicOptions: func(string) fanout.TopicOptions {
			return fanout.TopicOptions{Presence: on, JoinLeave: on && joinLeave.Load()}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return h, joinLeave
}

func benchFanoutPresence(b *testing.B, subs int, on bool) {
	h, joinLeave := presenceHub(b, on)
	defer h.Close()
	var delivered atomic.Int64
	wg := readers(b, h, subs, &delivered)
	joinLeave.Store(true)
	publishPaced(b, h, make([]byte, 64), subs, &delivered)
	h.Close()
	wg.Wait()
}

// BenchmarkJoinLeave measures a session that joins and leaves a topic of
// 10,000 subscribers with presence and join/leave on: one op is one join
// or leave frame delivered to one subscriber, the presence writes
// included.
func BenchmarkJoinLeave(b *testing.B) {
	const subs = 10000
	h, joinLeave := presenceHub(b, true)
	defer h.Close()
	ctx := context.Background()
	var delivered atomic.Int64
	wg := readers(b, h, subs, &delivered)
	joinLeave.Store(true)
	visitor, err := h.NewSession(fanout.Principal{ID: "visitor"})
	if err != nil {
		b.Fatal(err)
	}
	go func() { // the visitor's own frames are not counted
		for {
			if _, err := visitor.Next(ctx, nil); err != nil {
				return
			}
		}
	}()
	rounds := (b.N + 2*subs - 1) / (2 * subs)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= rounds; i++ {
		if err := visitor.Subscribe(ctx, fanout.SubscribeRequest{Topic: "bench"}); err != nil {
			b.Fatal(err)
		}
		if err := visitor.Unsubscribe(ctx, "", "bench"); err != nil {
			b.Fatal(err)
		}
		for delivered.Load() < int64(i)*2*subs {
			runtime.Gosched()
		}
	}
	b.StopTimer()
	visitor.Close(fanout.CloseNormal, "")
	h.Close()
	wg.Wait()
}

// BenchmarkPresenceQuery measures Hub.Presence and Hub.PresenceCount on a
// topic of 10,000 subscribers, on the memory backplane.
func BenchmarkPresenceQuery(b *testing.B) {
	const subs = 10000
	h, _ := presenceHub(b, true)
	defer h.Close()
	ctx := context.Background()
	for i := 0; i < subs; i++ {
		s, err := h.NewSession(fanout.Principal{ID: fmt.Sprintf("user-%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "q"}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("presence", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l, err := h.Presence(ctx, "q")
			if err != nil || len(l) != subs {
				b.Fatalf("%d entries, %v", len(l), err)
			}
		}
	})
	b.Run("count", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n, err := h.PresenceCount(ctx, "q"); err != nil || n != subs {
				b.Fatalf("%d, %v", n, err)
			}
		}
	})
}
