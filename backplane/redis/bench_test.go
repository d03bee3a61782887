package redis_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

var benchSizes = []int{16, 1024, 16 << 10}

// BenchmarkPublish measures Backplane.Publish: one script round trip per
// message, from one goroutine and from many.
func BenchmarkPublish(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		for _, size := range benchSizes {
			name := fmt.Sprintf("sequential/%dB", size)
			if parallel {
				name = fmt.Sprintf("parallel/%dB", size)
			}
			b.Run(name, func(b *testing.B) {
				c := newClient(b, &goredis.Options{PoolSize: 64})
				n := fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(b, c)})
				if err := n.Open(nopReceiver{}); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { n.Close() })
				data := bytes.Repeat([]byte("x"), size)
				ctx := context.Background()
				publish := func() {
					m := &fanout.Message{Topic: "bench", Data: data, Time: time.Now()}
					if _, err := n.Publish(ctx, m, ""); err != nil {
						b.Error(err)
					}
				}
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.ResetTimer()
				if !parallel {
					for b.Loop() {
						publish()
					}
					return
				}
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						publish()
					}
				})
			})
		}
	}
}

// BenchmarkDeliveryLatency measures the time from Hub.Publish on one hub to
// the message reaching a session on another hub, one message at a time, and
// reports its median and 99th percentile.
func BenchmarkDeliveryLatency(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			c := newClient(b, nil)
			prefix := uniquePrefix(b, c)
			hubs := make([]*fanout.Hub, 2)
			for i := range hubs {
				h, err := fanout.NewHub(&fanout.HubOptions{Backplane: fanoutredis.New(c, &fanoutredis.Options{Prefix: prefix})})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { h.Close() })
				hubs[i] = h
			}
			sess, err := hubs[1].NewSession(fanout.Principal{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { sess.Close(fanout.CloseNormal, "") })
			ctx := context.Background()
			if err := sess.Subscribe(ctx, fanout.SubscribeRequest{Topic: "latency"}); err != nil {
				b.Fatal(err)
			}
			buf := make([]fanout.Frame, 0, 16)
			if _, err := sess.Next(ctx, buf); err != nil { // the reply
				b.Fatal(err)
			}
			data := bytes.Repeat([]byte("x"), size)
			var lat []time.Duration
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				if _, err := hubs[0].Publish(ctx, "latency", data); err != nil {
					b.Fatal(err)
				}
				fs, err := sess.Next(ctx, buf)
				if err != nil || len(fs) != 1 || fs[0].Type != fanout.FrameMessage {
					b.Fatalf("got %d frames, %v; want one message", len(fs), err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

type nopReceiver struct{}

func (nopReceiver) Deliver(*fanout.Message) {}
func (nopReceiver) Resync(string)           {}
