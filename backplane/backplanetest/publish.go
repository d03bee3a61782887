package backplanetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// PublishLoad is one case of [BenchmarkHubPublish].
type PublishLoad struct {
	Publishers, Topics, Size int
	Keyed                    bool // every publish has an idempotency key
}

// BenchmarkHubPublish measures Hub.Publish through a backplane: concurrent
// publishers × topics × payload, with and without an idempotency key per
// publish. newHub returns the hub of one case, on a backplane that keeps
// 1,024 messages for 10 minutes per topic. It reports publishes per second,
// the 99th percentile of one publish's latency, and the CPU time the
// benchmark's process (publishers and hub) spends per publish; with
// storageCPU, which returns the CPU time the storage server has used so
// far, also the storage's per publish, as storageUnit. CPU times say more
// than the rates on a busy machine. One op is one publish.
func BenchmarkHubPublish(b *testing.B, newHub func(b *testing.B, l PublishLoad) *fanout.Hub, storageCPU func(b *testing.B) time.Duration, storageUnit string) {
	for _, publishers := range []int{1, 16, 64} {
		for _, topics := range []int{1, 1000} {
			for _, size := range []int{64, 1024} {
				for _, keyed := range []bool{false, true} {
					l := PublishLoad{Publishers: publishers, Topics: topics, Size: size, Keyed: keyed}
					name := fmt.Sprintf("publishers=%d/topics=%d/size=%d/idem=%v", publishers, topics, size, keyed)
					b.Run(name, func(b *testing.B) {
						benchHubPublish(b, newHub(b, l), l, storageCPU, storageUnit)
					})
				}
			}
		}
	}
}

func benchHubPublish(b *testing.B, hub *fanout.Hub, l PublishLoad, storageCPU func(b *testing.B) time.Duration, storageUnit string) {
	names := make([]string, l.Topics)
	for i := range names {
		names[i] = fmt.Sprint("t", i)
	}
	data := make([]byte, l.Size)
	ctx := context.Background()
	// Every topic exists before the clock starts.
	for _, t := range names {
		if _, err := hub.Publish(ctx, t, data); err != nil {
			b.Fatal(err)
		}
	}
	lats := make([][]time.Duration, l.Publishers)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.SetBytes(int64(l.Size))
	var storage0 time.Duration
	if storageCPU != nil {
		storage0 = storageCPU(b)
	}
	self0 := selfCPU()
	b.ResetTimer()
	start := time.Now()
	for p := range l.Publishers {
		n := b.N / l.Publishers
		if p < b.N%l.Publishers {
			n++
		}
		wg.Go(func() {
			lat := make([]time.Duration, 0, n)
			var opts []fanout.PublishOption
			for i := range n {
				if l.Keyed {
					opts = []fanout.PublishOption{fanout.WithIdempotencyKey(fmt.Sprint(p, "-", i))}
				}
				t0 := time.Now()
				if _, err := hub.Publish(ctx, names[(p+i*l.Publishers)%l.Topics], data, opts...); err != nil {
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
	if storageCPU != nil {
		b.ReportMetric(float64((storageCPU(b)-storage0).Microseconds())/float64(b.N), storageUnit)
	}
	b.ReportMetric(float64((selfCPU()-self0).Microseconds())/float64(b.N), "client-cpu-µs/op")
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
