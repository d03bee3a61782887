package nats_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/gofanout/fanout/internal/chaos"
)

// BenchmarkHubPublish measures Hub.Publish through the backplane on a
// private nats-server with JetStream on loopback: concurrent publishers ×
// topics × payload, with and without an idempotency key per publish,
// keeping 1,024 messages for 10 minutes per topic. It reports publishes
// per second, the 99th percentile of one publish's latency, and the CPU
// time the benchmark's process (publishers and hub) spends per publish.
// One op is one publish.
func BenchmarkHubPublish(b *testing.B) {
	srv, err := chaos.StartNATS(b.TempDir(), nil)
	if err != nil {
		b.Skipf("cannot start a private nats-server: %v", err)
	}
	b.Cleanup(func() { srv.Close() })
	for _, publishers := range []int{1, 16, 64} {
		for _, topics := range []int{1, 1000} {
			for _, size := range []int{64, 1024} {
				for _, keyed := range []bool{false, true} {
					name := fmt.Sprintf("publishers=%d/topics=%d/size=%d/idem=%v", publishers, topics, size, keyed)
					b.Run(name, func(b *testing.B) {
						benchHubPublish(b, srv.URL(), publishers, topics, size, keyed)
					})
				}
			}
		}
	}
}

func benchHubPublish(b *testing.B, url string, publishers, topics, size int, keyed bool) {
	c := newClusterAt(b, url, &fnats.Options{HistorySize: 1024, HistoryAge: 10 * time.Minute})
	hub := newHub(b, c.node(), nil)
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprint("t", i)
	}
	data := make([]byte, size)
	ctx := context.Background()
	// Every topic exists before the clock starts.
	for _, t := range names {
		if _, err := hub.Publish(ctx, t, data); err != nil {
			b.Fatal(err)
		}
	}
	lats := make([][]time.Duration, publishers)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.SetBytes(int64(size))
	cpu0 := selfCPU()
	b.ResetTimer()
	start := time.Now()
	for p := range publishers {
		n := b.N / publishers
		if p < b.N%publishers {
			n++
		}
		wg.Go(func() {
			lat := make([]time.Duration, 0, n)
			var opts []fanout.PublishOption
			for i := range n {
				if keyed {
					opts = []fanout.PublishOption{fanout.WithIdempotencyKey(fmt.Sprint(p, "-", i))}
				}
				t0 := time.Now()
				if _, err := hub.Publish(ctx, names[(p+i*publishers)%topics], data, opts...); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			lats[p] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64((selfCPU()-cpu0).Microseconds())/float64(b.N), "client-cpu-µs/op")
	all := slices.Concat(lats...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "publishes/s")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
