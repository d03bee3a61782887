package nats_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/nats-io/nats.go"
)

// stallReceiver blocks in its first Deliver until released, as a node
// that falls behind would, and records the rest.
type stallReceiver struct {
	stalled chan struct{} // closed when the first Deliver blocks
	release chan struct{}
	once    sync.Once

	mu      sync.Mutex // guards msgs and resyncs
	msgs    []*fanout.Message
	resyncs int
	changed chan struct{}
}

func (r *stallReceiver) Deliver(m *fanout.Message) {
	r.once.Do(func() {
		close(r.stalled)
		<-r.release
	})
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.signal()
}

func (r *stallReceiver) Resync(string) {
	r.mu.Lock()
	r.resyncs++
	r.mu.Unlock()
	r.signal()
}

func (r *stallReceiver) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// TestSlowNodeResyncs: a node whose live buffer overflows drops messages
// and asks its hub to resync the topic, and history has what it dropped.
func TestSlowNodeResyncs(t *testing.T) {
	t.Parallel()
	const buffer, total = 8, 100
	c := newCluster(t, &fnats.Options{LiveBuffer: buffer})
	nc := c.conn(c.url)
	slow := c.nodeOn(nc)
	r := &stallReceiver{stalled: make(chan struct{}), release: make(chan struct{}), changed: make(chan struct{}, 1)}
	if err := slow.Open(r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	pub := c.node()
	if err := pub.Open(discard{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "slow.node"
	if err := slow.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	for i := range total {
		m := &fanout.Message{Topic: topic, Data: []byte(fmt.Sprint(i)), Time: time.Now()}
		if _, err := pub.Publish(ctx, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	<-r.stalled
	// Once the server answers a ping on the slow node's connection, the
	// client has read every message sent to it before: the overflow has
	// happened.
	if err := nc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	close(r.release)
	for {
		r.mu.Lock()
		n, resyncs := len(r.msgs), r.resyncs
		r.mu.Unlock()
		if resyncs > 0 {
			if n >= total {
				t.Fatalf("got %d messages and a resync, want fewer: the buffer of %d should have overflowed", n, buffer)
			}
			break
		}
		select {
		case <-r.changed:
		case <-ctx.Done():
			t.Fatalf("got %d messages and no resync, want a resync after the overflow", n)
		}
	}
	r.mu.Lock()
	last := r.msgs[len(r.msgs)-1].Position
	r.mu.Unlock()
	h, err := slow.History(ctx, topic, last)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Complete || h.Position.Seq != total || len(h.Messages) != int(total-last.Seq) {
		t.Fatalf("history after %v: got complete=%v, %d messages, position %v; want the %d missed up to Seq %d",
			last, h.Complete, len(h.Messages), h.Position, total-last.Seq, total)
	}
}

// TestUnavailable: while the connection is down every method fails at once
// with ErrUnavailable, and the node works again after it comes back.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	px, nc := c.proxied()
	status := nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED)
	n := c.nodeOn(nc)
	if err := n.Open(discard{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := func() *fanout.Message { return &fanout.Message{Topic: "un.a", Data: []byte("x"), Time: time.Now()} }
	if _, err := n.Publish(ctx, msg(), ""); err != nil {
		t.Fatal(err)
	}
	wait := func(up bool) { t.Helper(); waitConnected(ctx, t, nc, status, up) }
	px.Refuse()
	px.Cut()
	wait(false)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, fanout.ErrUnavailable) {
			t.Errorf("%s while disconnected: got %v, want fanout.ErrUnavailable", what, err)
		}
	}
	_, err := n.Publish(ctx, msg(), "")
	check("publish", err)
	check("subscribe", n.Subscribe(ctx, "un.a"))
	_, err = n.History(ctx, "un.a", fanout.Position{})
	check("history", err)
	_, err = n.Snapshot(ctx, "un.a")
	check("snapshot", err)
	px.Resume()
	wait(true)
	if p, err := n.Publish(ctx, msg(), ""); err != nil || p.Seq != 2 {
		t.Fatalf("publish after reconnect: got %v, %v; want Seq 2", p, err)
	}
}

// TestStreamRecreated: when the streams are deleted and another node
// recreates them and publishes, a node that published before continues the
// new lineage: it must not take what it remembers of the old streams (the
// same stream sequences come back) for the state of the new ones.
func TestStreamRecreated(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	a, b := c.node(), c.node()
	for _, n := range []*fnats.Backplane{a, b} {
		if err := n.Open(discard{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "recreated"
	publish := func(n *fnats.Backplane, data string) fanout.Position {
		t.Helper()
		p, err := n.Publish(ctx, &fanout.Message{Topic: topic, Data: []byte(data), Time: time.Now()}, "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var old fanout.Position
	for i := range 3 {
		old = publish(a, fmt.Sprint("a", i))
	}
	select { // creating the streams made a forget
	case <-a.Forgot():
	default:
	}
	c.deleteStreams()
	select {
	case <-a.Forgot():
	case <-ctx.Done():
		t.Fatal("node a was not told that the streams were deleted")
	}
	var fresh fanout.Position
	for i := range 3 {
		fresh = publish(b, fmt.Sprint("b", i))
	}
	if fresh.Epoch == old.Epoch || fresh.Seq != 3 {
		t.Fatalf("after the streams were deleted: got %v, want Seq 3 of a new epoch", fresh)
	}
	if p := publish(a, "a again"); p.Epoch != fresh.Epoch || p.Seq != 4 {
		t.Fatalf("node a after the streams were recreated: got %v, want %s:4", p, fresh.Epoch)
	}
	h, err := a.History(ctx, topic, fanout.Position{})
	if err != nil {
		t.Fatal(err)
	}
	var data []string
	for _, m := range h.Messages {
		data = append(data, string(m.Data))
	}
	if want := []string{"b0", "b1", "b2", "a again"}; !h.Complete || !slices.Equal(data, want) {
		t.Fatalf("history: got complete=%v %q, want %q", h.Complete, data, want)
	}
}

// TestStreamSettingsChange: a node that starts with other options (a new
// release with a longer history) updates the streams.
func TestStreamSettingsChange(t *testing.T) {
	t.Parallel()
	c := newCluster(t, &fnats.Options{HistorySize: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "settings"
	var last fanout.Position
	publish := func(n *fnats.Backplane, count int) {
		t.Helper()
		for i := range count {
			p, err := n.Publish(ctx, &fanout.Message{Topic: topic, Data: []byte(fmt.Sprint(i)), Time: time.Now()}, "")
			if err != nil {
				t.Fatal(err)
			}
			last = p
		}
	}
	// retained checks that history holds exactly the last k messages.
	retained := func(n *fnats.Backplane, k uint64) {
		t.Helper()
		h, err := n.History(ctx, topic, fanout.Position{Epoch: last.Epoch, Seq: last.Seq - k})
		if err != nil {
			t.Fatal(err)
		}
		if !h.Complete || uint64(len(h.Messages)) != k {
			t.Fatalf("history of the last %d messages: got complete=%v with %d messages, want them all", k, h.Complete, len(h.Messages))
		}
		if h, err = n.History(ctx, topic, fanout.Position{Epoch: last.Epoch, Seq: last.Seq - k - 1}); err != nil || h.Complete {
			t.Fatalf("history of the last %d messages: got complete=%v (%v), want incomplete: only %d are kept", k+1, h.Complete, err, k)
		}
	}
	open := func(n *fnats.Backplane) *fnats.Backplane {
		t.Helper()
		if err := n.Open(discard{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a, same := open(c.node()), open(c.node())
	publish(a, 8)
	publish(same, 1)
	retained(same, 5)
	// A node with a longer history, on the same streams.
	opts := c.opts
	opts.HistorySize = 20
	longer := open(fnats.New(c.conn(c.url), &opts))
	publish(longer, 25)
	retained(longer, 20)
	// A node answers from history as far back as its own options say.
	retained(a, 5)
}
