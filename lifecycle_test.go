package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
)

// The tests of this file that measure the live heap are not parallel: they
// run alone, before the parallel tests of the package.

// liveHeap returns the bytes of live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// checkHeap fails when the live heap grew by more than margin since
// baseline.
func checkHeap(t *testing.T, what string, baseline, margin uint64) {
	t.Helper()
	now := liveHeap()
	t.Logf("%s: live heap %.1f MB, baseline %.1f MB", what, mb(now), mb(baseline))
	if now > baseline+margin {
		t.Fatalf("%s: live heap %.1f MB, baseline %.1f MB: grew by more than %.1f MB",
			what, mb(now), mb(baseline), mb(margin))
	}
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// TestUniqueTopicChurn: sessions that each subscribe to a topic of their
// own and leave leave nothing behind, on the hub or in its backplane.
func TestUniqueTopicChurn(t *testing.T) {
	const sessions = 50_000
	h := newHub(t, nil)
	ctx := context.Background()
	// Warm up what a hub keeps whatever its topics (pools, its shards).
	for i := range 100 {
		s, err := h.NewSession(fanout.Principal{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: fmt.Sprint("warm-", i)}); err != nil {
			t.Fatal(err)
		}
		s.Close(fanout.CloseNormal, "")
	}
	baseline := liveHeap()

	all := make([]*fanout.Session, 0, sessions)
	for i := range sessions {
		s, err := h.NewSession(fanout.Principal{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: fmt.Sprint("churn-", i), Snapshot: i%2 == 0}); err != nil {
			t.Fatal(err)
		}
		all = append(all, s)
	}
	if n := len(h.Topics()); n != sessions {
		t.Fatalf("while subscribed: got %d topics, want %d", n, sessions)
	}
	for _, s := range all {
		s.Close(fanout.CloseGoingAway, "")
	}
	all = nil
	if n := len(h.Topics()); n != 0 {
		t.Fatalf("after every session left: got %d topics, want 0", n)
	}
	// 50,000 topics that each kept 100 bytes would hold 5 MB.
	checkHeap(t, fmt.Sprintf("after %d sessions subscribed to a topic each and left", sessions), baseline, 4<<20)
}

// TestOneShotTopicsExpire: topics published to once and never again are
// forgotten once their stored state has been idle for the default idle
// time, or the default final grace period for those whose message was
// final, however many there were.
func TestOneShotTopicsExpire(t *testing.T) {
	const topics = 200_000
	synctest.Test(t, func(t *testing.T) {
		h, err := fanout.NewHub(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		ctx := context.Background()
		publish(t, h, "warm", "0123456789abcdef")
		baseline := liveHeap()
		data := []byte("0123456789abcdef")
		for i := range topics {
			opts := []fanout.PublishOption{fanout.WithKey("step")}
			if i%2 == 0 {
				opts = append(opts, fanout.WithFinal())
			}
			if _, err := h.Publish(ctx, fmt.Sprint("saga.", i), data, opts...); err != nil {
				t.Fatal(err)
			}
		}
		grown := liveHeap() - baseline
		if grown < topics*50 {
			t.Fatalf("with %d topics stored: live heap grew by %d bytes; the test cannot see a leak", topics, grown)
		}
		time.Sleep(11 * time.Minute) // past the default FinalTTL
		synctest.Wait()
		checkHeap(t, fmt.Sprintf("%d one-shot topics, half of them final, 11 minutes later", topics), baseline, grown*6/10)
		time.Sleep(25 * time.Hour) // past the default idle time
		synctest.Wait()
		checkHeap(t, fmt.Sprintf("%d one-shot topics, a day later", topics), baseline, 4<<20)
	})
}

// countingBackplane is a memory backplane that counts each topic's
// subscriptions and can fail Subscribe or Snapshot.
type countingBackplane struct {
	fanout.Backplane
	failSubscribe, failSnapshot string // topic prefixes that fail

	mu   sync.Mutex // guards subs
	subs map[string]int
}

var errTest = errors.New("test backplane: refused")

func (b *countingBackplane) Subscribe(ctx context.Context, topic string) error {
	if b.failSubscribe != "" && len(topic) >= len(b.failSubscribe) && topic[:len(b.failSubscribe)] == b.failSubscribe {
		return errTest
	}
	if err := b.Backplane.Subscribe(ctx, topic); err != nil {
		return err
	}
	b.mu.Lock()
	b.subs[topic]++
	b.mu.Unlock()
	return nil
}

func (b *countingBackplane) Unsubscribe(ctx context.Context, topic string) error {
	b.mu.Lock()
	b.subs[topic]--
	if b.subs[topic] == 0 {
		delete(b.subs, topic)
	}
	b.mu.Unlock()
	return b.Backplane.Unsubscribe(ctx, topic)
}

func (b *countingBackplane) Snapshot(ctx context.Context, topic string) (fanout.Snapshot, error) {
	if b.failSnapshot != "" && len(topic) >= len(b.failSnapshot) && topic[:len(b.failSnapshot)] == b.failSnapshot {
		return fanout.Snapshot{}, errTest
	}
	return b.Backplane.Snapshot(ctx, topic)
}

// TestFailedSubscribesLeaveNothing: however a subscribe fails, the hub
// keeps no state for its topic and leaves no backplane subscription.
func TestFailedSubscribesLeaveNothing(t *testing.T) {
	t.Parallel()
	bp := &countingBackplane{
		Backplane:     fanout.NewMemoryBroker(nil).Node(),
		failSubscribe: "nosub.",
		failSnapshot:  "nosnap.",
		subs:          make(map[string]int),
	}
	h := newHub(t, &fanout.HubOptions{
		Backplane:        bp,
		MaxSubscriptions: 2,
		Authorize: func(_ context.Context, _ fanout.Principal, topic string, _ fanout.Action) error {
			if topic == "denied" {
				return errors.New("no")
			}
			return nil
		},
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			s, err := h.NewSession(fanout.Principal{})
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close(fanout.CloseGoingAway, "")
			for _, topic := range []string{"nosub.a", "nosnap.a", fmt.Sprint("nosub.", i), fmt.Sprint("nosnap.", i), "denied", "bad topic"} {
				if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: topic}); err == nil {
					t.Errorf("subscribe to %q: got success, want an error", topic)
				}
			}
			for _, topic := range []string{"ok.a", fmt.Sprint("ok.", i)} {
				if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: topic}); err != nil {
					t.Errorf("subscribe to %q: %v", topic, err)
				}
			}
			if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: fmt.Sprint("over.", i)}); !errors.Is(err, fanout.ErrTooManySubscriptions) {
				t.Errorf("third subscription: got %v, want ErrTooManySubscriptions", err)
			}
			// A subscribe whose context ends while another makes the
			// topic's backplane subscription.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			s2, err := h.NewSession(fanout.Principal{})
			if err != nil {
				t.Error(err)
				return
			}
			s2.Subscribe(cctx, fanout.SubscribeRequest{Topic: "ok.a"})
			s2.Close(fanout.CloseGoingAway, "")
		})
	}
	wg.Wait()
	if n := len(h.Topics()); n != 0 {
		t.Fatalf("after every session left: got %d topics on the hub, want 0", n)
	}
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if len(bp.subs) != 0 {
		t.Fatalf("after every session left: backplane subscriptions left: %v", bp.subs)
	}
}

// TestDeleteTopicResyncsSubscribers: a session subscribed through
// DeleteTopic sees the next publish's new epoch as a gap and is told to
// resync; resuming from its position it gets recovered=false and the new
// snapshot, never a reused position.
func TestDeleteTopicResyncsSubscribers(t *testing.T) {
	t.Parallel()
	h := newHub(t, nil)
	ctx := context.Background()
	s := newSession(t, h)
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "saga.1"}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	next(t, s, &buf) // reply
	publish(t, h, "saga.1", "flight", fanout.WithKey("flight"))
	old := publish(t, h, "saga.1", "hotel", fanout.WithKey("hotel"))
	for range 2 {
		if f := next(t, s, &buf); f.Type != fanout.FrameMessage {
			t.Fatalf("got %+v, want a message", f)
		}
	}
	if err := h.DeleteTopic(ctx, "saga.1"); err != nil {
		t.Fatal(err)
	}
	pos := publish(t, h, "saga.1", "car", fanout.WithKey("car"))
	if pos.Seq != 1 || pos.Epoch == old.Epoch {
		t.Fatalf("publish after DeleteTopic: got %v, want Seq 1 of a new epoch (was %v)", pos, old)
	}
	if f := next(t, s, &buf); f.Type != fanout.FrameClose || f.Close.Code != fanout.CloseResync || !f.Close.Reconnect {
		t.Fatalf("subscriber through DeleteTopic: got %+v, want close %d with reconnect", f, fanout.CloseResync)
	}
	r := newSession(t, h)
	if err := r.Subscribe(ctx, fanout.SubscribeRequest{Topic: "saga.1", Since: &old}); err != nil {
		t.Fatal(err)
	}
	buf = nil
	f := next(t, r, &buf)
	if f.Type != fanout.FrameReply || f.Reply.Recovered == nil || *f.Reply.Recovered || *f.Reply.Position != pos {
		t.Fatalf("resume from %v: got %+v, want recovered=false at %v", old, f.Reply, pos)
	}
	f = next(t, r, &buf)
	if f.Type != fanout.FrameSnapshot || len(f.Snapshot.Items) != 1 || string(f.Snapshot.Items[0].Data) != "car" {
		t.Fatalf("resume from %v: got %+v, want the new snapshot", old, f)
	}
	if err := h.DeleteTopic(ctx, "bad topic"); !errors.Is(err, fanout.ErrInvalidTopic) {
		t.Fatalf("DeleteTopic of an invalid name: got %v, want ErrInvalidTopic", err)
	}
}
