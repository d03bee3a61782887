package fanout_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
)

// The tests of this file measure the live heap, so none of them is
// parallel: they run alone, before the parallel tests of the package.

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
// time, however many there were.
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
			if _, err := h.Publish(ctx, fmt.Sprint("saga.", i), data, fanout.WithKey("step")); err != nil {
				t.Fatal(err)
			}
		}
		if grown := liveHeap() - baseline; grown < topics*50 {
			t.Fatalf("with %d topics stored: live heap grew by %d bytes; the test cannot see a leak", topics, grown)
		}
		time.Sleep(25 * time.Hour) // past the default idle time
		synctest.Wait()
		checkHeap(t, fmt.Sprintf("%d one-shot topics, a day later", topics), baseline, 4<<20)
	})
}
