package client_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
)

// TestSlowReaderLosesNothing publishes far more than the subscription's
// buffer holds while the application does not read: the client drops the
// subscription and resumes it from history as the application catches up.
func TestSlowReaderLosesNothing(t *testing.T) {
	t.Parallel()
	const n = 600
	srv := newServer(t, nil)
	var resumes atomic.Int64
	o := options(t, nil)
	o.OnStatus = func(s client.Status) {
		if s.Kind == client.StatusResumed && s.Topic == "a" && s.Recovered {
			resumes.Add(1)
		}
	}
	c := dial(t, "ws://"+srv.addr+"/", o)
	s := subscribe(t, c, "a", &client.SubscribeOptions{Buffer: 32})
	fast := subscribe(t, c, "b", nil)
	for i := 1; i <= n; i++ {
		srv.publish(t, "a", strconv.Itoa(i))
		srv.publish(t, "b", strconv.Itoa(i))
	}
	// The other subscription on the same connection is not held up.
	for i := 1; i <= n; i++ {
		if ev := next(t, fast); ev.Position.Seq != uint64(i) {
			t.Fatalf("b: got %v, want seq %d", ev.Position, i)
		}
	}
	for i := 1; i <= n; i++ {
		ev := next(t, s)
		if ev.Kind != client.EventMessage || ev.Position.Seq != uint64(i) || string(ev.Message.Data) != strconv.Itoa(i) {
			t.Fatalf("a: got %v %v %q, want message %d", ev.Kind, ev.Position, ev.Message.Data, i)
		}
	}
	if resumes.Load() == 0 {
		t.Errorf("got no resume, want the subscription dropped and resumed")
	}
}

// TestLongCutResets cuts the connection for longer than history reaches:
// the subscription yields a reset, then the snapshot, then live messages.
func TestLongCutResets(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fanout.HubOptions{Backplane: fanout.NewMemoryBroker(&fanout.MemoryOptions{HistorySize: 4}).Node()})
	px := testenv.NewProxy(t, srv.addr)
	st := newStatuses()
	c := dial(t, wsURL(px), options(t, st))
	s := subscribe(t, c, "saga", &client.SubscribeOptions{Snapshot: true})
	if ev := next(t, s); ev.Kind != client.EventSnapshot || len(ev.Snapshot) != 0 {
		t.Fatalf("got %v with %d items, want an empty snapshot", ev.Kind, len(ev.Snapshot))
	}
	seen := srv.publish(t, "saga", "flight booked", fanout.WithKey("flight"))
	if ev := next(t, s); ev.Position != seen {
		t.Fatalf("got %v, want %v", ev.Position, seen)
	}

	px.Refuse()
	px.Cut()
	st.waitFor(t, client.StatusDisconnected)
	srv.publish(t, "saga", "hotel booked", fanout.WithKey("hotel"))
	for range 5 {
		srv.publish(t, "saga", "car pending", fanout.WithKey("car"))
	}
	last := srv.publish(t, "saga", "hotel failed", fanout.WithKey("hotel"))
	px.Resume()

	if got := st.waitFor(t, client.StatusResumed); got.Recovered {
		t.Errorf("got a recovered resume, want recovered=false")
	}
	if ev := next(t, s); ev.Kind != client.EventReset || ev.Position != seen {
		t.Fatalf("got %v at %v, want a reset after %v", ev.Kind, ev.Position, seen)
	}
	ev := next(t, s)
	if ev.Kind != client.EventSnapshot || ev.Position != last {
		t.Fatalf("got %v at %v, want the snapshot at %v", ev.Kind, ev.Position, last)
	}
	state := map[string]string{}
	for _, m := range ev.Snapshot {
		state[m.Key] = string(m.Data)
	}
	want := map[string]string{"flight": "flight booked", "car": "car pending", "hotel": "hotel failed"}
	if len(state) != len(want) {
		t.Errorf("got snapshot %v, want %v", state, want)
	}
	for k, v := range want {
		if state[k] != v {
			t.Errorf("got snapshot %v, want %v", state, want)
		}
	}
	p := srv.publish(t, "saga", "flight compensated", fanout.WithKey("flight"))
	if ev := next(t, s); ev.Kind != client.EventMessage || ev.Position != p {
		t.Errorf("got %v at %v, want the message at %v", ev.Kind, ev.Position, p)
	}
}

// TestEpochChangeResets moves the client to a server with another history
// (a restarted memory backplane): its position means nothing there.
func TestEpochChangeResets(t *testing.T) {
	t.Parallel()
	a := newServer(t, nil)
	b := newServer(t, nil)
	px := testenv.NewProxy(t, a.addr)
	c := dial(t, wsURL(px), options(t, nil))
	s := subscribe(t, c, "x", nil)
	old := a.publish(t, "x", "1")
	if ev := next(t, s); ev.Position != old {
		t.Fatalf("got %v, want %v", ev.Position, old)
	}
	b.publish(t, "x", "b1", fanout.WithKey("k"))
	now := b.publish(t, "x", "b2")
	px.SetTarget(b.addr)
	px.Cut()
	if ev := next(t, s); ev.Kind != client.EventReset || ev.Position != old {
		t.Fatalf("got %v at %v, want a reset after %v", ev.Kind, ev.Position, old)
	}
	if ev := next(t, s); ev.Kind != client.EventSnapshot || ev.Position != now || len(ev.Snapshot) != 1 {
		t.Fatalf("got %v at %v with %d items, want the snapshot at %v", ev.Kind, ev.Position, len(ev.Snapshot), now)
	}
	p := b.publish(t, "x", "b3")
	if ev := next(t, s); ev.Position != p {
		t.Errorf("got %v, want %v", ev.Position, p)
	}
}

// TestShutdownReconnectsAtOnce drains one server of two that share a
// backplane: the client reconnects to the other without a backoff and
// resumes exactly.
func TestShutdownReconnectsAtOnce(t *testing.T) {
	t.Parallel()
	broker := fanout.NewMemoryBroker(nil)
	a := newServer(t, &fanout.HubOptions{Backplane: broker.Node()})
	b := newServer(t, &fanout.HubOptions{Backplane: broker.Node()})
	px := testenv.NewProxy(t, a.addr)
	st := newStatuses()
	o := options(t, st)
	o.BackoffMin, o.BackoffMax = time.Hour, time.Hour // a backoff would hang the test
	c := dial(t, wsURL(px), o)
	s := subscribe(t, c, "x", nil)
	for i := 1; i <= 3; i++ {
		b.publish(t, "x", strconv.Itoa(i))
	}
	for i := 1; i <= 3; i++ {
		if ev := next(t, s); ev.Position.Seq != uint64(i) {
			t.Fatalf("got %v, want seq %d", ev.Position, i)
		}
	}
	px.SetTarget(b.addr)
	if err := a.hub.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 6; i++ {
		b.publish(t, "x", strconv.Itoa(i))
	}
	got := st.waitFor(t, client.StatusDisconnected)
	if got.Code != fanout.CloseShutdown || got.Retry != 0 {
		t.Errorf("got %+v, want close 4000 and no wait", got)
	}
	st.waitFor(t, client.StatusConnected)
	if got := st.waitFor(t, client.StatusResumed); !got.Recovered {
		t.Errorf("got %+v, want recovered", got)
	}
	for i := 4; i <= 6; i++ {
		if ev := next(t, s); ev.Position.Seq != uint64(i) || string(ev.Message.Data) != strconv.Itoa(i) {
			t.Fatalf("got %v %q, want message %d", ev.Position, ev.Message.Data, i)
		}
	}
}

// tokenServer accepts only the current token.
func tokenServer(t *testing.T, valid *atomic.Pointer[string]) *server {
	return newServer(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Token != *valid.Load() {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "u"}, nil
		},
	})
}

func ptr(s string) *string { return &s }

// TestTokenRefreshedOnReconnect rotates the token: the client gets the
// fresh one from Options.Token, after one refusal when the first one it
// gets is stale.
func TestTokenRefreshedOnReconnect(t *testing.T) {
	t.Parallel()
	var valid atomic.Pointer[string]
	valid.Store(ptr("t1"))
	srv := tokenServer(t, &valid)
	px := testenv.NewProxy(t, srv.addr)
	tokens := make(chan string, 10)
	tokens <- "t1"
	st := newStatuses()
	o := options(t, st)
	o.Token = func(ctx context.Context) (string, error) {
		select {
		case tok := <-tokens:
			return tok, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	c := dial(t, wsURL(px), o)
	s := subscribe(t, c, "x", nil)
	st.waitFor(t, client.StatusConnected)

	valid.Store(ptr("t2"))
	tokens <- "t1" // stale: refused
	tokens <- "t2"
	px.Cut()
	st.waitFor(t, client.StatusDisconnected) // the cut
	if got := st.waitFor(t, client.StatusDisconnected); got.Code != fanout.CloseUnauthorized {
		t.Errorf("got %+v, want unauthorized", got)
	}
	st.waitFor(t, client.StatusConnected)
	p := srv.publish(t, "x", "1")
	if ev := next(t, s); ev.Position != p {
		t.Errorf("got %v, want %v", ev.Position, p)
	}
	if len(tokens) != 0 {
		t.Errorf("got %d tokens unused, want every one taken", len(tokens))
	}
}

// TestUnauthorizedStops: when the refreshed token is refused too, the
// client stops rather than hammer the server.
func TestUnauthorizedStops(t *testing.T) {
	t.Parallel()
	var valid atomic.Pointer[string]
	valid.Store(ptr("good"))
	srv := tokenServer(t, &valid)
	px := testenv.NewProxy(t, srv.addr)
	var calls atomic.Int64
	st := newStatuses()
	o := options(t, st)
	o.Token = func(context.Context) (string, error) {
		calls.Add(1)
		return "good", nil
	}
	c := dial(t, wsURL(px), o)
	s := subscribe(t, c, "x", nil)
	valid.Store(ptr("revoked"))
	px.Cut()

	err := nextErr(t, s)
	var ce *client.CloseError
	if !errors.As(err, &ce) || ce.Code != fanout.CloseUnauthorized {
		t.Fatalf("got %v, want a CloseError 4002", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), err) && c.Err().Error() != err.Error() {
		t.Errorf("got Err %v, want %v", c.Err(), err)
	}
	if got := st.waitFor(t, client.StatusStopped); got.Err == nil {
		t.Errorf("got %+v, want the reason", got)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("got %d token calls, want 3 (dial, two refused attempts)", got)
	}
	if _, err := c.Publish(context.Background(), "x", []byte("1")); !errors.As(err, &ce) {
		t.Errorf("publish after stop: got %v, want the CloseError", err)
	}
}

// TestUnauthorizedWithoutTokenStops: without a Token callback the same
// credentials would be refused again, so the client stops at once.
func TestUnauthorizedWithoutTokenStops(t *testing.T) {
	t.Parallel()
	var valid atomic.Pointer[string]
	valid.Store(ptr("good"))
	srv := tokenServer(t, &valid)
	px := testenv.NewProxy(t, srv.addr)

	var ce *client.CloseError
	if _, err := client.Dial(context.Background(), wsURL(px), options(t, nil)); !errors.As(err, &ce) || ce.Code != fanout.CloseUnauthorized {
		t.Errorf("dial without token: got %v, want a CloseError 4002", err)
	}

	o := options(t, nil)
	o.HTTPHeader = map[string][]string{"Authorization": {"Bearer good"}}
	c := dial(t, wsURL(px), o)
	s := subscribe(t, c, "x", nil)
	valid.Store(ptr("revoked"))
	before := px.Accepted()
	px.Cut()
	if err := nextErr(t, s); !errors.As(err, &ce) || ce.Code != fanout.CloseUnauthorized {
		t.Fatalf("got %v, want a CloseError 4002", err)
	}
	attempts := px.Accepted() - before
	if attempts != 1 {
		t.Errorf("got %d attempts after the cut, want 1", attempts)
	}
}

// TestTooLargeStops publishes more than the server reads in one message:
// the server closes with 1009, and retrying unchanged would fail again.
func TestTooLargeStops(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fanout.HubOptions{Authorize: allowPublish})
	st := newStatuses()
	c := dial(t, "ws://"+srv.addr+"/", options(t, st))
	_, err := c.Publish(context.Background(), "x", make([]byte, 100<<10))
	if err == nil {
		t.Fatal("got no error, want one")
	}
	<-c.Done()
	var ce *client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != fanout.CloseTooLarge {
		t.Errorf("got %v, want a CloseError 1009", c.Err())
	}
	if got := st.waitFor(t, client.StatusDisconnected); got.Code != fanout.CloseTooLarge {
		t.Errorf("got %+v, want close 1009", got)
	}
}

// TestSlowConsumerResumes publishes faster than the connection carries, so
// that the server closes the session with CloseSlowConsumer, again and
// again: the client resumes each time, and the stream stays exact: each
// message once, in order, with a gap only where a reset says so.
func TestSlowConsumerResumes(t *testing.T) {
	t.Parallel()
	const n = 3000
	srv := newServer(t, &fanout.HubOptions{
		QueueMessages: 64,
		Backplane:     fanout.NewMemoryBroker(&fanout.MemoryOptions{HistorySize: 32}).Node(),
	})
	var slow atomic.Int64
	o := options(t, nil)
	o.OnStatus = func(s client.Status) {
		if s.Kind == client.StatusDisconnected && s.Code == fanout.CloseSlowConsumer {
			slow.Add(1)
		}
	}
	c := dial(t, "ws://"+srv.addr+"/", o)
	s := subscribe(t, c, "x", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			srv.publish(t, "x", strconv.Itoa(i))
		}
	}()
	defer func() { <-done }()
	var last uint64
	for last < n {
		ev := next(t, s)
		switch ev.Kind {
		case client.EventMessage:
			if ev.Position.Seq != last+1 || string(ev.Message.Data) != strconv.FormatUint(ev.Position.Seq, 10) {
				t.Fatalf("got %v %q after seq %d, want the next message", ev.Position, ev.Message.Data, last)
			}
		case client.EventReset:
			if ev.Position.Seq != last {
				t.Fatalf("got a reset after %v, want after seq %d", ev.Position, last)
			}
			ev = next(t, s)
			if ev.Kind != client.EventSnapshot || ev.Position.Seq < last {
				t.Fatalf("got %v at %v after a reset, want a snapshot after seq %d", ev.Kind, ev.Position, last)
			}
		default:
			t.Fatalf("got %v, want messages and resets", ev.Kind)
		}
		last = ev.Position.Seq
	}
	if slow.Load() == 0 {
		t.Errorf("got no slow-consumer close, want the server to drop the client")
	}
	t.Logf("%d slow-consumer closes", slow.Load())
}
