package backplanetest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// recorder is a fanout.Receiver that keeps what it is given and checks the
// parts of the delivery contract it can see by itself.
type recorder struct {
	mu        sync.Mutex // guards the fields below
	msgs      map[string][]*fanout.Message
	resyncs   map[string]int
	inDeliver map[string]bool
	closed    bool     // the node was closed: nothing may be delivered
	problems  []string // contract breaches seen in callbacks
	changed   chan struct{}
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{
		msgs:      make(map[string][]*fanout.Message),
		resyncs:   make(map[string]int),
		inDeliver: make(map[string]bool),
		changed:   make(chan struct{}, 1),
	}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			t.Error(p)
		}
	})
	return r
}

func (r *recorder) Deliver(m *fanout.Message) {
	r.mu.Lock()
	if r.inDeliver[m.Topic] {
		r.problems = append(r.problems, fmt.Sprintf("Deliver called concurrently for topic %q", m.Topic))
	}
	if r.closed {
		r.problems = append(r.problems, fmt.Sprintf("Deliver called after Close: %q %v", m.Topic, m.Position))
	}
	r.inDeliver[m.Topic] = true
	r.mu.Unlock()
	runtime.Gosched() // widen the window in which a concurrent call shows

	r.mu.Lock()
	r.msgs[m.Topic] = append(r.msgs[m.Topic], m)
	r.inDeliver[m.Topic] = false
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) Resync(topic string) {
	r.mu.Lock()
	r.resyncs[topic]++
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// markClosed records that the node was closed.
func (r *recorder) markClosed() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// got returns the distinct messages of topic received so far, in the order
// received, dropping repeated Seqs (which the contract allows).
func (r *recorder) got(topic string) []*fanout.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*fanout.Message
	seen := make(map[fanout.Position]bool)
	for _, m := range r.msgs[topic] {
		if !seen[m.Position] {
			seen[m.Position] = true
			out = append(out, m)
		}
	}
	return out
}

// wait waits until topic has n distinct messages and returns them.
func (r *recorder) wait(t *testing.T, topic string, n int, timeout time.Duration) []*fanout.Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if got := r.got(topic); len(got) >= n {
			return got
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("topic %q: got %d messages after %v, want %d", topic, len(r.got(topic)), timeout, n)
		}
	}
}

// node makes a node of the scenario's cluster, opens it with r and closes it
// when the test ends.
func (s *suite) node(t *testing.T, r fanout.Receiver) fanout.Backplane {
	t.Helper()
	n := s.newNode()
	if err := n.Open(r); err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n
}

// ctx returns a context bounded by the suite's timeout.
func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.f.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// publish publishes directly on a node.
func (s *suite) publish(t *testing.T, n fanout.Backplane, topic, key, data string, idem string) fanout.Position {
	t.Helper()
	m := newMessage(topic, key, data, nil)
	p, err := n.Publish(s.ctx(t), m, idem)
	if err != nil {
		t.Fatalf("publish to %q: %v", topic, err)
	}
	if p.Seq == 0 {
		t.Fatalf("publish to %q: got Seq 0, want Seq >= 1", topic)
	}
	return p
}

func newMessage(topic, key, data string, header map[string]string) *fanout.Message {
	return &fanout.Message{Topic: topic, Key: key, Data: []byte(data), Time: time.Now(), Header: header}
}

// history reads topic's history on n after pos.
func (s *suite) history(t *testing.T, n fanout.Backplane, topic string, after fanout.Position) fanout.History {
	t.Helper()
	h, err := n.History(s.ctx(t), topic, after)
	if err != nil {
		t.Fatalf("history of %q after %v: %v", topic, after, err)
	}
	return h
}

// sameMessage reports how got differs from want, or "".
func sameMessage(got, want *fanout.Message) string {
	switch {
	case got.Topic != want.Topic:
		return fmt.Sprintf("topic: got %q, want %q", got.Topic, want.Topic)
	case got.Position != want.Position:
		return fmt.Sprintf("position: got %v, want %v", got.Position, want.Position)
	case got.Key != want.Key:
		return fmt.Sprintf("key: got %q, want %q", got.Key, want.Key)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("data: got %q, want %q", got.Data, want.Data)
	case !maps.Equal(got.Header, want.Header):
		return fmt.Sprintf("header: got %v, want %v", got.Header, want.Header)
	case got.Time.IsZero():
		return "time: got zero, want the publish time"
	case got.Time.Sub(want.Time).Abs() > time.Second:
		return fmt.Sprintf("time: got %v, want about %v", got.Time, want.Time)
	}
	return ""
}

// checkSeqs fails unless ms have Seqs from, from+1, ... in one epoch.
func checkSeqs(t *testing.T, what string, ms []*fanout.Message, from uint64) {
	t.Helper()
	for i, m := range ms {
		if want := from + uint64(i); m.Position.Seq != want {
			var around []uint64
			for _, m := range ms[max(0, i-3):min(len(ms), i+6)] {
				around = append(around, m.Position.Seq)
			}
			t.Fatalf("%s: message %d: got Seq %d, want %d (Seqs in the order received, from message %d: %v)",
				what, i, m.Position.Seq, want, max(0, i-3), around)
		}
		if m.Position.Epoch != ms[0].Position.Epoch {
			t.Fatalf("%s: message %d: got epoch %q, want %q", what, i, m.Position.Epoch, ms[0].Position.Epoch)
		}
	}
}

// hub makes a hub on a new node of the scenario's cluster.
func (s *suite) hub(t *testing.T) *fanout.Hub {
	t.Helper()
	h, err := fanout.NewHub(&fanout.HubOptions{Backplane: s.newNode(), QueueMessages: 1 << 16, QueueBytes: 64 << 20})
	if err != nil {
		t.Fatalf("new hub: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// hubPublish publishes through a hub.
func (s *suite) hubPublish(t *testing.T, h *fanout.Hub, topic, data string, opts ...fanout.PublishOption) fanout.Position {
	t.Helper()
	p, err := h.Publish(s.ctx(t), topic, []byte(data), opts...)
	if err != nil {
		t.Fatalf("publish to %q: %v", topic, err)
	}
	return p
}

// client is a session read the way a transport's writer reads it.
type client struct {
	s       *fanout.Session
	buf     []fanout.Frame
	timeout time.Duration
}

func (s *suite) client(t *testing.T, h *fanout.Hub) *client {
	t.Helper()
	sess, err := h.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	t.Cleanup(func() { sess.Close(fanout.CloseNormal, "") })
	return &client{s: sess, timeout: s.f.Timeout}
}

// subscribe subscribes and returns the reply frame.
func (c *client) subscribe(t *testing.T, req fanout.SubscribeRequest) *fanout.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := c.s.Subscribe(ctx, req); err != nil {
		t.Fatalf("subscribe to %q: %v", req.Topic, err)
	}
	f := c.next(t)
	if f.Type != fanout.FrameReply || f.Reply.Err != nil || f.Reply.Topic != req.Topic {
		t.Fatalf("subscribe to %q: got %s, want an ok reply", req.Topic, describe(f))
	}
	if f.Reply.Position == nil {
		t.Fatalf("subscribe to %q: got a reply without position", req.Topic)
	}
	return f.Reply
}

// next returns the session's next frame.
func (c *client) next(t *testing.T) fanout.Frame {
	t.Helper()
	for len(c.buf) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		fs, err := c.s.Next(ctx, make([]fanout.Frame, 0, 256))
		cancel()
		if err != nil {
			t.Fatalf("next frame: %v", err)
		}
		c.buf = fs
	}
	f := c.buf[0]
	c.buf = c.buf[1:]
	return f
}

// messages reads n message frames and fails on any other frame.
func (c *client) messages(t *testing.T, n int) []*fanout.Message {
	t.Helper()
	out := make([]*fanout.Message, 0, n)
	for len(out) < n {
		f := c.next(t)
		if f.Type != fanout.FrameMessage {
			t.Fatalf("after %d of %d messages: got %s, want a message", len(out), n, describe(f))
		}
		out = append(out, f.Message)
	}
	return out
}

func describe(f fanout.Frame) string {
	switch f.Type {
	case fanout.FrameMessage:
		return fmt.Sprintf("message %q %v", f.Message.Topic, f.Message.Position)
	case fanout.FrameReply:
		return fmt.Sprintf("reply {id %q topic %q err %v}", f.Reply.ID, f.Reply.Topic, f.Reply.Err)
	case fanout.FrameSnapshot:
		return fmt.Sprintf("snapshot of %d items at %v", len(f.Snapshot.Items), f.Snapshot.Position)
	case fanout.FrameClose:
		return fmt.Sprintf("close %d %q", f.Close.Code, f.Close.Reason)
	case fanout.FrameJoin, fanout.FrameLeave:
		return fmt.Sprintf("join/leave %+v", *f.Event)
	}
	return fmt.Sprintf("frame type %d", f.Type)
}
