package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/chaos"
	goredis "github.com/redis/go-redis/v9"
)

// BenchmarkHubPublish measures Hub.Publish through the backplane on a
// private redis-server on loopback (see backplanetest.BenchmarkHubPublish),
// with the CPU time Redis spends per publish.
func BenchmarkHubPublish(b *testing.B) {
	srv, err := chaos.StartRedis(b.TempDir(), nil)
	if err != nil {
		b.Skipf("cannot start a private Redis: %v", err)
	}
	b.Cleanup(func() { srv.Close() })
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
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		name, v, _ := strings.Cut(line, ":")
		if name == "used_cpu_sys" || name == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// BenchmarkPublishMemory measures what Redis holds after b.N publishes
// without idempotency keys from 64 goroutines to 10 or 1,000 topics, each
// keeping 1,024 messages, on a private redis-server: the growth of INFO
// memory's used_memory, in MB (run it with a fixed count,
// -benchtime=128000x, so that the figure compares), and Redis's time per
// publish script call (INFO commandstats). Beyond the streams, which
// their limit caps, nothing should grow with the number of publishes.
func BenchmarkPublishMemory(b *testing.B) {
	for _, topics := range []int{10, 1000} {
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) { benchPublishMemory(b, topics) })
	}
}

func benchPublishMemory(b *testing.B, topics int) {
	srv, err := chaos.StartRedis(b.TempDir(), nil)
	if err != nil {
		b.Skipf("cannot start a private Redis: %v", err)
	}
	b.Cleanup(func() { srv.Close() })
	c := newClient(b, &goredis.Options{Addr: srv.Addr(), PoolSize: 128})
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Backplane: fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(b, c), HistorySize: 1024}),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { hub.Close() })
	ctx := context.Background()
	info := func(section, field string) string {
		text, err := c.Info(ctx, section).Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(text, "\r\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				return v
			}
		}
		return ""
	}
	used := func() float64 {
		n, _ := strconv.ParseFloat(info("memory", "used_memory"), 64)
		return n
	}
	// scripts returns the calls of EVALSHA and the µs Redis spent in them.
	scripts := func() (calls, usec float64) {
		for _, kv := range strings.Split(info("commandstats", "cmdstat_evalsha"), ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				calls = f
			case "usec":
				usec = f
			}
		}
		return calls, usec
	}
	data := make([]byte, 64)
	const publishers = 64
	mem0 := used()
	calls0, usec0 := scripts()
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
	if calls, usec := scripts(); calls > calls0 {
		b.ReportMetric((usec-usec0)/(calls-calls0), "redis-µs/script")
	}
}
