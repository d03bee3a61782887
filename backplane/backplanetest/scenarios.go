package backplanetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gofanout/fanout"
)

var scenarios = []scenario{
	{name: "GlobalPositions", run: testGlobalPositions},
	{name: "OrderAcrossNodes", run: testOrderAcrossNodes},
	{name: "DeliverOnlyToInterested", run: testDeliverOnlyToInterested},
	{name: "Resubscribe", run: testResubscribe},
	{name: "History", run: testHistory},
	{name: "HistoryRetention", needs: needsHistorySize, run: testHistoryRetention},
	{name: "Snapshot", run: testSnapshot},
	{name: "SnapshotConsistent", run: testSnapshotConsistent},
	{name: "ResumeOnAnotherNode", run: testResumeOnAnotherNode},
	{name: "ResumeWhilePublishing", run: testResumeWhilePublishing},
	{name: "EpochChange", needs: needsLoseHistory, run: testEpochChange},
	{name: "Idempotency", run: testIdempotency},
	{name: "Cancellation", run: testCancellation},
	{name: "ConcurrentClose", run: testConcurrentClose},
	{name: "AfterClose", run: testAfterClose},
	{name: "Delete", run: testDelete},
	{name: "IdleExpiry", needs: needsExpiry, run: testIdleExpiry, life: idleLife},
	{name: "FinalExpiry", needs: needsExpiry, run: testFinalExpiry, life: finalLife},
	{name: "HistoryAge", needs: needsExpiry, run: testHistoryAge, life: historyAgeLife},
}

func needsHistorySize(f Features) string {
	if f.HistorySize <= 0 {
		return "Features.HistorySize is not set: the suite cannot overflow history"
	}
	return ""
}

func needsLoseHistory(f Features) string {
	if f.LoseHistory == nil {
		return "Features.LoseHistory is not set: the suite cannot make the backplane lose history"
	}
	return ""
}

// testGlobalPositions: nodes publishing concurrently to one topic never
// reuse a Seq, and Seqs are 1, 2, 3, ... with no hole.
func testGlobalPositions(t *testing.T, s *suite) {
	const nodes, workers, each = 3, 3, 40
	r := newRecorder(t)
	sub := s.node(t, r)
	if err := sub.Subscribe(s.ctx(t), s.topic); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	ctx := s.ctx(t)
	var (
		mu     sync.Mutex // guards bySeq and epochs
		bySeq  = make(map[uint64]string)
		epochs = make(map[string]bool)
		wg     sync.WaitGroup
		errs   = make(chan error, nodes*workers)
	)
	for i := range nodes {
		n := s.node(t, newRecorder(t))
		for w := range workers {
			wg.Go(func() {
				var last uint64
				for k := range each {
					data := fmt.Sprintf("n%d-w%d-%d", i, w, k)
					p, err := n.Publish(ctx, newMessage(s.topic, "", data, nil), "")
					if err != nil {
						errs <- fmt.Errorf("publish %s: %w", data, err)
						return
					}
					if p.Seq <= last {
						errs <- fmt.Errorf("publish %s: got Seq %d after Seq %d from the same publisher, want a larger one", data, p.Seq, last)
						return
					}
					last = p.Seq
					mu.Lock()
					prev, dup := bySeq[p.Seq]
					bySeq[p.Seq] = data
					epochs[p.Epoch] = true
					mu.Unlock()
					if dup {
						errs <- fmt.Errorf("seq %d handed out twice: for %s and %s", p.Seq, prev, data)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = nodes * workers * each
	if len(epochs) != 1 {
		t.Fatalf("got %d epochs, want 1", len(epochs))
	}
	for seq := uint64(1); seq <= total; seq++ {
		if _, ok := bySeq[seq]; !ok {
			t.Fatalf("Seq %d was never handed out; want Seqs 1 to %d", seq, total)
		}
	}
	got := r.wait(t, s.topic, total, s.f.Timeout)
	r.mu.Lock()
	resyncs := r.resyncs[s.topic]
	r.mu.Unlock()
	checkSeqs(t, fmt.Sprintf("subscribed node (%d resyncs)", resyncs), got, 1)
	for _, m := range got {
		if want := bySeq[m.Position.Seq]; string(m.Data) != want {
			t.Fatalf("Seq %d: got data %q, want %q", m.Position.Seq, m.Data, want)
		}
	}
}

// testOrderAcrossNodes: sessions on three hubs see the same messages in the
// same order while two hubs publish concurrently.
func testOrderAcrossNodes(t *testing.T, s *suite) {
	const each = 150
	hubs := []*fanout.Hub{s.hub(t), s.hub(t), s.hub(t)}
	clients := make([]*client, len(hubs))
	for i, h := range hubs {
		clients[i] = s.client(t, h)
		if r := clients[i].subscribe(t, fanout.SubscribeRequest{Topic: s.topic}); r.Position.Seq != 0 {
			t.Fatalf("subscribe to a new topic: got position %v, want Seq 0", r.Position)
		}
	}
	ctx := s.ctx(t)
	var (
		mu    sync.Mutex // guards bySeq
		bySeq = make(map[uint64]string)
		wg    sync.WaitGroup
		errs  = make(chan error, 2)
	)
	for i, h := range hubs[:2] {
		wg.Go(func() {
			for k := range each {
				data := fmt.Sprintf("hub%d-%d", i, k)
				p, err := h.Publish(ctx, s.topic, []byte(data))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				bySeq[p.Seq] = data
				mu.Unlock()
			}
		})
	}
	var first []*fanout.Message
	for i, c := range clients {
		got := c.messages(t, 2*each)
		checkSeqs(t, fmt.Sprintf("session on hub %d", i), got, 1)
		if i == 0 {
			first = got
			continue
		}
		for k := range got {
			if got[k].Position != first[k].Position || string(got[k].Data) != string(first[k].Data) {
				t.Fatalf("message %d: hub %d got %v %q, hub 0 got %v %q", k, i, got[k].Position, got[k].Data, first[k].Position, first[k].Data)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	for _, m := range first {
		if want := bySeq[m.Position.Seq]; string(m.Data) != want {
			t.Fatalf("Seq %d: got data %q, want %q", m.Position.Seq, m.Data, want)
		}
	}
}

// testDeliverOnlyToInterested: a node gets Deliver calls only for topics it
// subscribed to, and none after it unsubscribed.
func testDeliverOnlyToInterested(t *testing.T, s *suite) {
	other := s.topic + "-other"
	ra, rb, rp := newRecorder(t), newRecorder(t), newRecorder(t)
	a, b, p := s.node(t, ra), s.node(t, rb), s.node(t, rp)
	for _, sub := range []struct {
		n     fanout.Backplane
		topic string
	}{{a, s.topic}, {a, other}, {b, other}} {
		if err := sub.n.Subscribe(s.ctx(t), sub.topic); err != nil {
			t.Fatalf("subscribe to %q: %v", sub.topic, err)
		}
	}
	var sent []*fanout.Message
	for i := range 3 {
		m := newMessage(s.topic, "", fmt.Sprint("t", i), nil)
		if _, err := p.Publish(s.ctx(t), m, ""); err != nil {
			t.Fatalf("publish: %v", err)
		}
		sent = append(sent, m)
	}
	s.publish(t, p, other, "", "o1", "")
	got := ra.wait(t, s.topic, 3, s.f.Timeout)
	for i, m := range got {
		if d := sameMessage(m, sent[i]); d != "" {
			t.Fatalf("delivered message %d: %s", i, d)
		}
	}
	ra.wait(t, other, 1, s.f.Timeout)
	rb.wait(t, other, 1, s.f.Timeout)
	if n := len(rb.got(s.topic)); n != 0 {
		t.Fatalf("node not subscribed to %q: got %d messages of it, want 0", s.topic, n)
	}
	if n := len(rp.got(s.topic)) + len(rp.got(other)); n != 0 {
		t.Fatalf("publishing node without subscriptions: got %d messages, want 0", n)
	}

	if err := a.Unsubscribe(s.ctx(t), s.topic); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	s.publish(t, p, s.topic, "", "t3", "")
	s.publish(t, p, s.topic, "", "t4", "")
	s.publish(t, p, other, "", "o2", "")
	ra.wait(t, other, 2, s.f.Timeout)
	rb.wait(t, other, 2, s.f.Timeout)
	if n := len(ra.got(s.topic)); n != 3 {
		t.Fatalf("after unsubscribe: got %d messages of %q, want still 3", n, s.topic)
	}

	if err := a.Subscribe(s.ctx(t), s.topic); err != nil {
		t.Fatalf("subscribe again: %v", err)
	}
	pos := s.publish(t, p, s.topic, "", "t5", "")
	waitPosition(t, s, ra, s.topic, pos)
}

// waitPosition waits until r received the message at pos.
func waitPosition(t *testing.T, s *suite, r *recorder, topic string, pos fanout.Position) {
	t.Helper()
	for n := 1; ; n++ {
		got := r.wait(t, topic, n, s.f.Timeout)
		if got[n-1].Position == pos {
			return
		}
	}
}

// testResubscribe: every Subscribe is in effect when it returns, however
// often a topic is subscribed and unsubscribed.
func testResubscribe(t *testing.T, s *suite) {
	r := newRecorder(t)
	a, p := s.node(t, r), s.node(t, newRecorder(t))
	for i := range 20 {
		if err := a.Subscribe(s.ctx(t), s.topic); err != nil {
			t.Fatalf("round %d: subscribe: %v", i, err)
		}
		pos := s.publish(t, p, s.topic, "", fmt.Sprint(i), "")
		waitPosition(t, s, r, s.topic, pos)
		if err := a.Unsubscribe(s.ctx(t), s.topic); err != nil {
			t.Fatalf("round %d: unsubscribe: %v", i, err)
		}
	}
}

// testHistory: History returns what follows a position, intact, and says
// when it cannot.
func testHistory(t *testing.T, s *suite) {
	p, q := s.node(t, newRecorder(t)), s.node(t, newRecorder(t))
	fresh := s.history(t, q, s.topic, fanout.Position{})
	if !fresh.Complete || len(fresh.Messages) != 0 || fresh.Position.Seq != 0 {
		t.Fatalf("history of a new topic: got complete=%v, %d messages, position %v; want complete, none, Seq 0",
			fresh.Complete, len(fresh.Messages), fresh.Position)
	}
	sent := []*fanout.Message{
		newMessage(s.topic, "", "plain", nil),
		newMessage(s.topic, "k1", "keyed", nil),
		newMessage(s.topic, "", "", nil),
		newMessage(s.topic, "", "\x00\xff\xfe binary\n\r\" 1 2", map[string]string{"traceparent": "00-abc-def-01", "empty": ""}),
		newMessage(s.topic, "k2 with spaces", strings.Repeat("x", 10000), map[string]string{"a": "b"}),
	}
	for i := range 5 {
		sent = append(sent, newMessage(s.topic, "", fmt.Sprint("m", i), nil))
	}
	for i, m := range sent {
		pos, err := p.Publish(s.ctx(t), m, "")
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if m.Position != pos {
			t.Fatalf("publish %d: message position %v, returned %v; want the backplane to set it", i, m.Position, pos)
		}
	}
	epoch, last := sent[0].Position.Epoch, sent[len(sent)-1].Position
	checkSeqs(t, "published", sent, 1)

	for _, c := range []struct {
		after fanout.Position
		from  int
	}{
		{fanout.Position{Epoch: epoch, Seq: 4}, 4},
		{fanout.Position{Epoch: epoch}, 0},
		{fanout.Position{}, 0},
		{last, len(sent)},
	} {
		h := s.history(t, q, s.topic, c.after)
		if !h.Complete || h.Position != last || len(h.Messages) != len(sent)-c.from {
			t.Fatalf("history after %v: got complete=%v, %d messages, position %v; want complete, %d, %v",
				c.after, h.Complete, len(h.Messages), h.Position, len(sent)-c.from, last)
		}
		for i, m := range h.Messages {
			if d := sameMessage(m, sent[c.from+i]); d != "" {
				t.Fatalf("history after %v, message %d: %s", c.after, i, d)
			}
		}
	}
	for _, after := range []fanout.Position{
		{Epoch: "x" + epoch, Seq: 3},
		{Epoch: epoch, Seq: last.Seq + 5},
	} {
		h := s.history(t, q, s.topic, after)
		if h.Complete || len(h.Messages) != 0 || h.Position != last {
			t.Fatalf("history after %v: got complete=%v, %d messages, position %v; want incomplete, none, %v",
				after, h.Complete, len(h.Messages), h.Position, last)
		}
	}

	// Through a hub: a resume from another epoch gets recovered=false and
	// the snapshot.
	c := s.client(t, s.hub(t))
	since := fanout.Position{Epoch: "x" + epoch, Seq: 3}
	reply := c.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Since: &since})
	if !isFalse(reply.Recovered) {
		t.Fatalf("resume from another epoch: got recovered %s, want false", fmtBool(reply.Recovered))
	}
	f := c.next(t)
	if f.Type != fanout.FrameSnapshot || f.Snapshot.Position != last || len(f.Snapshot.Items) != 2 {
		t.Fatalf("resume from another epoch: got %s, want a snapshot of 2 items at %v", describe(f), last)
	}
}

// testHistoryRetention: history keeps at least HistorySize messages and
// reports older positions as lost.
func testHistoryRetention(t *testing.T, s *suite) {
	size := s.f.HistorySize
	p := s.node(t, newRecorder(t))
	var last fanout.Position
	for i := range 3*size + 1 {
		last = s.publish(t, p, s.topic, "", fmt.Sprint(i), "")
	}
	for _, after := range []fanout.Position{{Epoch: last.Epoch}, {Epoch: last.Epoch, Seq: 1}} {
		h := s.history(t, p, s.topic, after)
		if h.Complete || len(h.Messages) != 0 || h.Position != last {
			t.Fatalf("history after %v with %d published, %d kept: got complete=%v, %d messages, position %v; want incomplete, none, %v",
				after, last.Seq, size, h.Complete, len(h.Messages), h.Position, last)
		}
	}
	kept := fanout.Position{Epoch: last.Epoch, Seq: last.Seq - uint64(size)}
	h := s.history(t, p, s.topic, kept)
	if !h.Complete || len(h.Messages) != size || h.Position != last {
		t.Fatalf("history after %v: got complete=%v, %d messages, position %v; want complete, %d, %v",
			kept, h.Complete, len(h.Messages), h.Position, size, last)
	}
	checkSeqs(t, "retained history", h.Messages, kept.Seq+1)

	hub := s.hub(t)
	lost := fanout.Position{Epoch: last.Epoch, Seq: 1}
	c := s.client(t, hub)
	if r := c.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Since: &lost}); !isFalse(r.Recovered) {
		t.Fatalf("resume beyond retention: got recovered %s, want false", fmtBool(r.Recovered))
	}
	if f := c.next(t); f.Type != fanout.FrameSnapshot || f.Snapshot.Position != last {
		t.Fatalf("resume beyond retention: got %s, want a snapshot at %v", describe(f), last)
	}
	c2 := s.client(t, hub)
	if r := c2.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Since: &kept}); !isTrue(r.Recovered) || *r.Position != last {
		t.Fatalf("resume within retention: got recovered %s at %v, want true at %v", fmtBool(r.Recovered), *r.Position, last)
	}
	checkSeqs(t, "resumed session", c2.messages(t, size), kept.Seq+1)
}

// testSnapshot: the latest message per key, in Seq order, at the topic's
// position; a hub serves it and continues live after it.
func testSnapshot(t *testing.T, s *suite) {
	p, q := s.node(t, newRecorder(t)), s.node(t, newRecorder(t))
	snap, err := q.Snapshot(s.ctx(t), s.topic)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if len(snap.Items) != 0 || snap.Position.Seq != 0 {
		t.Fatalf("snapshot of a new topic: got %d items at %v, want none at Seq 0", len(snap.Items), snap.Position)
	}
	sent := []*fanout.Message{
		newMessage(s.topic, "k1", "a1", nil),
		newMessage(s.topic, "k2", "b1", nil),
		newMessage(s.topic, "k1", "a2", map[string]string{"h": "v"}),
		newMessage(s.topic, "", "x", nil),
		newMessage(s.topic, "k3", "c1", nil),
		newMessage(s.topic, "k2", "b2", nil),
		newMessage(s.topic, "", "y", nil),
	}
	for i, m := range sent {
		if _, err := p.Publish(s.ctx(t), m, ""); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	last := sent[6].Position
	want := []*fanout.Message{sent[2], sent[4], sent[5]}
	check := func(what string, items []*fanout.Message, pos fanout.Position) {
		t.Helper()
		if pos != last || len(items) != len(want) {
			t.Fatalf("%s: got %d items at %v, want %d at %v", what, len(items), pos, len(want), last)
		}
		for i := range items {
			if d := sameMessage(items[i], want[i]); d != "" {
				t.Fatalf("%s: item %d: %s", what, i, d)
			}
		}
	}
	snap, err = q.Snapshot(s.ctx(t), s.topic)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	check("snapshot", snap.Items, snap.Position)

	a, b := s.hub(t), s.hub(t)
	c := s.client(t, b)
	if r := c.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Snapshot: true}); *r.Position != last {
		t.Fatalf("subscribe with snapshot: got reply position %v, want %v", *r.Position, last)
	}
	f := c.next(t)
	if f.Type != fanout.FrameSnapshot {
		t.Fatalf("subscribe with snapshot: got %s, want the snapshot", describe(f))
	}
	check("snapshot frame", f.Snapshot.Items, f.Snapshot.Position)
	pos := s.hubPublish(t, a, s.topic, "z")
	if got := c.messages(t, 1)[0]; got.Position != pos || pos.Seq != last.Seq+1 {
		t.Fatalf("after the snapshot: got %v, want %v at Seq %d", got.Position, pos, last.Seq+1)
	}
}

// testSnapshotConsistent: a snapshot taken while others publish holds
// exactly the state at its position.
func testSnapshotConsistent(t *testing.T, s *suite) {
	const workers, each, keys = 2, 120, 5
	p, q := s.node(t, newRecorder(t)), s.node(t, newRecorder(t))
	ctx := s.ctx(t)
	var (
		mu    sync.Mutex // guards keyOf
		keyOf = make(map[uint64]string)
		wg    sync.WaitGroup
		errs  = make(chan error, workers)
		done  = make(chan struct{})
	)
	for w := range workers {
		wg.Go(func() {
			for k := range each {
				key := fmt.Sprint("k", (w+k)%keys)
				pos, err := p.Publish(ctx, newMessage(s.topic, key, fmt.Sprint(w, "-", k), nil), "")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				keyOf[pos.Seq] = key
				mu.Unlock()
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	var snaps []fanout.Snapshot
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		snap, err := q.Snapshot(ctx, s.topic)
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		snaps = append(snaps, snap)
	}
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	for _, snap := range snaps {
		at := snap.Position.Seq
		// The state at Seq at: the latest Seq of each key up to it.
		latest := make(map[string]uint64)
		for seq := uint64(1); seq <= at; seq++ {
			latest[keyOf[seq]] = seq
		}
		if len(snap.Items) != len(latest) {
			t.Fatalf("snapshot at %v: got %d items, want %d", snap.Position, len(snap.Items), len(latest))
		}
		for i, m := range snap.Items {
			if i > 0 && m.Position.Seq <= snap.Items[i-1].Position.Seq {
				t.Fatalf("snapshot at %v: items not in Seq order", snap.Position)
			}
			if latest[m.Key] != m.Position.Seq || m.Position.Epoch != snap.Position.Epoch {
				t.Fatalf("snapshot at %v: key %q is at %v, want Seq %d", snap.Position, m.Key, m.Position, latest[m.Key])
			}
		}
	}
	if last := snaps[len(snaps)-1]; last.Position.Seq != workers*each {
		t.Fatalf("final snapshot: got position %v, want Seq %d", last.Position, workers*each)
	}
}

// testResumeOnAnotherNode: a client that saw a position on one hub resumes
// from it on another, with nothing lost or repeated.
func testResumeOnAnotherNode(t *testing.T, s *suite) {
	a, b, c := s.hub(t), s.hub(t), s.hub(t)
	ca := s.client(t, a)
	ca.subscribe(t, fanout.SubscribeRequest{Topic: s.topic})
	data := make(map[uint64]string)
	for i := 1; i <= 5; i++ {
		data[s.hubPublish(t, a, s.topic, fmt.Sprint(i)).Seq] = fmt.Sprint(i)
	}
	got := ca.messages(t, 5)
	checkSeqs(t, "first session", got, 1)
	seen := got[4].Position
	ca.s.Close(fanout.CloseGoingAway, "")
	for i := 6; i <= 10; i++ {
		data[s.hubPublish(t, b, s.topic, fmt.Sprint(i)).Seq] = fmt.Sprint(i)
	}
	cc := s.client(t, c)
	r := cc.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Since: &seen})
	if !isTrue(r.Recovered) {
		t.Fatalf("resume: got recovered %s, want true", fmtBool(r.Recovered))
	}
	data[s.hubPublish(t, a, s.topic, "11").Seq] = "11"
	got = cc.messages(t, 6)
	checkSeqs(t, "resumed session", got, 6)
	for _, m := range got {
		if string(m.Data) != data[m.Position.Seq] {
			t.Fatalf("Seq %d: got data %q, want %q", m.Position.Seq, m.Data, data[m.Position.Seq])
		}
	}
}

// testResumeWhilePublishing: a resume during a stream of messages joins
// history and live delivery with no gap and no repeat. The publisher stays
// at most a few messages ahead of the reader, so that history covers the
// switch however small it is.
func testResumeWhilePublishing(t *testing.T, s *suite) {
	const total, switchAt = 300, 100
	window := int64(16)
	if s.f.HistorySize > 0 {
		window = min(window, int64(s.f.HistorySize/2))
	}
	a, b, c := s.hub(t), s.hub(t), s.hub(t)
	cb := s.client(t, b)
	cb.subscribe(t, fanout.SubscribeRequest{Topic: s.topic})
	ctx := s.ctx(t)
	var (
		mu       sync.Mutex // guards consumed
		consumed int64
		moved    = sync.NewCond(&mu)
		errc     = make(chan error, 1)
	)
	read := func(cl *client, n int) []*fanout.Message {
		out := make([]*fanout.Message, 0, n)
		for range n {
			out = append(out, cl.messages(t, 1)[0])
			mu.Lock()
			consumed++
			moved.Broadcast()
			mu.Unlock()
		}
		return out
	}
	go func() {
		for i := range int64(total) {
			mu.Lock()
			for i-consumed >= window && ctx.Err() == nil {
				moved.Wait()
			}
			mu.Unlock()
			if _, err := a.Publish(ctx, s.topic, []byte(fmt.Sprint(i+1))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	// Wake the publisher if the test ends early.
	t.Cleanup(func() {
		mu.Lock()
		consumed = total
		moved.Broadcast()
		mu.Unlock()
	})
	got := read(cb, switchAt)
	checkSeqs(t, "first session", got, 1)
	seen := got[switchAt-1].Position
	cb.s.Close(fanout.CloseGoingAway, "")
	cc := s.client(t, c)
	if r := cc.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Since: &seen}); !isTrue(r.Recovered) {
		t.Fatalf("resume: got recovered %s, want true", fmtBool(r.Recovered))
	}
	rest := read(cc, total-switchAt)
	checkSeqs(t, "resumed session", rest, switchAt+1)
	for _, m := range rest {
		if string(m.Data) != fmt.Sprint(m.Position.Seq) {
			t.Fatalf("Seq %d: got data %q, want %q", m.Position.Seq, m.Data, fmt.Sprint(m.Position.Seq))
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func isFalse(b *bool) bool { return b != nil && !*b }

func fmtBool(b *bool) string {
	if b == nil {
		return "unset"
	}
	return fmt.Sprint(*b)
}

// testEpochChange: after history is lost the topic has a new epoch, live
// sessions are told to resync, and a resume from before gets
// recovered=false.
func testEpochChange(t *testing.T, s *suite) {
	a, b := s.hub(t), s.hub(t)
	cb := s.client(t, b)
	cb.subscribe(t, fanout.SubscribeRequest{Topic: s.topic})
	for i := range 3 {
		s.hubPublish(t, a, s.topic, fmt.Sprint(i), fanout.WithKey("k"))
	}
	old := cb.messages(t, 3)[2].Position

	s.f.LoseHistory(t, s.topic)
	pos := s.hubPublish(t, a, s.topic, "after", fanout.WithKey("k"))
	if pos.Epoch == old.Epoch {
		t.Fatalf("publish after history was lost: got epoch %q, want a new one", pos.Epoch)
	}
	if f := cb.next(t); f.Type != fanout.FrameClose || f.Close.Code != fanout.CloseResync {
		t.Fatalf("live session after history was lost: got %s, want close %d", describe(f), fanout.CloseResync)
	}
	h := s.history(t, s.node(t, newRecorder(t)), s.topic, old)
	if h.Complete || len(h.Messages) != 0 || h.Position != pos {
		t.Fatalf("history after %v of the old epoch: got complete=%v, %d messages, position %v; want incomplete, none, %v",
			old, h.Complete, len(h.Messages), h.Position, pos)
	}
	c := s.client(t, b)
	if r := c.subscribe(t, fanout.SubscribeRequest{Topic: s.topic, Since: &old}); !isFalse(r.Recovered) {
		t.Fatalf("resume from the old epoch: got recovered %s, want false", fmtBool(r.Recovered))
	}
	f := c.next(t)
	if f.Type != fanout.FrameSnapshot || f.Snapshot.Position != pos || len(f.Snapshot.Items) != 1 || string(f.Snapshot.Items[0].Data) != "after" {
		t.Fatalf("resume from the old epoch: got %s, want a snapshot of the new epoch's one item at %v", describe(f), pos)
	}
}

// testIdempotency: a repeated idempotency key, from any node, returns the
// first position and publishes nothing.
func testIdempotency(t *testing.T, s *suite) {
	r := newRecorder(t)
	sub, a, b := s.node(t, r), s.node(t, newRecorder(t)), s.node(t, newRecorder(t))
	if err := sub.Subscribe(s.ctx(t), s.topic); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	p1 := s.publish(t, a, s.topic, "", "first", "req-1")
	if p := s.publish(t, b, s.topic, "", "retry", "req-1"); p != p1 {
		t.Fatalf("repeated idempotency key on another node: got %v, want the first position %v", p, p1)
	}
	if p := s.publish(t, a, s.topic, "", "retry again", "req-1"); p != p1 {
		t.Fatalf("repeated idempotency key: got %v, want the first position %v", p, p1)
	}
	p2 := s.publish(t, a, s.topic, "", "second", "req-2")
	p3 := s.publish(t, b, s.topic, "", "third", "")
	if p2.Seq != p1.Seq+1 || p3.Seq != p2.Seq+1 {
		t.Fatalf("after a repeated key: got Seqs %d, %d, %d; want consecutive", p1.Seq, p2.Seq, p3.Seq)
	}
	got := r.wait(t, s.topic, 3, s.f.Timeout)
	var data []string
	for _, m := range got {
		data = append(data, string(m.Data))
	}
	if want := []string{"first", "second", "third"}; !slices.Equal(data, want) {
		t.Fatalf("delivered: got %q, want %q", data, want)
	}
	if h := s.history(t, b, s.topic, fanout.Position{}); len(h.Messages) != 3 {
		t.Fatalf("history: got %d messages, want 3", len(h.Messages))
	}
	// Keys are per topic.
	otherTopic := s.topic + "-other"
	if p := s.publish(t, b, otherTopic, "", "first", "req-1"); p.Seq != 1 {
		t.Fatalf("same key on another topic: got %v, want Seq 1 of that topic", p)
	}
	// Through hubs.
	ha, hb := s.hub(t), s.hub(t)
	hp := s.hubPublish(t, ha, s.topic, "hub", fanout.WithIdempotencyKey("req-hub"))
	if p := s.hubPublish(t, hb, s.topic, "hub retry", fanout.WithIdempotencyKey("req-hub")); p != hp {
		t.Fatalf("hub retry with the same key: got %v, want %v", p, hp)
	}
}

// testCancellation: a cancelled context makes every method return its
// error and change nothing.
func testCancellation(t *testing.T, s *suite) {
	sentinel := s.topic + "-sentinel"
	r := newRecorder(t)
	n, p := s.node(t, r), s.node(t, newRecorder(t))
	if err := n.Subscribe(s.ctx(t), sentinel); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	isCancel := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: got %v, want context.Canceled", what, err)
		}
	}

	_, err := p.Publish(cancelled, newMessage(s.topic, "k", "never", nil), "idem")
	isCancel("publish", err)
	if h := s.history(t, p, s.topic, fanout.Position{}); h.Position.Seq != 0 || len(h.Messages) != 0 {
		t.Fatalf("after a cancelled publish: got %d messages at %v, want none at Seq 0", len(h.Messages), h.Position)
	}
	if snap, err := p.Snapshot(s.ctx(t), s.topic); err != nil || len(snap.Items) != 0 {
		t.Fatalf("after a cancelled publish: got snapshot of %d items, err %v; want none", len(snap.Items), err)
	}

	isCancel("subscribe", n.Subscribe(cancelled, s.topic))
	s.publish(t, p, s.topic, "", "1", "")
	s.publish(t, p, sentinel, "", "s1", "")
	r.wait(t, sentinel, 1, s.f.Timeout)
	if got := len(r.got(s.topic)); got != 0 {
		t.Fatalf("after a cancelled subscribe: got %d messages, want 0", got)
	}

	if err := n.Subscribe(s.ctx(t), s.topic); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	isCancel("unsubscribe", n.Unsubscribe(cancelled, s.topic))
	pos := s.publish(t, p, s.topic, "", "2", "")
	waitPosition(t, s, r, s.topic, pos)

	_, err = n.History(cancelled, s.topic, fanout.Position{})
	isCancel("history", err)
	_, err = n.Snapshot(cancelled, s.topic)
	isCancel("snapshot", err)
	isCancel("delete", n.Delete(cancelled, s.topic))
	// The cancelled publish did not claim its idempotency key.
	if got := s.publish(t, p, s.topic, "", "3", "idem"); got.Seq != pos.Seq+1 {
		t.Fatalf("publish with the key of a cancelled publish: got %v, want Seq %d", got, pos.Seq+1)
	}
}

// testConcurrentClose: Close is idempotent and safe concurrently, also
// while the node publishes, and nothing is delivered after it.
func testConcurrentClose(t *testing.T, s *suite) {
	r, rp := newRecorder(t), newRecorder(t)
	n, p := s.node(t, r), s.node(t, rp)
	for _, x := range []fanout.Backplane{n, p} {
		if err := x.Subscribe(s.ctx(t), s.topic); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	ctx := s.ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	start := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			<-start
			for i := range 20 {
				if _, err := n.Publish(ctx, newMessage(s.topic, "", fmt.Sprint(i), nil), ""); err != nil {
					if !errors.Is(err, fanout.ErrClosed) {
						errs <- fmt.Errorf("publish while closing: got %v, want success or fanout.ErrClosed", err)
					}
					return
				}
			}
		})
	}
	for range 8 {
		wg.Go(func() {
			<-start
			if err := n.Close(); err != nil {
				errs <- fmt.Errorf("concurrent close: %w", err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r.markClosed()
	pos := s.publish(t, p, s.topic, "", "after close", "")
	waitPosition(t, s, rp, s.topic, pos)
}

// testAfterClose: after Close every method returns an error matching
// fanout.ErrClosed.
func testAfterClose(t *testing.T, s *suite) {
	r := newRecorder(t)
	n := s.newNode()
	if err := n.Open(r); err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := n.Subscribe(s.ctx(t), s.topic); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i := range 2 {
		if err := n.Close(); err != nil {
			t.Fatalf("close %d: got %v, want nil", i+1, err)
		}
	}
	r.markClosed()
	isClosed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, fanout.ErrClosed) {
			t.Errorf("%s after close: got %v, want fanout.ErrClosed", what, err)
		}
	}
	ctx := s.ctx(t)
	isClosed("open", n.Open(newRecorder(t)))
	_, err := n.Publish(ctx, newMessage(s.topic, "", "x", nil), "")
	isClosed("publish", err)
	isClosed("subscribe", n.Subscribe(ctx, s.topic))
	isClosed("unsubscribe", n.Unsubscribe(ctx, s.topic))
	_, err = n.History(ctx, s.topic, fanout.Position{})
	isClosed("history", err)
	_, err = n.Snapshot(ctx, s.topic)
	isClosed("snapshot", err)
	isClosed("delete", n.Delete(ctx, s.topic))

	rp := newRecorder(t)
	p := s.node(t, rp)
	if err := p.Subscribe(ctx, s.topic); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	pos := s.publish(t, p, s.topic, "", "after close", "")
	waitPosition(t, s, rp, s.topic, pos)
}
