package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// timeout bounds each scenario; it is generous because the suite runs under
// -race on small machines, and it only matters when a transport is broken.
const timeout = 30 * time.Second

// Run runs the conformance suite against the transport that newTransport
// builds. Every scenario is a parallel subtest that creates its own hub
// (with the options it needs), calls newTransport with it, and closes the
// hub when the subtest ends. newTransport must serve the hub on a real
// loopback server and register its own shutdown with t.Cleanup.
//
// The scenarios:
//
//   - Ordered: messages arrive once each, in Seq order, with their exact
//     bytes (JSON, binary, empty).
//   - Isolation: a client receives the topics it subscribed to and no
//     other; several topics on one connection keep their own order.
//   - ResumeWithinHistory: a subscription with Since receives every message
//     after it, once, with no gap between history and live messages while
//     publishing continues, and a reply with recovered=true.
//   - ResumeBeyondHistory: when history no longer reaches back (or the
//     epoch changed), the reply says recovered=false and the snapshot
//     follows, then live messages.
//   - SnapshotThenLive: a subscription with Snapshot receives the state at
//     a position P, then exactly the messages after P, while publishing
//     continues.
//   - Unauthenticated: bad credentials are refused; good ones accepted.
//   - Forbidden: a topic the authorizer denies is refused and leaks nothing.
//   - SlowConsumer: a client that does not read is closed with
//     [fanout.CloseSlowConsumer] after receiving an unbroken prefix of the
//     topic, and resumes from there.
//   - Shutdown: [fanout.Hub.Shutdown] delivers what was queued, then a
//     close with [fanout.CloseShutdown] and reconnect=true, then the stream
//     ends; Shutdown returns; new connections are refused.
//   - ClientGoesAway: when the client closes, the server ends the session.
//   - Commands (Features.Commands): subscribe and unsubscribe on an open
//     connection, with their replies and errors.
//   - Publish (Features.Publish): publish over the connection, allowed and
//     denied.
//   - BadInput (the [BadInputs] interface): every malformed input gets its
//     documented error, and the hub still serves a new client afterwards.
func Run(t *testing.T, newTransport func(t *testing.T, hub *fanout.Hub) Transport, f Features) {
	t.Helper()
	s := &suite{newTransport: newTransport, f: f}
	for _, sc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Ordered", s.ordered},
		{"Isolation", s.isolation},
		{"ResumeWithinHistory", s.resumeWithinHistory},
		{"ResumeBeyondHistory", s.resumeBeyondHistory},
		{"SnapshotThenLive", s.snapshotThenLive},
		{"Unauthenticated", s.unauthenticated},
		{"Forbidden", s.forbidden},
		{"SlowConsumer", s.slowConsumer},
		{"Shutdown", s.shutdown},
		{"ClientGoesAway", s.clientGoesAway},
		{"Commands", s.commands},
		{"Publish", s.publish},
		{"BadInput", s.badInput},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t)
		})
	}
}

type suite struct {
	newTransport func(t *testing.T, hub *fanout.Hub) Transport
	f            Features
}

// env is one scenario's hub, transport and observations.
type env struct {
	t   *testing.T
	ctx context.Context
	hub *fanout.Hub
	tr  Transport
	rec *recorder
}

var topicSeq atomic.Int64

// topic returns a topic name unique in the process.
func topic(prefix string) string {
	return fmt.Sprintf("%s.%d", prefix, topicSeq.Add(1))
}

func (s *suite) env(t *testing.T, o *fanout.HubOptions) *env {
	t.Helper()
	var opts fanout.HubOptions
	if o != nil {
		opts = *o
	}
	rec := &recorder{wake: make(chan struct{}, 1)}
	opts.Observer = rec
	hub, err := fanout.NewHub(&opts)
	if err != nil {
		t.Fatalf("new hub: %v", err)
	}
	t.Cleanup(func() { hub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return &env{t: t, ctx: ctx, hub: hub, tr: s.newTransport(t, hub), rec: rec}
}

// dial connects a client and closes it when the test ends.
func (e *env) dial(o DialOptions) Client {
	e.t.Helper()
	c, err := e.tr.Dial(e.ctx, o)
	if err != nil {
		e.t.Fatalf("dial %+v: %v", o, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// subscribe dials a client subscribed to topics and waits for their ok
// replies.
func (e *env) subscribe(topics ...string) Client {
	e.t.Helper()
	var o DialOptions
	for _, tp := range topics {
		o.Subscriptions = append(o.Subscriptions, Subscription{Topic: tp})
	}
	c := e.dial(o)
	for range topics {
		e.okReply(c, "")
	}
	return c
}

func (e *env) next(c Client) Event {
	e.t.Helper()
	ev, err := c.Next(e.ctx)
	if err != nil {
		e.t.Fatalf("next event: %v", err)
	}
	return ev
}

// okReply reads the next event, which must be an ok reply (for topic, when
// not empty).
func (e *env) okReply(c Client, topic string) Event {
	e.t.Helper()
	ev := e.next(c)
	if ev.Type != EventReply || ev.Error != "" || (topic != "" && ev.Topic != topic) {
		e.t.Fatalf("got %s, want ok reply for %q", show(ev), topic)
	}
	return ev
}

// msg reads the next event, which must be message seq of topic.
func (e *env) msg(c Client, topic string, seq uint64) Event {
	e.t.Helper()
	ev := e.next(c)
	if ev.Type != EventMessage || ev.Topic != topic || ev.Position.Seq != seq {
		e.t.Fatalf("got %s, want msg %s #%d", show(ev), topic, seq)
	}
	return ev
}

func (e *env) publish(topic string, data []byte, opts ...fanout.PublishOption) fanout.Position {
	e.t.Helper()
	p, err := e.hub.Publish(e.ctx, topic, data, opts...)
	if err != nil {
		e.t.Fatalf("publish to %s: %v", topic, err)
	}
	return p
}

// publisher publishes n messages to topic from a goroutine that the test
// waits for, with keys key(i) when key is not nil. Publishing starts when
// start is closed; started is closed after the first m messages.
type publisher struct {
	done    chan error
	started chan struct{}
}

func (e *env) publishInBackground(topic string, from, to uint64, m uint64, key func(uint64) string) *publisher {
	p := &publisher{done: make(chan error, 1), started: make(chan struct{})}
	go func() {
		var err error
		for i := from; i <= to && err == nil; i++ {
			var opts []fanout.PublishOption
			if key != nil {
				opts = append(opts, fanout.WithKey(key(i)))
			}
			_, err = e.hub.Publish(e.ctx, topic, payload(i), opts...)
			if i == from+m-1 {
				close(p.started)
			}
		}
		p.done <- err
	}()
	e.t.Cleanup(func() { <-p.done })
	return p
}

func (p *publisher) wait(t *testing.T) {
	t.Helper()
	if err := <-p.done; err != nil {
		t.Fatalf("background publish: %v", err)
	}
	p.done <- nil // for the cleanup
}

func payload(i uint64) []byte { return fmt.Appendf(nil, `{"n":%d}`, i) }

func show(e Event) string {
	switch e.Type {
	case EventReply:
		rec := "-"
		if e.Recovered != nil {
			rec = fmt.Sprint(*e.Recovered)
		}
		return fmt.Sprintf("reply{id=%q topic=%q error=%q position=%v recovered=%s}", e.ID, e.Topic, e.Error, e.Position, rec)
	case EventMessage:
		return fmt.Sprintf("msg{topic=%q position=%v key=%q data=%q}", e.Topic, e.Position, e.Key, e.Data)
	case EventSnapshot:
		return fmt.Sprintf("snapshot{topic=%q position=%v items=%d}", e.Topic, e.Position, len(e.Items))
	case EventClose:
		return fmt.Sprintf("close{code=%d reason=%q reconnect=%v}", e.Code, e.Reason, e.Reconnect)
	}
	return fmt.Sprintf("event{type=%d}", e.Type)
}

// recorder is the hub's observer: it keeps the session closes.
type recorder struct {
	mu     sync.Mutex // guards closes
	closes []fanout.CloseCode
	wake   chan struct{}
}

func (r *recorder) Observe(e fanout.Event) {
	if e.Type != fanout.EventSessionClose {
		return
	}
	r.mu.Lock()
	r.closes = append(r.closes, e.Code)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// waitCloses waits until n sessions have ended and returns their codes.
func (r *recorder) waitCloses(ctx context.Context, n int) ([]fanout.CloseCode, error) {
	for {
		r.mu.Lock()
		c := append([]fanout.CloseCode(nil), r.closes...)
		r.mu.Unlock()
		if len(c) >= n {
			return c, nil
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			return c, fmt.Errorf("waiting for %d session closes, saw %v: %w", n, c, ctx.Err())
		}
	}
}

func (s *suite) ordered(t *testing.T) {
	e := s.env(t, nil)
	tp := topic("ordered")
	c := e.subscribe(tp)
	const n = 100
	for i := uint64(1); i <= n; i++ {
		e.publish(tp, payload(i))
	}
	for i := uint64(1); i <= n; i++ {
		if ev := e.msg(c, tp, i); !bytes.Equal(ev.Data, payload(i)) {
			t.Fatalf("msg %d: got data %q, want %q", i, ev.Data, payload(i))
		}
	}
	// Any bytes travel, byte for byte: binary, invalid UTF-8, empty, JSON
	// with line breaks or surrounding space, text that is not JSON; and a
	// key.
	odd := [][]byte{{0, 1, 2, 0xff, 0xfe}, []byte("\xc3\x28 not utf-8"), {}, []byte("{\n  \"a\": 1\r\n}"), []byte(" [1] "), []byte("plain text"), []byte(`"\u2028  "`)}
	for _, d := range odd {
		e.publish(tp, d, fanout.WithKey("k/1"))
	}
	for i, d := range odd {
		ev := e.msg(c, tp, n+1+uint64(i))
		if !bytes.Equal(ev.Data, d) || ev.Key != "k/1" {
			t.Fatalf("payload %d: got data %q key %q, want %q key %q", i, ev.Data, ev.Key, d, "k/1")
		}
	}
}

func (s *suite) isolation(t *testing.T) {
	e := s.env(t, nil)
	a, b, other := topic("iso-a"), topic("iso-b"), topic("iso-c")
	both := e.subscribe(a, b)
	onlyB := e.subscribe(b)
	const n = 20
	for i := uint64(1); i <= n; i++ {
		e.publish(other, payload(i))
		e.publish(a, payload(i))
		e.publish(b, payload(i))
	}
	// onlyB: exactly b's messages, in order.
	for i := uint64(1); i <= n; i++ {
		e.msg(onlyB, b, i)
	}
	// both: a and b interleaved as published, each in order, no other.
	next := map[string]uint64{a: 1, b: 1}
	for range 2 * n {
		ev := e.next(both)
		if ev.Type != EventMessage || (ev.Topic != a && ev.Topic != b) {
			t.Fatalf("got %s, want a message of %s or %s", show(ev), a, b)
		}
		if ev.Position.Seq != next[ev.Topic] {
			t.Fatalf("topic %s: got seq %d, want %d", ev.Topic, ev.Position.Seq, next[ev.Topic])
		}
		next[ev.Topic]++
	}
	// Nothing of the other topic is pending: the next thing each client
	// gets is the fence message of its own topic.
	e.publish(other, payload(0))
	e.publish(b, payload(n+1))
	e.msg(onlyB, b, n+1)
	e.msg(both, b, n+1)
}

func (s *suite) resumeWithinHistory(t *testing.T) {
	e := s.env(t, nil)
	tp := topic("resume")
	var last fanout.Position
	for i := uint64(1); i <= 10; i++ {
		last = e.publish(tp, payload(i))
	}
	// Publishing continues while the client resumes after #4.
	const end = 300
	p := e.publishInBackground(tp, 11, end, 1, nil)
	<-p.started
	since := fanout.Position{Epoch: last.Epoch, Seq: 4}
	c := e.dial(DialOptions{Subscriptions: []Subscription{{Topic: tp, Since: &since}}})
	r := e.okReply(c, tp)
	if r.Recovered == nil || !*r.Recovered {
		t.Fatalf("got %s, want recovered=true", show(r))
	}
	p.wait(t)
	e.publish(tp, payload(end+1)) // the fence: nothing after #end but it
	for i := uint64(5); i <= end+1; i++ {
		ev := e.msg(c, tp, i)
		if ev.Position.Epoch != last.Epoch || !bytes.Equal(ev.Data, payload(i)) {
			t.Fatalf("got %s, want epoch %q data %q", show(ev), last.Epoch, payload(i))
		}
	}
}

func (s *suite) resumeBeyondHistory(t *testing.T) {
	e := s.env(t, &fanout.HubOptions{Backplane: fanout.NewMemoryBroker(&fanout.MemoryOptions{HistorySize: 4}).Node()})
	tp := topic("beyond")
	key := func(i uint64) string { return fmt.Sprintf("k%d", i%3) }
	var last fanout.Position
	for i := uint64(1); i <= 10; i++ {
		last = e.publish(tp, payload(i), fanout.WithKey(key(i)))
	}
	for _, since := range []fanout.Position{
		{Epoch: last.Epoch, Seq: 2},          // older than the 4 kept
		{Epoch: last.Epoch + "-old", Seq: 9}, // another lineage
	} {
		c := e.dial(DialOptions{Subscriptions: []Subscription{{Topic: tp, Since: &since}}})
		r := e.okReply(c, tp)
		if r.Recovered == nil || *r.Recovered {
			t.Fatalf("since %v: got %s, want recovered=false", since, show(r))
		}
		snap := e.next(c)
		if snap.Type != EventSnapshot || snap.Topic != tp || snap.Position != last {
			t.Fatalf("since %v: got %s, want snapshot of %s at %v", since, show(snap), tp, last)
		}
		// The latest message of each key: #8 (k2), #9 (k0), #10 (k1).
		if len(snap.Items) != 3 {
			t.Fatalf("since %v: got %d snapshot items, want 3", since, len(snap.Items))
		}
		for i, it := range snap.Items {
			seq := uint64(8 + i)
			if it.Position.Seq != seq || it.Key != key(seq) || !bytes.Equal(it.Data, payload(seq)) || it.Topic != tp {
				t.Fatalf("since %v: item %d: got %s, want #%d key %s", since, i, show(it), seq, key(seq))
			}
		}
	}
	// After the snapshot, live messages follow.
	c := e.dial(DialOptions{Subscriptions: []Subscription{{Topic: tp, Since: &fanout.Position{Epoch: "x", Seq: 1}}}})
	e.okReply(c, tp)
	if ev := e.next(c); ev.Type != EventSnapshot {
		t.Fatalf("got %s, want snapshot", show(ev))
	}
	e.publish(tp, payload(11), fanout.WithKey(key(11)))
	e.msg(c, tp, 11)
}

func (s *suite) snapshotThenLive(t *testing.T) {
	e := s.env(t, nil)
	tp := topic("snap")
	key := func(i uint64) string { return fmt.Sprintf("sku-%d", i%5) }
	const end = 400
	p := e.publishInBackground(tp, 1, end, 20, key)
	<-p.started
	c := e.dial(DialOptions{Subscriptions: []Subscription{{Topic: tp, Snapshot: true}}})
	r := e.okReply(c, tp)
	snap := e.next(c)
	if snap.Type != EventSnapshot || snap.Topic != tp {
		t.Fatalf("got %s, want snapshot of %s", show(snap), tp)
	}
	P := snap.Position.Seq
	if P < 20 || r.Position != snap.Position {
		t.Fatalf("got snapshot at %v and reply at %v, want both equal and seq >= 20", snap.Position, r.Position)
	}
	// Each key's item is the latest message with that key at P.
	if len(snap.Items) != 5 {
		t.Fatalf("got %d items, want 5", len(snap.Items))
	}
	var prev uint64
	for _, it := range snap.Items {
		seq := it.Position.Seq
		if seq > P || seq+5 <= P || it.Key != key(seq) || !bytes.Equal(it.Data, payload(seq)) || seq <= prev {
			t.Fatalf("at P=%d: got item %s, want the latest of its key, in Seq order", P, show(it))
		}
		prev = seq
	}
	p.wait(t)
	e.publish(tp, payload(end+1), fanout.WithKey(key(end+1)))
	for i := P + 1; i <= end+1; i++ {
		if ev := e.msg(c, tp, i); ev.Key != key(i) {
			t.Fatalf("got %s, want key %s", show(ev), key(i))
		}
	}
}

// refused reports whether the client was refused with want: by Dial, by the
// stream, by a close with code, or by an error reply for topic with the
// error's code. It reads at most one event per subscription plus one.
func (e *env) refused(o DialOptions, want error, code fanout.CloseCode, topic string) (Client, bool) {
	e.t.Helper()
	c, err := e.tr.Dial(e.ctx, o)
	if err != nil {
		if !errors.Is(err, want) {
			e.t.Fatalf("dial: got error %v, want one matching %v", err, want)
		}
		return nil, true
	}
	e.t.Cleanup(func() { c.Close() })
	for range len(o.Subscriptions) + 1 {
		ev, err := c.Next(e.ctx)
		switch {
		case err != nil:
			if !errors.Is(err, want) {
				e.t.Fatalf("got error %v, want one matching %v", err, want)
			}
			return nil, true
		case ev.Type == EventClose:
			if ev.Code != code || ev.Reconnect != code.Reconnect() {
				e.t.Fatalf("got %s, want close %d reconnect=%v", show(ev), code, code.Reconnect())
			}
			return nil, true
		case ev.Type == EventReply && ev.Topic == topic:
			if ev.Error != fanout.ErrorCode(want) {
				e.t.Fatalf("got %s, want error %q", show(ev), fanout.ErrorCode(want))
			}
			return c, true
		case ev.Type == EventReply && ev.Error == "":
			continue // another topic's ok reply
		}
		e.t.Fatalf("got %s, want a refusal matching %v", show(ev), want)
	}
	return nil, false
}

func (s *suite) unauthenticated(t *testing.T) {
	e := s.env(t, &fanout.HubOptions{Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
		if c.Token != "good-token" {
			return fanout.Principal{}, errors.New("unknown token")
		}
		return fanout.Principal{ID: "alice"}, nil
	}})
	tp := topic("authn")
	for _, tok := range []string{"", "bad-token"} {
		o := DialOptions{Subscriptions: []Subscription{{Topic: tp}}, Token: tok}
		if _, ok := e.refused(o, fanout.ErrUnauthenticated, fanout.CloseUnauthorized, ""); !ok {
			t.Fatalf("token %q: not refused", tok)
		}
	}
	c := e.dial(DialOptions{Subscriptions: []Subscription{{Topic: tp}}, Token: "good-token"})
	e.okReply(c, tp)
	e.publish(tp, payload(1))
	e.msg(c, tp, 1)
}

func (s *suite) forbidden(t *testing.T) {
	e := s.env(t, &fanout.HubOptions{Authorize: func(_ context.Context, _ fanout.Principal, tp string, a fanout.Action) error {
		if strings.HasPrefix(tp, "deny") {
			return errors.New("not yours")
		}
		return nil
	}})
	ok, denied := topic("allow"), topic("deny")
	o := DialOptions{Subscriptions: []Subscription{{Topic: ok}, {Topic: denied}}}
	c, refused := e.refused(o, fanout.ErrForbidden, 0, denied)
	if !refused {
		t.Fatal("not refused")
	}
	if c == nil { // the whole connection was refused
		c = e.subscribe(ok)
	}
	// The denied topic leaks nothing; the allowed one works.
	e.publish(denied, payload(1))
	e.publish(ok, payload(1))
	e.msg(c, ok, 1)
	if s.f.Commands {
		if err := c.Subscribe(e.ctx, "d2", Subscription{Topic: denied}); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		if ev := e.next(c); ev.Type != EventReply || ev.ID != "d2" || ev.Error != "forbidden" {
			t.Fatalf("got %s, want forbidden reply d2", show(ev))
		}
		e.publish(denied, payload(2))
		e.publish(ok, payload(2))
		e.msg(c, ok, 2)
	}
}

func (s *suite) slowConsumer(t *testing.T) {
	e := s.env(t, &fanout.HubOptions{
		QueueMessages: 16,
		Backplane:     fanout.NewMemoryBroker(&fanout.MemoryOptions{HistorySize: 64}).Node(),
	})
	tp := topic("slow")
	c := e.subscribe(tp)
	// The client reads nothing while the topic receives far more than any
	// socket, flow-control window and queue hold: its queue overflows.
	big := bytes.Repeat([]byte("x"), 60<<10)
	const n = 1000
	var last fanout.Position
	for range n {
		last = e.publish(tp, big)
	}
	var got uint64
	for {
		ev := e.next(c)
		if ev.Type == EventClose {
			if ev.Code != fanout.CloseSlowConsumer || !ev.Reconnect {
				t.Fatalf("got %s, want close %d with reconnect", show(ev), fanout.CloseSlowConsumer)
			}
			break
		}
		if ev.Type != EventMessage || ev.Position.Seq != got+1 || !bytes.Equal(ev.Data, big) {
			t.Fatalf("got %s, want msg #%d", show(ev), got+1)
		}
		got++
	}
	if got >= n {
		t.Fatalf("got all %d messages before the slow-consumer close, want fewer", got)
	}
	if _, err := c.Next(e.ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: got %v, want io.EOF", err)
	}
	if _, err := e.rec.waitCloses(e.ctx, 1); err != nil {
		t.Fatal(err)
	}
	// The client resumes from what it got.
	since := fanout.Position{Epoch: last.Epoch, Seq: got}
	c2 := e.dial(DialOptions{Subscriptions: []Subscription{{Topic: tp, Since: &since}}})
	r := e.okReply(c2, tp)
	if r.Recovered == nil {
		t.Fatalf("got %s, want recovered set", show(r))
	}
	if *r.Recovered {
		for i := got + 1; i <= n; i++ {
			e.msg(c2, tp, i)
		}
	} else if ev := e.next(c2); ev.Type != EventSnapshot || ev.Position != last {
		t.Fatalf("got %s, want snapshot at %v", show(ev), last)
	}
}

func (s *suite) shutdown(t *testing.T) {
	e := s.env(t, nil)
	tp := topic("drain")
	c := e.subscribe(tp)
	const n = 20
	for i := uint64(1); i <= n; i++ {
		e.publish(tp, payload(i))
	}
	done := make(chan error, 1)
	go func() { done <- e.hub.Shutdown(e.ctx) }()
	t.Cleanup(func() { <-done; done <- nil })
	for i := uint64(1); i <= n; i++ {
		e.msg(c, tp, i)
	}
	ev := e.next(c)
	if ev.Type != EventClose || ev.Code != fanout.CloseShutdown || !ev.Reconnect {
		t.Fatalf("got %s, want close %d with reconnect", show(ev), fanout.CloseShutdown)
	}
	if _, err := c.Next(e.ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: got %v, want io.EOF", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	done <- nil
	// The hub takes no new clients.
	c2, err := e.tr.Dial(e.ctx, DialOptions{Subscriptions: []Subscription{{Topic: tp}}})
	if err != nil {
		if !errors.Is(err, fanout.ErrClosed) && !errors.Is(err, fanout.ErrUnavailable) {
			t.Fatalf("dial after shutdown: got %v, want an error matching ErrClosed or ErrUnavailable", err)
		}
		return
	}
	defer c2.Close()
	ev, err = c2.Next(e.ctx)
	if err == nil && (ev.Type != EventClose || ev.Code != fanout.CloseShutdown) {
		t.Fatalf("after shutdown: got %s, want a refusal", show(ev))
	}
}

func (s *suite) clientGoesAway(t *testing.T) {
	e := s.env(t, nil)
	tp := topic("away")
	c := e.subscribe(tp)
	e.publish(tp, payload(1))
	e.msg(c, tp, 1)
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	c.Close() // idempotent
	if _, err := e.rec.waitCloses(e.ctx, 1); err != nil {
		t.Fatalf("the server did not end the session: %v", err)
	}
	if ev, err := c.Next(e.ctx); err == nil {
		t.Fatalf("next after close: got %s, want an error", show(ev))
	}
	// Publishing to the topic nobody watches any more still works.
	e.publish(tp, payload(2))
}

func (s *suite) commands(t *testing.T) {
	if !s.f.Commands {
		t.Skip("the transport has no commands on an open connection")
	}
	e := s.env(t, nil)
	a, b := topic("cmd-a"), topic("cmd-b")
	c := e.dial(DialOptions{})
	send := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("send command: %v", err)
		}
	}
	reply := func(id, errCode string) Event {
		t.Helper()
		ev := e.next(c)
		if ev.Type != EventReply || ev.ID != id || ev.Error != errCode {
			t.Fatalf("got %s, want reply %q with error %q", show(ev), id, errCode)
		}
		return ev
	}
	send(c.Subscribe(e.ctx, "s1", Subscription{Topic: a}))
	reply("s1", "")
	send(c.Subscribe(e.ctx, "s2", Subscription{Topic: b}))
	reply("s2", "")
	send(c.Subscribe(e.ctx, "s3", Subscription{Topic: b}))
	reply("s3", "already_subscribed")
	e.publish(a, payload(1))
	e.msg(c, a, 1)
	send(c.Unsubscribe(e.ctx, "u1", a))
	reply("u1", "")
	send(c.Unsubscribe(e.ctx, "u2", a))
	reply("u2", "not_subscribed")
	e.publish(a, payload(2))
	e.publish(b, payload(1))
	e.msg(c, b, 1)
	// Resubscribing with since resumes exactly.
	send(c.Subscribe(e.ctx, "s4", Subscription{Topic: a, Since: &fanout.Position{Epoch: e.publish(a, payload(3)).Epoch, Seq: 1}}))
	if r := reply("s4", ""); r.Recovered == nil || !*r.Recovered {
		t.Fatalf("got %s, want recovered=true", show(r))
	}
	e.msg(c, a, 2)
	e.msg(c, a, 3)
}

func (s *suite) publish(t *testing.T) {
	if !s.f.Publish {
		t.Skip("the transport cannot publish over a connection")
	}
	e := s.env(t, &fanout.HubOptions{Authorize: func(_ context.Context, _ fanout.Principal, tp string, a fanout.Action) error {
		if a == fanout.ActionPublish && !strings.HasPrefix(tp, "pub") {
			return errors.New("read only")
		}
		return nil
	}})
	tp, ro := topic("pub"), topic("ro")
	sub := e.subscribe(tp)
	pub := e.dial(DialOptions{})
	if err := pub.Publish(e.ctx, "p1", tp, []byte(`{"stock":3}`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	r := e.next(pub)
	if r.Type != EventReply || r.ID != "p1" || r.Error != "" || r.Position.Seq != 1 {
		t.Fatalf("got %s, want ok reply p1 at seq 1", show(r))
	}
	if ev := e.msg(sub, tp, 1); string(ev.Data) != `{"stock":3}` {
		t.Fatalf("got data %q, want %q", ev.Data, `{"stock":3}`)
	}
	if err := pub.Publish(e.ctx, "p2", ro, []byte(`1`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if r := e.next(pub); r.Type != EventReply || r.ID != "p2" || r.Error != "forbidden" {
		t.Fatalf("got %s, want forbidden reply p2", show(r))
	}
}

func (s *suite) badInput(t *testing.T) {
	probe := s.env(t, nil)
	bi, ok := probe.tr.(BadInputs)
	if !ok {
		t.Skip("the transport declares no bad inputs (it does not implement transporttest.BadInputs)")
	}
	cases := bi.BadInputs()
	if len(cases) == 0 {
		t.Skip("the transport declares no bad inputs")
	}
	for i, bc := range cases {
		t.Run(bc.Name, func(t *testing.T) {
			t.Parallel()
			e := s.env(t, nil)
			bc := e.tr.(BadInputs).BadInputs()[i]
			ev, err := bc.Send(e.ctx)
			switch {
			case err != nil:
				if !errors.Is(err, bc.Want) {
					t.Fatalf("got error %v, want one matching %v", err, bc.Want)
				}
			case ev.Type == EventReply:
				if ev.Error != fanout.ErrorCode(bc.Want) {
					t.Fatalf("got %s, want error %q", show(ev), fanout.ErrorCode(bc.Want))
				}
			case ev.Type == EventClose && bc.WantClose != 0:
				if ev.Code != bc.WantClose {
					t.Fatalf("got %s, want close %d", show(ev), bc.WantClose)
				}
			default:
				t.Fatalf("got %s, want an error matching %v", show(ev), bc.Want)
			}
			// The hub still serves.
			tp := topic("after-bad")
			c := e.subscribe(tp)
			e.publish(tp, payload(1))
			e.msg(c, tp, 1)
		})
	}
}
