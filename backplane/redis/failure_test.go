package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// resyncCounter counts the hub's gap recoveries.
type resyncCounter struct{ resyncs, failed atomic.Int64 }

func (c *resyncCounter) Observe(e fanout.Event) {
	switch e.Type {
	case fanout.EventResync:
		c.resyncs.Add(1)
	case fanout.EventResyncFailed:
		c.failed.Add(1)
	}
}

// failureEnv is a cluster of two hubs on Redis: one reaches Redis through a
// proxy the test controls, the other directly.
type failureEnv struct {
	px       *testenv.Proxy
	direct   *goredis.Client
	prefix   string
	cut, ok  *fanout.Hub
	observer *resyncCounter
	topics   []string

	ctx      context.Context
	wg       sync.WaitGroup
	progress chan struct{} // capacity 1: a publisher or subscriber moved
}

func newFailureEnv(t *testing.T) *failureEnv {
	addr := testenv.Redis(t)
	e := &failureEnv{
		px:       testenv.NewProxy(t, addr),
		observer: new(resyncCounter),
		topics:   []string{"failure-0", "failure-1", "failure-2"},
		progress: make(chan struct{}, 1),
	}
	e.direct = newClient(t, nil)
	e.prefix = uniquePrefix(t, e.direct)
	viaProxy := newClient(t, &goredis.Options{
		Addr:        e.px.Addr(),
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	opts := &fanoutredis.Options{Prefix: e.prefix, HistorySize: 100000, PingInterval: 250 * time.Millisecond}
	for _, h := range []struct {
		hub **fanout.Hub
		c   goredis.UniversalClient
		obs fanout.Observer
	}{{&e.cut, viaProxy, e.observer}, {&e.ok, e.direct, nil}} {
		hub, err := fanout.NewHub(&fanout.HubOptions{
			Backplane: fanoutredis.New(h.c, opts), Observer: h.obs,
			QueueMessages: 1 << 16, QueueBytes: 64 << 20,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hub.Close() })
		*h.hub = hub
	}
	t.Cleanup(e.wg.Wait)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.ctx = ctx
	return e
}

func (e *failureEnv) moved() {
	select {
	case e.progress <- struct{}{}:
	default:
	}
}

// waitUntil waits until cond holds, checking whenever something moved.
func (e *failureEnv) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-e.progress:
		case <-deadline.C:
			t.Fatalf("after %v: still waiting for %s", waitTimeout, what)
		}
	}
}

// subscribe attaches a subscriber to every topic on h and reads its session
// until the test ends. Ping replies go to the returned channel.
func (e *failureEnv) subscribe(t *testing.T, name string, h *fanout.Hub) (*subscriber, *fanout.Session, chan string) {
	t.Helper()
	s := newSubscriber(name, e.topics)
	sess, err := s.attach(e.ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	pings := make(chan string, 1)
	e.wg.Go(func() {
		defer sess.Close(fanout.CloseNormal, "")
		err := s.read(e.ctx, sess, 0, pings)
		if e.ctx.Err() == nil {
			s.fail(err)
		}
	})
	return s, sess, pings
}

// firstError keeps the first error it is given.
type firstError struct {
	mu  sync.Mutex // guards err
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// publisher publishes to the topics in turn until stop is closed. Its
// errors go to onErr; it counts its successes and failures.
type publisher struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

func (e *failureEnv) publish(h *fanout.Hub, onErr func(error)) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	e.wg.Go(func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-e.ctx.Done():
				return
			default:
			}
			// No deadline: a publish that hangs makes the test time out.
			_, err := h.Publish(context.Background(), e.topics[i%len(e.topics)], []byte(fmt.Sprint("m", i)))
			if err != nil {
				p.failed.Add(1)
				onErr(err)
			} else {
				p.ok.Add(1)
			}
			e.moved()
		}
	})
	return p
}

func (p *publisher) halt() {
	close(p.stop)
	<-p.done
}

// TestConnectionCut cuts a hub off Redis while both hubs publish and serve
// subscribers. Publishing on the cut hub fails with ErrUnavailable and never
// hangs; its sessions stay open and answer; once Redis is back, every
// subscriber has every message Redis stored, in order, once.
func TestConnectionCut(t *testing.T) {
	t.Parallel()
	e := newFailureEnv(t)
	var subs []*subscriber
	var cutSessions []*fanout.Session
	var cutPings []chan string
	for i, h := range []*fanout.Hub{e.cut, e.cut, e.ok, e.ok} {
		s, sess, pings := e.subscribe(t, fmt.Sprint("subscriber ", i), h)
		subs = append(subs, s)
		if h == e.cut {
			cutSessions = append(cutSessions, sess)
			cutPings = append(cutPings, pings)
		}
	}

	var cutErrs, okErrs firstError // first unexpected error of each publisher
	pubCut := e.publish(e.cut, func(err error) {
		if !errors.Is(err, fanout.ErrUnavailable) {
			cutErrs.set(err)
		}
	})
	pubOK := e.publish(e.ok, func(err error) { okErrs.set(err) })
	e.waitUntil(t, "publishing on both hubs", func() bool { return pubCut.ok.Load() >= 100 && pubOK.ok.Load() >= 100 })

	e.px.Refuse()
	e.px.Cut()
	failedBefore, okBefore := pubCut.failed.Load(), pubOK.ok.Load()
	e.waitUntil(t, "failed publishes on the cut hub while the other goes on", func() bool {
		return pubCut.failed.Load() >= failedBefore+5 && pubOK.ok.Load() >= okBefore+300
	})
	// Local traffic: the cut hub's sessions stay open and answer.
	for i, sess := range cutSessions {
		sess.Reply(fanout.Reply{ID: fmt.Sprint("ping-", i)})
		select {
		case id := <-cutPings[i]:
			if want := fmt.Sprint("ping-", i); id != want {
				t.Fatalf("ping reply: got %q, want %q", id, want)
			}
		case <-time.After(waitTimeout):
			t.Fatal("no ping reply from a session of the cut hub")
		}
	}
	sess, err := e.cut.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatalf("new session on the cut hub: %v", err)
	}
	err = sess.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: e.topics[0]})
	sess.Close(fanout.CloseNormal, "")
	if !errors.Is(err, fanout.ErrUnavailable) {
		t.Fatalf("subscribe on the cut hub: got %v, want fanout.ErrUnavailable", err)
	}

	// Stop publishing while cut, so that only the resync after the
	// reconnect can bring the cut hub's subscribers up to date.
	pubCut.halt()
	pubOK.halt()
	if err := cutErrs.get(); err != nil {
		t.Fatalf("publish on the cut hub: got %v, want an error matching fanout.ErrUnavailable", err)
	}
	if err := okErrs.get(); err != nil {
		t.Fatalf("publish on the connected hub: %v", err)
	}
	failedDuringCut := pubCut.failed.Load() - failedBefore
	want, sums := stored(t, e.direct, e.prefix, e.topics)
	e.px.Resume()
	for _, s := range subs {
		s.waitFor(t, want)
	}
	checkDigests(t, subs, sums)

	// Publishing on the restored hub works again.
	pubCut = e.publish(e.cut, func(err error) { cutErrs.set(err) })
	e.waitUntil(t, "publishing on the restored hub", func() bool { return pubCut.ok.Load() >= 100 })
	pubCut.halt()
	if err := cutErrs.get(); err != nil {
		t.Fatalf("publish on the restored hub: %v", err)
	}
	want, sums = stored(t, e.direct, e.prefix, e.topics)
	for _, s := range subs {
		s.waitFor(t, want)
	}
	checkDigests(t, subs, sums)
	if n := e.observer.resyncs.Load(); n == 0 {
		t.Errorf("the cut hub filled no gap from history; want at least one resync")
	}
	if n := e.observer.failed.Load(); n != 0 {
		t.Errorf("the cut hub failed %d resyncs, want 0", n)
	}
	t.Logf("cut hub: %d publishes failed during the cut, %d resyncs", failedDuringCut, e.observer.resyncs.Load())
}

// TestSilentConnection makes a hub's connections to Redis go silent without
// closing them, as a dead peer or a dropped route would: the hub's pings
// find out, its subscription moves to a new connection, and its subscribers
// get every message, in order, once.
func TestSilentConnection(t *testing.T) {
	t.Parallel()
	e := newFailureEnv(t)
	var subs []*subscriber
	for i, h := range []*fanout.Hub{e.cut, e.cut, e.ok} {
		s, _, _ := e.subscribe(t, fmt.Sprint("subscriber ", i), h)
		subs = append(subs, s)
	}
	var pubErr firstError
	pub := e.publish(e.ok, func(err error) { pubErr.set(err) })
	e.waitUntil(t, "publishing", func() bool { return pub.ok.Load() >= 100 })
	e.px.Stall()
	before := pub.ok.Load()
	e.waitUntil(t, "publishing while the other hub's connections are silent", func() bool { return pub.ok.Load() >= before+300 })
	pub.halt()
	if err := pubErr.get(); err != nil {
		t.Fatalf("publish: %v", err)
	}
	want, sums := stored(t, e.direct, e.prefix, e.topics)
	for _, s := range subs {
		s.waitFor(t, want)
	}
	checkDigests(t, subs, sums)
	if n := e.observer.resyncs.Load(); n == 0 {
		t.Errorf("the silenced hub filled no gap from history; want at least one resync")
	}
}

// TestResyncOfNewTopic cuts a hub off Redis while its subscribers wait on
// topics that have no message yet; the first messages are published during
// the cut, and nothing after. Once the hub is back, its resync must bring
// them, although the hub had no position of those topics before.
func TestResyncOfNewTopic(t *testing.T) {
	t.Parallel()
	e := newFailureEnv(t)
	s, _, _ := e.subscribe(t, "subscriber", e.cut)
	e.px.Refuse()
	e.px.Cut()
	for _, tp := range e.topics {
		if _, err := e.ok.Publish(context.Background(), tp, []byte("first")); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	want, sums := stored(t, e.direct, e.prefix, e.topics)
	e.px.Resume()
	s.waitFor(t, want)
	checkDigests(t, []*subscriber{s}, sums)
}
