package backplanetest

import (
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// The scenarios of a topic's end: Delete, and the expiry of stored state.

// The lifetimes of the expiry scenarios' clusters.
var (
	idleLife       = Lifetimes{IdleTTL: 400 * time.Millisecond, FinalTTL: 200 * time.Millisecond, HistoryAge: 10 * time.Second}
	finalLife      = Lifetimes{IdleTTL: 3 * time.Second, FinalTTL: 500 * time.Millisecond, HistoryAge: 10 * time.Second}
	historyAgeLife = Lifetimes{IdleTTL: 5 * time.Second, FinalTTL: 5 * time.Second, HistoryAge: 300 * time.Millisecond}
)

func needsExpiry(f Features) string {
	if f.Expiry == nil {
		return "Features.Expiry is not set: the suite cannot build the backplane with short lifetimes"
	}
	return ""
}

// snapshot reads topic's snapshot on n.
func (s *suite) snapshot(t *testing.T, n fanout.Backplane, topic string) fanout.Snapshot {
	t.Helper()
	snap, err := n.Snapshot(s.ctx(t), topic)
	if err != nil {
		t.Fatalf("snapshot of %q: %v", topic, err)
	}
	return snap
}

// checkForgotten fails unless topic has no stored state: an empty snapshot
// at Seq 0, and a history that does not reach back to old.
func (s *suite) checkForgotten(t *testing.T, what string, n fanout.Backplane, old fanout.Position) {
	t.Helper()
	if snap := s.snapshot(t, n, s.topic); len(snap.Items) != 0 || snap.Position.Seq != 0 {
		t.Fatalf("%s: got a snapshot of %d items at %v, want none at Seq 0", what, len(snap.Items), snap.Position)
	}
	if h := s.history(t, n, s.topic, old); h.Complete || len(h.Messages) != 0 || h.Position.Seq != 0 {
		t.Fatalf("%s: history after %v: got complete=%v, %d messages, position %v; want incomplete, none, Seq 0",
			what, old, h.Complete, len(h.Messages), h.Position)
	}
}

// resumeForgotten resumes from old through a hub and checks that the
// client learns that it missed something: recovered=false and an empty
// snapshot at Seq 0.
func (s *suite) resumeForgotten(t *testing.T, what string, h *fanout.Hub, old fanout.Position) *client {
	t.Helper()
	c := s.client(t, h)
	if r := c.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Since: &old}); !isFalse(r.Recovered) {
		t.Fatalf("%s: resume from %v: got recovered %s, want false", what, old, fmtBool(r.Recovered))
	}
	if f := c.next(t); f.Type != fanout.FrameSnapshot || len(f.Snapshot.Items) != 0 || f.Snapshot.Position.Seq != 0 {
		t.Fatalf("%s: resume from %v: got %s, want an empty snapshot at Seq 0", what, old, describe(f))
	}
	return c
}

// checkNewEpoch fails unless pos starts a new lineage after old.
func checkNewEpoch(t *testing.T, what string, pos, old fanout.Position) {
	t.Helper()
	if pos.Seq != 1 || pos.Epoch == old.Epoch || pos.Epoch == "" {
		t.Fatalf("%s: got position %v, want Seq 1 of a new epoch (the old one was %v)", what, pos, old)
	}
}

// testDelete: Delete forgets everything of a topic at once; the topic
// starts again under a new epoch, hubs resync their live sessions, and a
// client resuming from before learns that it missed something.
func testDelete(t *testing.T, s *suite) {
	a, b, c := s.hub(t), s.hub(t), s.hub(t)
	live := s.client(t, b)
	live.subscribe(t, fanout.SubscribeRequest{Topic: s.topic})
	s.hubPublish(t, a, s.topic, "1", fanout.WithKey("k1"), fanout.WithIdempotencyKey("once"))
	s.hubPublish(t, a, s.topic, "2", fanout.WithKey("k2"))
	s.hubPublish(t, a, s.topic, "3")
	old := live.messages(t, 3)[2].Position
	n := s.node(t, newRecorder(t))

	if err := n.Delete(s.ctx(t), s.topic+"-never"); err != nil {
		t.Fatalf("delete a topic without stored state: got %v, want nil", err)
	}
	if err := a.DeleteTopic(s.ctx(t), s.topic); err != nil {
		t.Fatalf("delete: %v", err)
	}
	s.checkForgotten(t, "after delete", n, old)
	if h := s.history(t, n, s.topic, fanout.Position{}); !h.Complete || len(h.Messages) != 0 || h.Position.Seq != 0 {
		t.Fatalf("after delete: history from the start: got complete=%v, %d messages, position %v; want complete, none, Seq 0",
			h.Complete, len(h.Messages), h.Position)
	}
	resumed := s.resumeForgotten(t, "after delete", c, old)

	// The idempotency key was forgotten too: the retry publishes.
	pos := s.hubPublish(t, a, s.topic, "after", fanout.WithKey("k1"), fanout.WithIdempotencyKey("once"))
	checkNewEpoch(t, "first publish after delete", pos, old)
	if got := resumed.messages(t, 1)[0]; got.Position != pos {
		t.Fatalf("session resumed after delete: got %v, want %v", got.Position, pos)
	}
	if f := live.next(t); f.Type != fanout.FrameClose || f.Close.Code != fanout.CloseResync {
		t.Fatalf("session live through the delete: got %s, want close %d", describe(f), fanout.CloseResync)
	}
	again := s.client(t, b)
	if r := again.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Since: &old}); !isFalse(r.Recovered) || *r.Position != pos {
		t.Fatalf("resume from before the delete: got recovered %s at %v, want false at %v", fmtBool(r.Recovered), *r.Position, pos)
	}
	if f := again.next(t); f.Type != fanout.FrameSnapshot || f.Snapshot.Position != pos || len(f.Snapshot.Items) != 1 || string(f.Snapshot.Items[0].Data) != "after" {
		t.Fatalf("resume from before the delete: got %s, want a snapshot of the new epoch's one item at %v", describe(f), pos)
	}
}

// testIdleExpiry: reads and publishes keep a topic's state; left alone for
// IdleTTL, it is forgotten, and the topic starts again under a new epoch.
func testIdleExpiry(t *testing.T, s *suite) {
	idle := s.life.IdleTTL
	p := s.node(t, newRecorder(t))
	first := s.publish(t, p, s.topic, "k", "v1", "once")
	for end := time.Now().Add(2 * idle); time.Now().Before(end); {
		time.Sleep(idle / 4)
		if snap := s.snapshot(t, p, s.topic); len(snap.Items) != 1 || snap.Position != first {
			t.Fatalf("read every %v for %v: got a snapshot of %d items at %v, want 1 at %v: reads must keep the state",
				idle/4, 2*idle, len(snap.Items), snap.Position, first)
		}
		if h := s.history(t, p, s.topic, fanout.Position{Epoch: first.Epoch}); !h.Complete || len(h.Messages) != 1 {
			t.Fatalf("read every %v: got complete=%v, %d messages, want the one message", idle/4, h.Complete, len(h.Messages))
		}
	}
	last := s.publish(t, p, s.topic, "k", "v2", "")

	time.Sleep(idle + s.f.ExpiryLatency)
	h := s.hub(t)
	resumed := s.resumeForgotten(t, "idle for IdleTTL", h, last)
	s.checkForgotten(t, "idle for IdleTTL", p, last)
	// Positions are never reused, and the idempotency key is forgotten.
	pos := s.publish(t, p, s.topic, "k", "v3", "once")
	checkNewEpoch(t, "first publish after expiry", pos, first)
	if got := resumed.messages(t, 1)[0]; got.Position != pos {
		t.Fatalf("session resumed after expiry: got %v, want %v", got.Position, pos)
	}
}

// testFinalExpiry: FinalTTL after a final message the topic is forgotten,
// even though it was read meanwhile and its idle time is longer.
func testFinalExpiry(t *testing.T, s *suite) {
	p := s.node(t, newRecorder(t))
	first := s.publish(t, p, s.topic, "step", "running", "")
	start := time.Now()
	m := newMessage(s.topic, "step", "done", map[string]string{fanout.HeaderFinal: "true"})
	final, err := p.Publish(s.ctx(t), m, "")
	if err != nil {
		t.Fatalf("publish the final message: %v", err)
	}
	time.Sleep(s.life.FinalTTL / 5)
	if snap := s.snapshot(t, p, s.topic); len(snap.Items) != 1 || snap.Position != final || !snap.Items[0].Final() {
		t.Fatalf("within FinalTTL: got a snapshot of %d items at %v, want the final message at %v", len(snap.Items), snap.Position, final)
	}
	if h := s.history(t, p, s.topic, first); !h.Complete || len(h.Messages) != 1 {
		t.Fatalf("within FinalTTL: history after %v: got complete=%v, %d messages; want the final message", first, h.Complete, len(h.Messages))
	}
	time.Sleep(time.Until(start.Add(s.life.FinalTTL + s.f.ExpiryLatency)))
	s.checkForgotten(t, "FinalTTL after the final message, read meanwhile", p, final)
	pos := s.publish(t, p, s.topic, "step", "again", "")
	checkNewEpoch(t, "first publish after expiry", pos, final)
}

// testHistoryAge: messages leave history at HistoryAge, while the topic's
// position and snapshot stay.
func testHistoryAge(t *testing.T, s *suite) {
	p := s.node(t, newRecorder(t))
	first := s.publish(t, p, s.topic, "k", "a", "")
	last := s.publish(t, p, s.topic, "", "b", "")
	time.Sleep(s.life.HistoryAge + s.f.ExpiryLatency)
	if s.f.PositionExpiresWithHistory {
		// The position is gone with history; the snapshot's items stay
		// (until IdleTTL), so a late page still shows the state.
		if h := s.history(t, p, s.topic, last); h.Complete || len(h.Messages) != 0 || h.Position.Seq != 0 {
			t.Fatalf("after HistoryAge: history after %v: got complete=%v, %d messages, position %v; want incomplete, none, Seq 0",
				last, h.Complete, len(h.Messages), h.Position)
		}
		pos := s.publish(t, p, s.topic, "", "c", "")
		checkNewEpoch(t, "first publish after HistoryAge", pos, last)
		return
	}
	if h := s.history(t, p, s.topic, fanout.Position{Epoch: first.Epoch}); h.Complete || len(h.Messages) != 0 || h.Position != last {
		t.Fatalf("after HistoryAge: history from the start: got complete=%v, %d messages, position %v; want incomplete, none, %v",
			h.Complete, len(h.Messages), h.Position, last)
	}
	if h := s.history(t, p, s.topic, last); !h.Complete || len(h.Messages) != 0 || h.Position != last {
		t.Fatalf("after HistoryAge: history after the head: got complete=%v, %d messages, position %v; want complete, none, %v",
			h.Complete, len(h.Messages), h.Position, last)
	}
	if snap := s.snapshot(t, p, s.topic); len(snap.Items) != 1 || snap.Position != last || snap.Items[0].Position != first {
		t.Fatalf("after HistoryAge: got a snapshot of %d items at %v, want the keyed message at %v", len(snap.Items), snap.Position, last)
	}
	next := s.publish(t, p, s.topic, "", "c", "")
	if next.Epoch != last.Epoch || next.Seq != last.Seq+1 {
		t.Fatalf("publish after HistoryAge: got %v, want Seq %d of epoch %q", next, last.Seq+1, last.Epoch)
	}
	if h := s.history(t, p, s.topic, last); !h.Complete || len(h.Messages) != 1 || h.Messages[0].Position != next {
		t.Fatalf("history after %v: got complete=%v, %d messages; want the message at %v", last, h.Complete, len(h.Messages), next)
	}
}
