package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/chaos"
	goredis "github.com/redis/go-redis/v9"
)

// watchdog bounds how long a test waits for a call that must not hang; it
// is far above any timeout the tests set, so it never decides a result.
const watchdog = 60 * time.Second

// privateRedis starts a redis-server that only this test uses, so that it
// may kill, stop and restart it.
func privateRedis(t testing.TB, o *chaos.RedisOptions) *chaos.Server {
	t.Helper()
	s, err := chaos.StartRedis(t.TempDir(), o)
	if err != nil {
		t.Skipf("cannot start a private Redis: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPublishOnHungRedis: with Redis stopped (SIGSTOP) and a client that
// would wait for it forever, Hub.Publish without a deadline fails with
// ErrUnavailable once the hub's BackplaneTimeout passes, and so does a
// subscribe that must read history.
func TestPublishOnHungRedis(t *testing.T) {
	srv := privateRedis(t, nil)
	c := newClient(t, &goredis.Options{Addr: srv.Addr(), ReadTimeout: -1, WriteTimeout: -1})
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Backplane:        fanoutredis.New(c, &fanoutredis.Options{PingInterval: time.Hour}),
		BackplaneTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	ctx := context.Background()
	if _, err := hub.Publish(ctx, "hung", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Continue() })

	done := make(chan error, 1)
	go func() {
		_, err := hub.Publish(ctx, "hung", []byte("during"))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, fanout.ErrUnavailable) {
			t.Fatalf("publish on a stopped Redis: got %v, want fanout.ErrUnavailable", err)
		}
	case <-time.After(watchdog):
		srv.Continue()
		t.Fatalf("publish on a stopped Redis still blocked after %v", watchdog)
	}
	if err := srv.Continue(); err != nil {
		t.Fatal(err)
	}
}
