package nats_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// BenchmarkPublish measures hub.Publish through the NATS backplane: each
// publish reads the topic's head and appends after it in JetStream.
func BenchmarkPublish(b *testing.B) {
	for _, bc := range []struct {
		size, publishers int
		shared           bool // all publishers on one topic
	}{
		{64, 1, false},
		{1024, 1, false},
		{64, 4, false},
		{64, 4, true},
	} {
		name := fmt.Sprintf("size=%d/publishers=%d", bc.size, bc.publishers)
		if bc.shared {
			name += "/one-topic"
		}
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, nil)
			hub := newHub(b, c.node(), &fanout.HubOptions{MaxPayload: 1 << 20})
			ctx := context.Background()
			data := make([]byte, bc.size)
			if _, err := hub.Publish(ctx, "bench.warm", data); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(bc.size))
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := range bc.publishers {
				n := b.N / bc.publishers
				if p < b.N%bc.publishers {
					n++
				}
				topic := fmt.Sprint("bench.p", p)
				if bc.shared {
					topic = "bench.shared"
				}
				wg.Go(func() {
					for range n {
						if _, err := hub.Publish(ctx, topic, data); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkDeliveryLatency measures the time from hub.Publish on one hub to
// a session on another hub receiving the message, one message at a time.
func BenchmarkDeliveryLatency(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			c := newCluster(b, nil)
			pub := newHub(b, c.node(), nil)
			sub := newHub(b, c.node(), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			s, err := sub.NewSession(fanout.Principal{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(fanout.CloseNormal, "")
			const topic = "bench.latency"
			if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: topic}); err != nil {
				b.Fatal(err)
			}
			buf := make([]fanout.Frame, 0, 16)
			receive := func() {
				for {
					fs, err := s.Next(ctx, buf)
					if err != nil {
						b.Fatal(err)
					}
					for _, f := range fs {
						if f.Type == fanout.FrameMessage {
							return
						}
					}
				}
			}
			data := make([]byte, size)
			if _, err := pub.Publish(ctx, topic, data); err != nil {
				b.Fatal(err)
			}
			receive()
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if _, err := pub.Publish(ctx, topic, data); err != nil {
					b.Fatal(err)
				}
				receive()
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[int(p*float64(len(lat)-1))].Microseconds())
			}
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}
