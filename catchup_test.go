package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/gofanout/fanout"
)

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestSnapshotCyclesStayBounded subscribes with a snapshot to a topic of
// 100,000 keys and leaves again, 40 times, without reading: what each
// subscribe owed must not pile up in the session's queue.
func TestSnapshotCyclesStayBounded(t *testing.T) {
	hub, err := fanout.NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	ctx := context.Background()
	const keys = 100_000
	for i := range keys {
		if _, err := hub.Publish(ctx, "big", []byte(`1`), fanout.WithKey(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
	}
	s, err := hub.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(fanout.CloseNormal, "")
	before := heapInUse()
	for i := range 40 {
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{ID: "s", Topic: "big", Snapshot: true}); err != nil {
			t.Fatalf("cycle %d: subscribe: %v", i, err)
		}
		if err := s.Unsubscribe(ctx, "u", "big"); err != nil {
			t.Fatalf("cycle %d: unsubscribe: %v", i, err)
		}
	}
	grown := int64(heapInUse()) - int64(before)
	// One snapshot's item list is 800 KB; 40 of them would be 32 MB.
	if grown > 8<<20 {
		t.Fatalf("the heap grew by %d MB over 40 snapshot cycles, want at most 8 MB", grown>>20)
	}
	select {
	case <-s.Done():
		t.Fatal("the session was closed, want it open: it left every topic it was owed")
	default:
	}
}

// TestCatchUpBudget subscribes to topics whose snapshots together exceed
// CatchUpBytes without reading: the session is closed as a slow consumer.
// The first snapshot is admitted whatever its size.
func TestCatchUpBudget(t *testing.T) {
	hub, err := fanout.NewHub(&fanout.HubOptions{CatchUpBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	ctx := context.Background()
	payload := make([]byte, 1000)
	for i := range 3 {
		for k := range 1500 { // about 1.5 MB of state per topic
			if _, err := hub.Publish(ctx, fmt.Sprint("t", i), payload, fanout.WithKey(fmt.Sprint(k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := hub.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(fanout.CloseNormal, "")
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "t0", Snapshot: true}); err != nil {
		t.Fatalf("first subscribe, larger than the budget alone: %v", err)
	}
	err = s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "t1", Snapshot: true})
	if err != nil && !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("second subscribe: got %v, want success or ErrClosed", err)
	}
	var last fanout.Frame
	for {
		fs, err := s.Next(ctx, nil)
		if err != nil {
			break
		}
		last = fs[len(fs)-1]
	}
	if last.Type != fanout.FrameClose || last.Close.Code != fanout.CloseSlowConsumer {
		t.Fatalf("got last frame %+v, want close %d", last, fanout.CloseSlowConsumer)
	}
}

// TestCatchUpAfterReading checks that a session that reads what it was
// owed may subscribe to the next topic of the same size.
func TestCatchUpAfterReading(t *testing.T) {
	hub, err := fanout.NewHub(&fanout.HubOptions{CatchUpBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	ctx := context.Background()
	payload := make([]byte, 1000)
	for i := range 3 {
		for k := range 1500 {
			if _, err := hub.Publish(ctx, fmt.Sprint("t", i), payload, fanout.WithKey(fmt.Sprint(k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := hub.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(fanout.CloseNormal, "")
	done, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 3 {
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: fmt.Sprint("t", i), Snapshot: true}); err != nil {
			t.Fatalf("subscribe %d: %v", i, err)
		}
		fs, err := s.Next(done, nil)
		if err != nil || len(fs) != 2 || fs[1].Type != fanout.FrameSnapshot {
			t.Fatalf("subscribe %d: got %d frames (%v), want the reply and the snapshot", i, len(fs), err)
		}
	}
}
