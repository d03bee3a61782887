package metrics_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/metrics"
)

// countConn is a connection that counts the messages written to it.
type countConn struct{ n *atomic.Int64 }

func (c countConn) WriteFrames(fs []fanout.Frame, _ time.Time) error {
	n := 0
	for _, f := range fs {
		if f.Type == fanout.FrameMessage {
			n++
		}
	}
	c.n.Add(int64(n))
	return nil
}
func (countConn) WriteHeartbeat(time.Time) error                                 { return nil }
func (countConn) WriteClose([]fanout.Frame, *fanout.CloseFrame, time.Time) error { return nil }
func (countConn) Abort()                                                         {}

// BenchmarkObserver measures fan-out through the hub's writers, as every
// transport uses them, without an observer and with the Prometheus
// collector: one op is one delivery of one message to one session, written
// to its connection.
func BenchmarkObserver(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		for _, obs := range []string{"none", "prometheus"} {
			b.Run(fmt.Sprintf("subs=%d/observer=%s", subs, obs), func(b *testing.B) {
				var o fanout.Observer
				if obs == "prometheus" {
					c := metrics.New(nil)
					prometheus.NewRegistry().MustRegister(c)
					o = c
				}
				benchObserver(b, subs, o)
			})
		}
	}
}

func benchObserver(b *testing.B, subs int, o fanout.Observer) {
	h, err := fanout.NewHub(&fanout.HubOptions{Observer: o, QueueMessages: 1 << 16, QueueBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	var written atomic.Int64
	for range subs {
		s, err := h.NewSession(fanout.Principal{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "bench"}); err != nil {
			b.Fatal(err)
		}
		s.Attach(countConn{&written}, &fanout.ConnOptions{Transport: "bench"})
	}
	data := make([]byte, 64)
	msgs := (b.N + subs - 1) / subs
	const window = 256
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= msgs; i++ {
		if _, err := h.Publish(ctx, "bench", data); err != nil {
			b.Fatal(err)
		}
		if i%window == 0 {
			for written.Load() < int64(i-window)*int64(subs) {
				runtime.Gosched()
			}
		}
	}
	for written.Load() < int64(msgs)*int64(subs) {
		runtime.Gosched()
	}
	b.StopTimer()
}
