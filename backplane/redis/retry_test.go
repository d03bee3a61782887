package redis_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

// TestRetriedPublishStoredOnce: a publish without an idempotency key that
// go-redis sends again after a read timeout (Redis stopped, then
// continued, runs every copy) is stored once, at the position Publish
// returns.
func TestRetriedPublishStoredOnce(t *testing.T) {
	srv := privateRedis(t, nil)
	dialed := make(chan struct{}, 64)
	c := newClient(t, &goredis.Options{
		Addr:        srv.Addr(),
		ReadTimeout: 200 * time.Millisecond, MaxRetries: 20,
		MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 10 * time.Millisecond,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			dialed <- struct{}{}
			return conn, err
		},
	})
	bp := fanoutredis.New(c, nil)
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	first := publishN(t, bp, "retried", 1)[0]
	<-dialed
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Continue() })

	type result struct {
		pos fanout.Position
		err error
	}
	done := make(chan result, 1)
	go func() {
		m := &fanout.Message{Topic: "retried", Data: []byte("once"), Time: time.Now()}
		p, err := bp.Publish(context.Background(), m, "")
		done <- result{p, err}
	}()
	// A new connection means that the script timed out once and is sent
	// again: both copies now wait in Redis's sockets.
	select {
	case <-dialed:
	case <-time.After(watchdog):
		t.Fatal("go-redis never retried the publish")
	}
	if err := srv.Continue(); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(watchdog):
		t.Fatal("publish never returned")
	}
	if r.err != nil {
		t.Fatalf("publish: %v", r.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	h, err := bp.History(ctx, "retried", fanout.Position{Epoch: first.Epoch, Seq: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Messages) != 2 || h.Position != r.pos {
		for _, m := range h.Messages {
			t.Logf("stored %v: %q", m.Position, m.Data)
		}
		t.Fatalf("history holds %d messages up to %v, publish returned %v; want 2 up to it", len(h.Messages), h.Position, r.pos)
	}
}
