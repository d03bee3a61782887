package nats_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/nats-io/nats.go/jetstream"
)

// life is one test's opened node on a cluster of its own.
type life struct {
	t *testing.T
	c *cluster
	n *fnats.Backplane
}

func newLife(t *testing.T, opts fnats.Options) *life {
	t.Helper()
	c := newCluster(t, &opts)
	n := c.node()
	if err := n.Open(discard{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &life{t: t, c: c, n: n}
}

func (l *life) publish(topic, key, data, idem string, final bool) fanout.Position {
	l.t.Helper()
	m := &fanout.Message{Topic: topic, Key: key, Data: []byte(data), Time: time.Now()}
	if final {
		m.Header = map[string]string{fanout.HeaderFinal: "true"}
	}
	p, err := l.n.Publish(context.Background(), m, idem)
	if err != nil {
		l.t.Fatalf("publish to %s: %v", topic, err)
	}
	return p
}

// stored returns how many messages each of the cluster's streams holds
// for topic.
func (l *life) stored(topic string) map[string]uint64 {
	l.t.Helper()
	nc := l.c.conn(l.c.url)
	js, err := jetstream.New(nc)
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := fnats.EscapeTopic(topic)
	p, s := l.c.opts.Prefix, l.c.opts.Stream
	out := make(map[string]uint64)
	for stream, filter := range map[string]string{
		s:           p + ".h." + tok,
		s + "_KEYS": p + ".k." + tok + ".*",
		s + "_IDEM": p + ".i." + tok + ".*",
	} {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			l.t.Fatalf("stream %s: %v", stream, err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			l.t.Fatalf("info of %s: %v", stream, err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		out[stream] = n
	}
	return out
}

// streamConfig returns the configuration of one of the cluster's streams.
func (l *life) streamConfig(name string) jetstream.StreamConfig {
	l.t.Helper()
	js, err := jetstream.New(l.c.conn(l.c.url))
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		l.t.Fatalf("stream %s: %v", name, err)
	}
	return st.CachedInfo().Config
}

// eventually polls cond every 50ms, for at most 30s, until it reports
// true. The server expires messages by its own clock.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		select {
		case <-poll.C:
		case <-deadline.C:
			t.Fatalf("%s: still %s after 30s", what, state)
		}
	}
}

// TestStreamLimits: the server itself drops history after HistoryAge;
// snapshot items do not expire one by one.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	l := newLife(t, fnats.Options{HistoryAge: 3 * time.Minute, IdleTTL: 2 * time.Hour})
	l.publish("t", "k", "a", "", false)
	if got := l.streamConfig(l.c.opts.Stream).MaxAge; got != 3*time.Minute {
		t.Errorf("MaxAge of the history stream: got %v, want HistoryAge %v", got, 3*time.Minute)
	}
	if got := l.streamConfig(l.c.opts.Stream + "_KEYS").MaxAge; got != 0 {
		t.Errorf("MaxAge of the snapshot stream: got %v, want none", got)
	}
}

// TestActiveTopicKeepsItems: a topic in use keeps every snapshot item,
// also one whose key was written longer than IdleTTL ago.
func TestActiveTopicKeepsItems(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	l := newLife(t, fnats.Options{HistoryAge: time.Hour, IdleTTL: idle})
	l.publish("t", "old", "a", "", false)
	start := time.Now()
	// Publish to other keys every quarter of IdleTTL, for twice IdleTTL:
	// the server's clock decides what expires, so the test waits for it.
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	for time.Since(start) < 2*idle {
		<-tick.C
		l.publish("t", "new", "b", "", false)
	}
	s, err := l.n.Snapshot(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Items) != 2 {
		t.Fatalf("snapshot of a topic in use after %v: got %d items, want 2", time.Since(start), len(s.Items))
	}
}

// TestIdleTopicExpires: an idle topic's history, position and snapshot
// vanish; a client resuming it through a hub gets recovered=false and the
// empty snapshot, and the next message comes under a new epoch.
func TestIdleTopicExpires(t *testing.T) {
	t.Parallel()
	l := newLife(t, fnats.Options{HistoryAge: time.Second, IdleTTL: time.Second})
	hub := newHub(t, l.c.node(), nil)
	ctx := context.Background()
	p, err := hub.Publish(ctx, "stock", []byte("5"), fanout.WithKey("sku"))
	if err != nil {
		t.Fatal(err)
	}
	l.publish("stock", "", "x", "id-1", false)
	eventually(t, "messages of an idle topic", func() (bool, string) {
		s := l.stored("stock")
		return s[l.c.opts.Stream] == 0 && s[l.c.opts.Stream+"_KEYS"] == 0, fmt.Sprint(s)
	})
	sess, err := hub.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close(fanout.CloseNormal, "") })
	if err := sess.Subscribe(ctx, fanout.SubscribeRequest{ID: "1", Topic: "stock", Since: &p, Snapshot: true}); err != nil {
		t.Fatal(err)
	}
	var reply *fanout.Reply
	var snap *fanout.SnapshotFrame
	buf := make([]fanout.Frame, 0, 8)
	for reply == nil || snap == nil {
		fs, err := sess.Next(ctx, buf)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			switch f.Type {
			case fanout.FrameReply:
				reply = f.Reply
			case fanout.FrameSnapshot:
				snap = f.Snapshot
			default:
				t.Fatalf("got a frame of type %v before the reply and snapshot", f.Type)
			}
		}
	}
	if reply.Err != nil || reply.Recovered == nil || *reply.Recovered {
		t.Fatalf("resume after expiry: got reply %+v, want recovered=false", reply)
	}
	if len(snap.Items) != 0 {
		t.Fatalf("snapshot after expiry: got %d items, want none", len(snap.Items))
	}
	q, err := hub.Publish(ctx, "stock", []byte("6"), fanout.WithKey("sku"))
	if err != nil {
		t.Fatal(err)
	}
	if q.Epoch == p.Epoch || q.Seq != 1 {
		t.Fatalf("publish after expiry: got %v, want Seq 1 in an epoch other than %q", q, p.Epoch)
	}
}

// TestSnapshotReadKeepsItems: a snapshot read counts as use, so an item
// older than IdleTTL that is read stays.
func TestSnapshotReadKeepsItems(t *testing.T) {
	t.Parallel()
	const idle = 2 * time.Second
	l := newLife(t, fnats.Options{HistoryAge: time.Hour, IdleTTL: idle})
	ctx := context.Background()
	l.publish("t", "k", "a", "", false)
	start := time.Now()
	// Read it at about 3/4 of IdleTTL, and again past IdleTTL.
	for _, at := range []time.Duration{idle * 3 / 4, idle * 5 / 4} {
		wait := time.NewTimer(time.Until(start.Add(at)))
		<-wait.C
		s, err := l.n.Snapshot(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Items) != 1 {
			t.Fatalf("snapshot at %v: got %d items, want 1", at, len(s.Items))
		}
	}
}

// TestFinalTopicExpires: FinalTTL after a final publish, the topic's
// history, position, snapshot and idempotency records are gone, though
// IdleTTL and HistoryAge are long; the next publish starts a new epoch.
func TestFinalTopicExpires(t *testing.T) {
	t.Parallel()
	l := newLife(t, fnats.Options{HistoryAge: time.Hour, IdleTTL: time.Hour, FinalTTL: time.Second})
	l.publish("saga", "step1", "ok", "id-1", false)
	p := l.publish("saga", "", "done", "", true)
	l.publish("other", "k", "a", "", false)
	eventually(t, "state of a final topic", func() (bool, string) {
		s := l.stored("saga")
		return s[l.c.opts.Stream] == 0 && s[l.c.opts.Stream+"_KEYS"] == 0 && s[l.c.opts.Stream+"_IDEM"] == 0, fmt.Sprint(s)
	})
	if s := l.stored("other"); s[l.c.opts.Stream] != 1 || s[l.c.opts.Stream+"_KEYS"] != 1 {
		t.Fatalf("state of another topic: got %v, want it kept", s)
	}
	if q := l.publish("saga", "", "new", "", false); q.Epoch == p.Epoch || q.Seq != 1 {
		t.Fatalf("publish after expiry: got %v, want Seq 1 in an epoch other than %q", q, p.Epoch)
	}
}

// TestFinalThenPublish: a publish after the final one makes the topic live
// again: FinalTTL later, its state is still there.
func TestFinalThenPublish(t *testing.T) {
	t.Parallel()
	l := newLife(t, fnats.Options{HistoryAge: time.Hour, IdleTTL: time.Hour, FinalTTL: time.Second})
	l.publish("saga", "step1", "ok", "", false)
	l.publish("saga", "", "done", "", true)
	p := l.publish("saga", "step1", "again", "", false)
	// The final mark was handled when it left its work queue.
	js, err := jetstream.New(l.c.conn(l.c.url))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "final marks", func() (bool, string) {
		st, err := js.Stream(context.Background(), l.c.opts.Stream+"_EXPIRE")
		if err != nil {
			return false, err.Error()
		}
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(l.c.opts.Prefix+".x.f.>"))
		if err != nil {
			return false, err.Error()
		}
		return len(info.State.Subjects) == 0, fmt.Sprint(info.State.Subjects)
	})
	s, err := l.n.Snapshot(context.Background(), "saga")
	if err != nil {
		t.Fatal(err)
	}
	if s.Position != p || len(s.Items) != 1 {
		t.Fatalf("snapshot after FinalTTL: got %d items at %v, want 1 at %v", len(s.Items), s.Position, p)
	}
}

// TestDelete: Delete removes the topic's messages from every stream and
// nothing of other topics; the next publish, even with an idempotency key
// used before, starts a new epoch at Seq 1.
func TestDelete(t *testing.T) {
	t.Parallel()
	l := newLife(t, fnats.Options{})
	l.publish("gone", "k", "a", "id-1", false)
	p := l.publish("gone", "", "b", "id-2", false)
	l.publish("kept", "k", "a", "id-1", false)
	ctx := context.Background()
	if err := l.n.Delete(ctx, "gone"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	for stream, n := range l.stored("gone") {
		if n != 0 {
			t.Errorf("messages of the deleted topic in %s: got %d, want 0", stream, n)
		}
	}
	for stream, n := range l.stored("kept") {
		if n != 1 {
			t.Errorf("messages of another topic in %s: got %d, want 1", stream, n)
		}
	}
	if err := l.n.Delete(ctx, "never"); err != nil {
		t.Fatalf("delete of a topic without state: got %v, want nil", err)
	}
	h, err := l.n.History(ctx, "gone", p)
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete || h.Position.Seq != 0 {
		t.Fatalf("history after delete: got complete=%v at %v, want incomplete at Seq 0", h.Complete, h.Position)
	}
	if q := l.publish("gone", "", "b", "id-2", false); q.Epoch == p.Epoch || q.Seq != 1 {
		t.Fatalf("idempotent publish after delete: got %v, want Seq 1 in an epoch other than %q", q, p.Epoch)
	}
}

// TestDeleteFromAnotherNode: a node that remembers the topic's last
// message from before another node deleted it starts a new epoch.
func TestDeleteFromAnotherNode(t *testing.T) {
	t.Parallel()
	l := newLife(t, fnats.Options{})
	other := l.c.node()
	if err := other.Open(discard{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	p := l.publish("t", "", "a", "", false)
	if err := other.Delete(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	if q := l.publish("t", "", "b", "", false); q.Epoch == p.Epoch || q.Seq != 1 {
		t.Fatalf("publish after delete elsewhere: got %v, want Seq 1 in an epoch other than %q", q, p.Epoch)
	}
}

// TestDeleteAfterClose: Delete on a closed node fails with ErrClosed.
func TestDeleteAfterClose(t *testing.T) {
	t.Parallel()
	l := newLife(t, fnats.Options{})
	l.n.Close()
	if err := l.n.Delete(context.Background(), "t"); err == nil || !strings.Contains(err.Error(), fanout.ErrClosed.Error()) {
		t.Fatalf("delete after close: got %v, want ErrClosed", err)
	}
}

// TestFinalMarkOutlivesItsNode: the node that published a final message
// may be gone by FinalTTL; another node purges the topic.
func TestFinalMarkOutlivesItsNode(t *testing.T) {
	t.Parallel()
	l := newLife(t, fnats.Options{HistoryAge: time.Hour, IdleTTL: time.Hour, FinalTTL: time.Second})
	a := l.c.node()
	if err := a.Open(discard{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []*fanout.Message{
		{Topic: "saga", Key: "step1", Data: []byte("ok")},
		{Topic: "saga", Data: []byte("done"), Header: map[string]string{fanout.HeaderFinal: "true"}},
	} {
		if _, err := a.Publish(ctx, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// The other node sweeps once it has made the streams.
	if _, err := l.n.History(ctx, "other", fanout.Position{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "state of a final topic", func() (bool, string) {
		s := l.stored("saga")
		return s[l.c.opts.Stream] == 0 && s[l.c.opts.Stream+"_KEYS"] == 0, fmt.Sprint(s)
	})
}

// TestHistoryReadKeepsTopic: a History read counts as use too.
func TestHistoryReadKeepsTopic(t *testing.T) {
	t.Parallel()
	const idle = 2 * time.Second
	l := newLife(t, fnats.Options{HistoryAge: time.Hour, IdleTTL: idle})
	ctx := context.Background()
	p := l.publish("t", "k", "a", "", false)
	start := time.Now()
	// Read history at 3/4 of IdleTTL, then look at the snapshot past
	// IdleTTL; the server's clock decides what expires.
	wait := time.NewTimer(idle * 3 / 4)
	<-wait.C
	if _, err := l.n.History(ctx, "t", p); err != nil {
		t.Fatal(err)
	}
	wait.Reset(time.Until(start.Add(idle * 5 / 4)))
	<-wait.C
	s, err := l.n.Snapshot(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Items) != 1 {
		t.Fatalf("snapshot past IdleTTL after a history read: got %d items, want 1", len(s.Items))
	}
}
