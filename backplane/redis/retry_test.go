package redis_test

import (
	"context"
	"net"
	"strings"
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

// TestRetryIDsRotate: with a client whose pipelines go-redis may send
// again by itself (here a Ring), the retry IDs of publishes without an
// idempotency key live in the hash retry; a publish more than the retry
// window after the last rotation renames it to retryold, dropping the
// older one, so an ID is known for one to two windows and the hashes hold
// about a window's publishes, each with a TTL of at most two windows.
func TestRetryIDsRotate(t *testing.T) {
	t.Parallel()
	// Long enough that the test's own delays stay far below it: the hash
	// of the previous window expires two windows after its last write.
	const window = time.Second
	c := newClient(t, nil)
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": c.Options().Addr}})
	t.Cleanup(func() { ring.Close() })
	l := newLifecycleOn(t, c, ring, fanoutredis.Options{})
	fanoutredis.SetRetryWindow(l.n, window)
	ctx := context.Background()
	base := "{" + l.prefix + ":rotate}"
	sizes := func() (int64, int64) {
		t.Helper()
		cur, err := l.c.HLen(ctx, base+":retry").Result()
		if err != nil {
			t.Fatal(err)
		}
		old, err := l.c.HLen(ctx, base+":retryold").Result()
		if err != nil {
			t.Fatal(err)
		}
		return cur, old
	}
	// waitWindow waits until Redis's clock has moved a window on.
	waitWindow := func() {
		t.Helper()
		start, err := l.c.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for now := start; now.Sub(start) <= window; {
			if now, err = l.c.Time(ctx).Result(); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.publish("rotate", "", "a", "", false)
	l.publish("rotate", "", "b", "", false)
	if cur, old := sizes(); cur != 2 || old != 0 {
		t.Fatalf("after two publishes: retry holds %d IDs, retryold %d; want 2 and 0", cur, old)
	}
	l.publish("rotate", "", "keyed", "id-1", false) // an idempotency key is no retry ID
	if cur, _ := sizes(); cur != 2 {
		t.Fatalf("after a publish with an idempotency key: retry holds %d IDs, want 2", cur)
	}
	waitWindow()
	l.publish("rotate", "", "c", "", false)
	if cur, old := sizes(); cur != 1 || old != 2 {
		t.Fatalf("a window later: retry holds %d IDs, retryold %d; want 1 and 2", cur, old)
	}
	waitWindow()
	l.publish("rotate", "", "d", "", false)
	if cur, old := sizes(); cur != 1 || old != 1 {
		t.Fatalf("two windows later: retry holds %d IDs, retryold %d; want 1 and 1", cur, old)
	}
	for k, d := range l.ttls("rotate") {
		if strings.HasPrefix(suffix(k), "retry") && (d <= 0 || d > 2*window) {
			t.Errorf("TTL of %s: got %v, want in (0, %v]", suffix(k), d, 2*window)
		}
	}
}
