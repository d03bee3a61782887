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
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/chaos"
	goredis "github.com/redis/go-redis/v9"
)

// TestBatchIsOneScriptCall: the publishes that queue while a batch is in
// flight go to Redis together, in one call of the publish script, and each
// gets its own position.
func TestBatchIsOneScriptCall(t *testing.T) {
	srv, err := chaos.StartRedis(t.TempDir(), nil)
	if err != nil {
		t.Skipf("cannot start a private Redis: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), PoolSize: 16, ReadTimeout: -1, WriteTimeout: -1})
	t.Cleanup(func() { c.Close() })
	b := fanoutredis.New(c, &fanoutredis.Options{Prefix: "batch"})
	fanoutredis.SetPipelines(b, 1) // one sender, so that one batch is in flight
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	publish := func(topic string) (fanout.Position, error) {
		return b.Publish(ctx, &fanout.Message{Topic: topic, Data: []byte("x"), Time: time.Now()}, "")
	}
	if _, err := publish("warm"); err != nil { // the sender and its connection
		t.Fatal(err)
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// waiting waits until n publishes are queued and idle senders wait.
	waiting := func(n, idle int) {
		t.Helper()
		for {
			q, i := fanoutredis.Waiting(b)
			if q == n && i == idle {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%d publishes queued and %d senders waiting, want %d and %d", q, i, n, idle)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waiting(0, 1) // the sender is back, waiting for publishes
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Redis runs again before the backplane closes, whatever happens.
	t.Cleanup(func() { srv.Continue() })
	const rest = 63
	positions := make([]fanout.Position, 1+rest)
	errs := make([]error, 1+rest)
	var wg sync.WaitGroup
	wg.Go(func() { positions[0], errs[0] = publish("t0") })
	waiting(0, 0) // the sender took it, and waits for Redis
	for i := 1; i <= rest; i++ {
		wg.Go(func() { positions[i], errs[i] = publish(fmt.Sprint("t", i%4)) })
	}
	waiting(rest, 0)
	if err := srv.Continue(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	seen := make(map[string]bool)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		topic := fmt.Sprint("t", i%4)
		if i == 0 {
			topic = "t0 alone"
		}
		key := topic + " " + positions[i].String()
		if seen[key] {
			t.Fatalf("publish %d to %s got position %v, as another did", i, topic, positions[i])
		}
		seen[key] = true
	}
	stats, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := -1
	for _, line := range strings.Split(stats, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
			calls, _ = strconv.Atoi(v[:strings.IndexByte(v, ',')])
		}
	}
	if calls != 2 {
		t.Fatalf("%d publishes took %d script calls, want 2 (the one in flight, then the rest together)", 1+rest, calls)
	}
}
