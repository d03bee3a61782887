package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

// BenchmarkHubPublish measures Hub.Publish through the backplane on a
// private redis-server on loopback (see backplanetest.BenchmarkHubPublish),
// with the CPU time Redis spends per publish.
func BenchmarkHubPublish(b *testing.B) {
	srv := privateRedis(b, nil)
	var c *goredis.Client // the current case's
	backplanetest.BenchmarkHubPublish(b, func(b *testing.B, l backplanetest.PublishLoad) *fanout.Hub {
		c = newClient(b, &goredis.Options{Addr: srv.Addr(), PoolSize: max(16, 2*l.Publishers)})
		hub, err := fanout.NewHub(&fanout.HubOptions{
			Backplane: fanoutredis.New(c, &fanoutredis.Options{
				Prefix:      uniquePrefix(b, c),
				HistorySize: 1024,
				HistoryAge:  10 * time.Minute,
			}),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { hub.Close() })
		return hub
	}, func(b *testing.B) time.Duration { return redisCPU(b, c) }, "redis-cpu-µs/op")
}

// redisCPU returns the CPU time the Redis server has used.
func redisCPU(b *testing.B, c *goredis.Client) time.Duration {
	var total float64
	for _, field := range []string{"used_cpu_sys", "used_cpu_user"} {
		f, _ := strconv.ParseFloat(infoField(b, c, "cpu", field), 64)
		total += f
	}
	return time.Duration(total * float64(time.Second))
}

// BenchmarkPublishMemory measures what Redis holds after b.N publishes
// without idempotency keys from 64 goroutines to 10 or 1,000 topics, each
// keeping 1,024 messages, on a private redis-server: the growth of INFO
// memory's used_memory, in MB (run it with a fixed count,
// -benchtime=128000x, so that the figure compares), and Redis's time in
// publish scripts per publish (INFO commandstats; one call carries a
// batch). Beyond the streams, which
// their limit caps, nothing should grow with the number of publishes.
func BenchmarkPublishMemory(b *testing.B) {
	for _, topics := range []int{10, 1000} {
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) { benchPublishMemory(b, topics) })
	}
}

func benchPublishMemory(b *testing.B, topics int) {
	srv := privateRedis(b, nil)
	c := newClient(b, &goredis.Options{Addr: srv.Addr(), PoolSize: 128})
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Backplane: fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(b, c), HistorySize: 1024}),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { hub.Close() })
	ctx := context.Background()
	used := func() float64 {
		n, _ := strconv.ParseFloat(infoField(b, c, "memory", "used_memory"), 64)
		return n
	}
	data := make([]byte, 64)
	const publishers = 64
	mem0 := used()
	_, usec0 := scriptCalls(b, c)
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := p; i < b.N; i += publishers {
				if _, err := hub.Publish(ctx, fmt.Sprint("t", i%topics), data); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric((used()-mem0)/1e6, "redis-MB")
	_, usec := scriptCalls(b, c)
	b.ReportMetric((usec-usec0)/float64(b.N), "redis-script-µs/publish")
}
