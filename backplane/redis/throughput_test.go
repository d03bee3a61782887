package redis_test

import (
	"context"
	"strconv"
	"strings"
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
