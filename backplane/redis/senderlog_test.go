package redis_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

// replyLoser is a connection whose next reply, once armed, is read and
// thrown away, and the connection then fails: the command ran in Redis,
// and the client cannot know it.
type replyLoser struct {
	net.Conn
	armed *atomic.Bool
}

func (c replyLoser) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.armed.CompareAndSwap(true, false) {
		c.Conn.Close()
		return 0, errors.New("reply lost")
	}
	return n, err
}

// TestPublishRanReplyLost: a publish that ran in Redis but whose reply was
// lost with its connection is stored once, and Publish returns the
// position it was stored at, which the sender reads from its connection's
// log on a new connection.
func TestPublishRanReplyLost(t *testing.T) {
	var armed atomic.Bool
	var dials atomic.Int32
	c := newClient(t, &goredis.Options{
		MaxRetries: 3, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: time.Millisecond,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			dials.Add(1)
			return replyLoser{Conn: conn, armed: &armed}, nil
		},
	})
	bp := fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(t, c)})
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	first := publishN(t, bp, "lost", 1)[0]
	dialed := dials.Load()
	armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	m := &fanout.Message{Topic: "lost", Data: []byte("once"), Time: time.Now()}
	pos, err := bp.Publish(ctx, m, "")
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if armed.Load() || dials.Load() == dialed {
		t.Fatalf("no reply was lost (armed %v, %d dials before, %d after)", armed.Load(), dialed, dials.Load())
	}
	h, err := bp.History(ctx, "lost", fanout.Position{Epoch: first.Epoch})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Messages) != 2 || h.Position != pos || m.Position != pos {
		for _, m := range h.Messages {
			t.Logf("stored %v: %q", m.Position, m.Data)
		}
		t.Fatalf("history holds %d messages up to %v; Publish returned %v (message %v); want 2, all at the returned position", len(h.Messages), h.Position, pos, m.Position)
	}
}

// TestSenderKeepsNoRecordPerPublish: publishes through a *goredis.Client
// leave no retry IDs: a topic holds its position, stream and snapshot, and
// the senders' logs hold at most the entries of one batch each.
func TestSenderKeepsNoRecordPerPublish(t *testing.T) {
	l := newLifecycle(t, fanoutredis.Options{})
	for range 100 {
		l.publish("norecord", "k", "x", "", false)
	}
	if got := l.keys("norecord"); len(got) != 3 {
		t.Fatalf("keys of the topic: %v, want its position, stream and snapshot", got)
	}
	ctx := context.Background()
	logs, err := l.c.Keys(ctx, "{"+l.prefix+"}:sender:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 || len(logs) > 2 {
		t.Fatalf("senders' logs: %v, want one or two", logs)
	}
	for _, log := range logs {
		if n, err := l.c.LLen(ctx, log).Result(); err != nil || n > 2 {
			t.Errorf("log %s holds %d entries (%v), want at most the placeholder and one publish", log, n, err)
		}
	}
	l.n.Close()
	if n, err := l.c.Exists(ctx, logs...).Result(); err != nil || n != 0 {
		t.Errorf("after Close, %d logs remain (%v)", n, err)
	}
}

// TestSenderLogGone: a sender whose log is gone (expired after an idle
// hour, deleted, lost with Redis's data) has its next publishes refused
// by the script before they write anything, and sends them again on a new
// connection with a new log: each is stored once.
func TestSenderLogGone(t *testing.T) {
	// Without retries: the refused attempt is not one.
	c := newClient(t, &goredis.Options{MaxRetries: -1})
	l := newLifecycleOn(t, c, c, fanoutredis.Options{})
	first := l.publish("gone", "", "a", "", false)
	ctx := context.Background()
	logs, err := l.c.Keys(ctx, "{"+l.prefix+"}:sender:*").Result()
	if err != nil || len(logs) == 0 {
		t.Fatalf("senders' logs: %v (%v), want at least one", logs, err)
	}
	if err := l.c.Del(ctx, logs...).Err(); err != nil {
		t.Fatal(err)
	}
	second := l.publish("gone", "", "b", "", false)
	if second.Epoch != first.Epoch || second.Seq != first.Seq+1 {
		t.Fatalf("publish after the log was deleted: got %v, want the position after %v", second, first)
	}
	h, err := l.n.History(ctx, "gone", fanout.Position{Epoch: first.Epoch})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Messages) != 2 {
		t.Fatalf("history holds %d messages, want 2", len(h.Messages))
	}
	now, err := l.c.Keys(ctx, "{"+l.prefix+"}:sender:*").Result()
	if err != nil || len(now) == 0 || slices.Contains(now, logs[0]) {
		t.Fatalf("senders' logs after: %v (%v), want a new one", now, err)
	}
}
