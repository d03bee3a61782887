package fanout_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gofanout/fanout"
)

// BenchmarkFanout measures in-process fan-out: one op is one delivery of one
// message to one subscribed session, including its writer taking it from the
// queue. ns/op and allocs/op are therefore per delivery.
func BenchmarkFanout(b *testing.B) {
	for _, subs := range []int{1, 100, 1000, 10000} {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("subs=%d/payload=%d", subs, size), func(b *testing.B) {
				benchFanout(b, subs, size)
			})
		}
	}
}

func benchFanout(b *testing.B, subs, size int) {
	h, err := fanout.NewHub(&fanout.HubOptions{QueueMessages: 1 << 16, QueueBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	var delivered atomic.Int64
	wg := readers(b, h, subs, &delivered)
	publishPaced(b, h, make([]byte, size), subs, &delivered)
	h.Close()
	wg.Wait()
}

// readers subscribes subs sessions to "bench" and starts a reader per
// session that counts the message, join and leave frames it takes.
func readers(b *testing.B, h *fanout.Hub, subs int, delivered *atomic.Int64) *sync.WaitGroup {
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < subs; i++ {
		s, err := h.NewSession(fanout.Principal{ID: fmt.Sprintf("user-%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "bench"}); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]fanout.Frame, 0, 256)
			for {
				fs, err := s.Next(ctx, buf)
				if err != nil {
					return
				}
				n := 0
				for _, f := range fs {
					switch f.Type {
					case fanout.FrameMessage, fanout.FrameJoin, fanout.FrameLeave:
						n++
					case fanout.FrameClose:
						if f.Close.Code != fanout.CloseShutdown {
							panic(fmt.Sprintf("session closed: %v", f.Close.Reason))
						}
					}
				}
				delivered.Add(int64(n))
			}
		}()
	}
	return &wg
}

// publishPaced times publishing data to "bench" until its subs subscribers
// have taken b.N deliveries in all (counted in delivered), the publisher
// running at most window messages ahead of them.
func publishPaced(b *testing.B, h *fanout.Hub, data []byte, subs int, delivered *atomic.Int64) {
	ctx := context.Background()
	msgs := (b.N + subs - 1) / subs
	const window = 256 // messages the publisher may run ahead of the slowest reader
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= msgs; i++ {
		if _, err := h.Publish(ctx, "bench", data); err != nil {
			b.Fatal(err)
		}
		if i%window == 0 {
			for delivered.Load() < int64(i-window)*int64(subs) {
				runtime.Gosched()
			}
		}
	}
	for delivered.Load() < int64(msgs)*int64(subs) {
		runtime.Gosched()
	}
	b.StopTimer()
}
