package redis_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

// lifecycle is one test's node on a prefix of its own.
type lifecycle struct {
	t      *testing.T
	c      *goredis.Client
	prefix string
	n      *fanoutredis.Backplane
}

func newLifecycle(t *testing.T, opts fanoutredis.Options) *lifecycle {
	t.Helper()
	c := newClient(t, nil)
	return newLifecycleOn(t, c, c, opts)
}

// eachClient runs f with a node on a *goredis.Client, whose publishes are
// logged by their senders, and with one on a Ring, whose publishes carry
// retry IDs (see publishScript): retryKeys is how many keys of a topic the
// retry IDs take (0 or 1 after one window).
func eachClient(t *testing.T, f func(t *testing.T, newL func(opts fanoutredis.Options) *lifecycle, retryKeys int)) {
	t.Run("client", func(t *testing.T) {
		t.Parallel()
		f(t, func(opts fanoutredis.Options) *lifecycle { return newLifecycle(t, opts) }, 0)
	})
	t.Run("ring", func(t *testing.T) {
		t.Parallel()
		f(t, func(opts fanoutredis.Options) *lifecycle {
			c := newClient(t, nil)
			ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": c.Options().Addr}})
			t.Cleanup(func() { ring.Close() })
			return newLifecycleOn(t, c, ring, opts)
		}, 1)
	})
}

// newLifecycleOn is newLifecycle with the node on client, a client of the
// same Redis as c.
func newLifecycleOn(t *testing.T, c *goredis.Client, client goredis.UniversalClient, opts fanoutredis.Options) *lifecycle {
	t.Helper()
	opts.Prefix = uniquePrefix(t, c)
	n := fanoutredis.New(client, &opts)
	if err := n.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &lifecycle{t: t, c: c, prefix: opts.Prefix, n: n}
}

func (l *lifecycle) publish(topic, key, data, idem string, final bool) fanout.Position {
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

// keys returns the names of the topic's keys in Redis, sorted.
func (l *lifecycle) keys(topic string) []string {
	l.t.Helper()
	ctx := context.Background()
	var out []string
	iter := l.c.Scan(ctx, 0, "{"+l.prefix+":"+topic+"}*", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		l.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// ttls returns the remaining time to live of each of the topic's keys.
func (l *lifecycle) ttls(topic string) map[string]time.Duration {
	l.t.Helper()
	out := make(map[string]time.Duration)
	for _, k := range l.keys(topic) {
		d, err := l.c.PTTL(context.Background(), k).Result()
		if err != nil {
			l.t.Fatal(err)
		}
		if d == -2*time.Millisecond { // gone meanwhile
			continue
		}
		out[k] = d
	}
	return out
}

// waitGone waits, for at most 20s, until the topic has no key left.
func (l *lifecycle) waitGone(topic string) {
	l.t.Helper()
	l.waitGoneBut(topic)
}

// waitGoneBut waits until the topic's keys are gone but for those named
// (by their suffix).
func (l *lifecycle) waitGoneBut(topic string, kept ...string) {
	l.t.Helper()
	// Redis expires keys by its own clock, so this polls it.
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		ks := slices.DeleteFunc(l.keys(topic), func(k string) bool { return slices.Contains(kept, suffix(k)) })
		if len(ks) == 0 {
			return
		}
		select {
		case <-poll.C:
		case <-deadline.C:
			l.t.Fatalf("keys of %s after 20s: got %v, want none", topic, ks)
		}
	}
}

// suffix returns what follows the topic's hash tag in key k.
func suffix(k string) string {
	_, s, _ := strings.Cut(k, "}:")
	return s
}

// TestIdleTopicKeysExpire: after a publish every key of the topic has a
// TTL, IdleTTL at most, the history stream HistoryAge at most (each plus
// the documented slack), and an idle topic's keys all vanish.
func TestIdleTopicKeysExpire(t *testing.T) {
	t.Parallel()
	const idle, age = 400 * time.Millisecond, 200 * time.Millisecond
	l := newLifecycle(t, fanoutredis.Options{IdleTTL: idle, HistoryAge: age})
	l.publish("idle", "k1", "a", "id-1", false)
	l.publish("idle", "k2", "b", "id-2", false)
	ttls := l.ttls("idle")
	if len(ttls) != 5 {
		t.Fatalf("keys after a publish: got %v, want the position, stream, snapshot and idempotency keys", ttls)
	}
	slack := min(idle, age) / 64
	for k, d := range ttls {
		limit := idle + slack
		if suffix(k) == "stream" {
			limit = age + slack
		}
		if d <= 0 || d > limit {
			t.Errorf("TTL of %s: got %v, want in (0, %v]", suffix(k), d, limit)
		}
	}
	l.waitGone("idle")
}

// TestReadRefreshesIdleTTL: History and Snapshot move every key but the
// history stream's back to IdleTTL; the stream keeps HistoryAge from the
// last publish, so that old history does not outlive its age.
func TestReadRefreshesIdleTTL(t *testing.T) {
	t.Parallel()
	const idle = time.Hour
	l := newLifecycle(t, fanoutredis.Options{IdleTTL: idle, HistoryAge: time.Minute})
	p := l.publish("read", "k", "a", "", false)
	ctx := context.Background()
	for _, k := range l.keys("read") {
		if err := l.c.PExpire(ctx, k, time.Minute).Err(); err != nil { // as if a while passed
			t.Fatal(err)
		}
	}
	if _, err := l.n.History(ctx, "read", p); err != nil {
		t.Fatal(err)
	}
	if _, err := l.n.Snapshot(ctx, "read"); err != nil {
		t.Fatal(err)
	}
	for k, d := range l.ttls("read") {
		if strings.HasPrefix(suffix(k), "retry") {
			continue // guards go-redis's retries only, for a minute or two
		}
		if suffix(k) == "stream" {
			if d > time.Minute {
				t.Errorf("TTL of the stream after reads: got %v, want at most %v", d, time.Minute)
			}
			continue
		}
		if d <= time.Minute {
			t.Errorf("TTL of %s after reads: got %v, want back near %v", suffix(k), d, idle)
		}
	}
}

// TestHistoryAgeOnRead: History treats messages older than HistoryAge as
// gone, without a publish to trim them.
func TestHistoryAgeOnRead(t *testing.T) {
	t.Parallel()
	const age = 20 * time.Millisecond
	l := newLifecycle(t, fanoutredis.Options{HistoryAge: age})
	ctx := context.Background()
	first := l.publish("aged", "", "a", "", false)
	l.publish("aged", "", "b", "", false)
	start, err := l.c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for now := start; now.Sub(start) <= 2*age; {
		if now, err = l.c.Time(ctx).Result(); err != nil {
			t.Fatal(err)
		}
	}
	h, err := l.n.History(ctx, "aged", first)
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete {
		t.Fatalf("history after %v of silence: got complete with %d messages, want incomplete", 2*age, len(h.Messages))
	}
}

// TestFinalTopicKeys: a final publish sets every key's TTL to FinalTTL,
// reads do not extend it, and a later publish makes the topic live again.
func TestFinalTopicKeys(t *testing.T) {
	t.Parallel()
	eachClient(t, testFinalTopicKeys)
}

func testFinalTopicKeys(t *testing.T, newL func(fanoutredis.Options) *lifecycle, retryKeys int) {
	const final = time.Minute
	l := newL(fanoutredis.Options{IdleTTL: time.Hour, FinalTTL: final, HistoryAge: time.Hour})
	l.publish("saga", "step1", "ok", "id-1", false)
	p := l.publish("saga", "", "done", "", true)
	check := func(when string) {
		t.Helper()
		ttls := l.ttls("saga")
		if len(ttls) != 4+retryKeys {
			t.Fatalf("%s: got keys %v, want the position, stream, snapshot, idempotency key and %d of retry IDs", when, ttls, retryKeys)
		}
		for k, d := range ttls {
			limit := final
			if strings.HasPrefix(suffix(k), "idem:") { // written before, and left alone
				limit = fanoutredis.DefaultIdempotencyWindow
			}
			if d <= 0 || d > limit {
				t.Errorf("%s: TTL of %s: got %v, want in (0, %v]", when, suffix(k), d, limit)
			}
		}
	}
	check("after the final publish")
	ctx := context.Background()
	if _, err := l.n.History(ctx, "saga", fanout.Position{Epoch: p.Epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.n.Snapshot(ctx, "saga"); err != nil {
		t.Fatal(err)
	}
	check("after reads")

	l.publish("saga", "", "again", "", false)
	for k, d := range l.ttls("saga") {
		if suffix(k) != "stream" && !strings.Contains(k, "idem") && d <= final {
			t.Errorf("after a later publish: TTL of %s: got %v, want above %v", suffix(k), d, final)
		}
	}
}

// TestFinalTopicExpires: a final topic's keys all vanish after FinalTTL,
// but for the idempotency keys written before, which live out their
// window; the next publish starts a new epoch, and one with such a key is
// stored in it.
func TestFinalTopicExpires(t *testing.T) {
	t.Parallel()
	l := newLifecycle(t, fanoutredis.Options{IdleTTL: time.Hour, FinalTTL: 200 * time.Millisecond, HistoryAge: time.Hour})
	l.publish("saga", "step1", "ok", "id-1", false)
	p := l.publish("saga", "", "done", "", true)
	l.waitGoneBut("saga", "idem:id-1")
	if q := l.publish("saga", "", "new", "", false); q.Epoch == p.Epoch || q.Seq != 1 {
		t.Fatalf("publish after expiry: got %v, want Seq 1 in an epoch other than %q", q, p.Epoch)
	}
	if q := l.publish("saga", "step1", "again", "id-1", false); q.Seq != 2 {
		t.Fatalf("publish with an idempotency key of the lineage before: got %v, want it stored at Seq 2", q)
	}
}

// TestDeleteRemovesEveryKey: Delete leaves no key of the topic but its
// idempotency keys, which expire by themselves; the next
// publish starts a new epoch at Seq 1, and an idempotency key used before
// publishes again.
func TestDeleteRemovesEveryKey(t *testing.T) {
	t.Parallel()
	l := newLifecycle(t, fanoutredis.Options{})
	l.publish("gone", "k", "a", "id-1", false)
	p := l.publish("gone", "", "b", "id-2", false)
	l.publish("kept", "k", "a", "id-1", false)
	ctx := context.Background()
	if err := l.n.Delete(ctx, "gone"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	// The idempotency keys live out their window; they count for nothing
	// in the topic's next lineage (below).
	if ks := l.keys("gone"); len(ks) != 2 || !strings.HasSuffix(ks[0], ":idem:id-1") || !strings.HasSuffix(ks[1], ":idem:id-2") {
		t.Fatalf("keys after delete: got %v, want the two idempotency keys alone", ks)
	}
	if ks := l.keys("kept"); len(ks) == 0 {
		t.Fatal("keys of another topic after delete: got none, want them kept")
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

// TestDeleteAfterClose: Delete on a closed node fails with ErrClosed.
func TestDeleteAfterClose(t *testing.T) {
	t.Parallel()
	l := newLifecycle(t, fanoutredis.Options{})
	l.n.Close()
	if err := l.n.Delete(context.Background(), "t"); err == nil || !strings.Contains(err.Error(), fanout.ErrClosed.Error()) {
		t.Fatalf("delete after close: got %v, want ErrClosed", err)
	}
}

// TestResumeAfterExpiry: a client that resumes an expired topic through a
// hub gets recovered=false and the empty snapshot, and the topic's next
// message comes under a new epoch.
func TestResumeAfterExpiry(t *testing.T) {
	t.Parallel()
	c := newClient(t, nil)
	opts := fanoutredis.Options{Prefix: uniquePrefix(t, c), IdleTTL: 300 * time.Millisecond, HistoryAge: 300 * time.Millisecond}
	hub := newHub(t, c, opts)
	l := &lifecycle{t: t, c: c, prefix: opts.Prefix}
	ctx := context.Background()
	p, err := hub.Publish(ctx, "stock", []byte("5"), fanout.WithKey("sku"))
	if err != nil {
		t.Fatal(err)
	}
	l.waitGone("stock")
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

// TestPartialLossStartsNewEpoch: when the position is lost while the
// history and snapshot survive (evicted, deleted by hand), or only its Seq
// or its epoch, the next publish starts a new epoch, so that no position is
// handed out twice in one epoch.
func TestPartialLossStartsNewEpoch(t *testing.T) {
	t.Parallel()
	for _, lost := range []string{"position", "seq", "epoch"} {
		t.Run(lost, func(t *testing.T) {
			t.Parallel()
			l := newLifecycle(t, fanoutredis.Options{})
			l.publish("t", "k", "a", "", false)
			p := l.publish("t", "", "b", "", false)
			ctx := context.Background()
			k := "{" + l.prefix + ":t}:pos"
			var err error
			switch lost {
			case "position":
				err = l.c.Del(ctx, k).Err()
			case "seq":
				err = l.c.HDel(ctx, k, "s").Err()
			case "epoch":
				err = l.c.HDel(ctx, k, "e").Err()
			}
			if err != nil {
				t.Fatalf("lose the %s: %v", lost, err)
			}
			h, err := l.n.History(ctx, "t", fanout.Position{Epoch: p.Epoch, Seq: 1})
			if err != nil {
				t.Fatal(err)
			}
			if h.Complete {
				t.Fatalf("history without %s: got complete at %v, want incomplete", lost, h.Position)
			}
			if q := l.publish("t", "", "c", "", false); q.Epoch == p.Epoch || q.Seq != 1 {
				t.Fatalf("publish without the %s: got %v, want Seq 1 in an epoch other than %q", lost, q, p.Epoch)
			}
			if s, err := l.n.Snapshot(ctx, "t"); err != nil || len(s.Items) != 0 {
				t.Fatalf("snapshot of the new epoch: got %d items, %v; want none", len(s.Items), err)
			}
		})
	}
}

// TestKeysMadeLaterHaveTTL: a publish sets the position's TTL at most once
// per slack; the keys a later publish makes (the snapshot hash with its
// first key, the idempotency keys) get a TTL all the same.
func TestKeysMadeLaterHaveTTL(t *testing.T) {
	t.Parallel()
	eachClient(t, testKeysMadeLaterHaveTTL)
}

func testKeysMadeLaterHaveTTL(t *testing.T, newL func(fanoutredis.Options) *lifecycle, retryKeys int) {
	const idle = time.Hour
	const age = time.Minute
	l := newL(fanoutredis.Options{IdleTTL: idle, HistoryAge: age})
	l.publish("t", "", "a", "", false)
	l.publish("t", "k", "b", "id-1", false)
	ttls := l.ttls("t")
	if len(ttls) != 4+retryKeys {
		t.Fatalf("keys: got %v, want the position, stream, snapshot, idempotency key and %d of retry IDs", ttls, retryKeys)
	}
	for k, d := range ttls {
		limit := idle + age/64
		switch {
		case suffix(k) == "stream":
			limit = age + age/64
		case strings.HasPrefix(suffix(k), "idem:"):
			limit = fanoutredis.DefaultIdempotencyWindow
		}
		if d <= 0 || d > limit {
			t.Errorf("TTL of %s: got %v, want in (0, %v]", suffix(k), d, limit)
		}
	}
}

// TestHubFinalPublish: Hub.Publish WithFinal reaches the backplane as a
// final publish.
func TestHubFinalPublish(t *testing.T) {
	t.Parallel()
	c := newClient(t, nil)
	const final = time.Minute
	opts := fanoutredis.Options{Prefix: uniquePrefix(t, c), FinalTTL: final}
	hub := newHub(t, c, opts)
	l := &lifecycle{t: t, c: c, prefix: opts.Prefix}
	if _, err := hub.Publish(context.Background(), "saga", []byte("done"), fanout.WithFinal()); err != nil {
		t.Fatal(err)
	}
	for k, d := range l.ttls("saga") {
		if d <= 0 || d > final {
			t.Errorf("TTL of %s: got %v, want in (0, %v]", suffix(k), d, final)
		}
	}
}
