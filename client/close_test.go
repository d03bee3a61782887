package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
)

func TestCloseEndsEverything(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fanout.HubOptions{Authorize: allowPublish})
	st := newStatuses()
	c := dial(t, "ws://"+srv.addr+"/", options(t, st))
	s := subscribe(t, c, "x", nil)
	ctx := context.Background()

	nextDone := make(chan error)
	go func() {
		_, err := s.Next(ctx)
		nextDone <- err
	}()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close()
		}()
	}
	wg.Wait()
	if err := <-nextDone; !errors.Is(err, client.ErrClosed) {
		t.Errorf("next: got %v, want ErrClosed", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done is open after Close")
	}
	if !errors.Is(c.Err(), client.ErrClosed) {
		t.Errorf("Err: got %v, want ErrClosed", c.Err())
	}
	if _, err := c.Subscribe(ctx, "y", nil); !errors.Is(err, client.ErrClosed) {
		t.Errorf("subscribe: got %v, want ErrClosed", err)
	}
	if _, err := c.Publish(ctx, "y", []byte("1")); !errors.Is(err, client.ErrClosed) {
		t.Errorf("publish: got %v, want ErrClosed", err)
	}
	if got := st.waitFor(t, client.StatusStopped); !errors.Is(got.Err, client.ErrClosed) {
		t.Errorf("got %+v, want stopped with ErrClosed", got)
	}
}

// TestCloseWhileReconnecting closes a client whose server is unreachable,
// with a subscribe and a publish waiting for the connection.
func TestCloseWhileReconnecting(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fanout.HubOptions{Authorize: allowPublish})
	px := testenv.NewProxy(t, srv.addr)
	st := newStatuses()
	o := options(t, st)
	o.BackoffMin, o.BackoffMax = time.Hour, time.Hour
	c := dial(t, wsURL(px), o)
	px.Refuse()
	px.Cut()
	st.waitFor(t, client.StatusDisconnected)

	ctx := context.Background()
	subErr := make(chan error)
	go func() {
		_, err := c.Subscribe(ctx, "x", nil)
		subErr <- err
	}()
	pubErr := make(chan error)
	go func() {
		_, err := c.Publish(ctx, "x", []byte("1"))
		pubErr <- err
	}()
	c.Close()
	if err := <-subErr; !errors.Is(err, client.ErrClosed) {
		t.Errorf("subscribe: got %v, want ErrClosed", err)
	}
	if err := <-pubErr; !errors.Is(err, client.ErrClosed) {
		t.Errorf("publish: got %v, want ErrClosed", err)
	}
}

// TestSubscribeWaitsForConnection subscribes and publishes while the
// server is unreachable: both complete once it is back.
func TestSubscribeWaitsForConnection(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fanout.HubOptions{Authorize: allowPublish})
	px := testenv.NewProxy(t, srv.addr)
	st := newStatuses()
	c := dial(t, wsURL(px), options(t, st))
	px.Refuse()
	px.Cut()
	st.waitFor(t, client.StatusDisconnected)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	expired, cancelExpired := context.WithCancel(ctx)
	cancelExpired()
	if _, err := c.Subscribe(expired, "x", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("subscribe with a done context: got %v, want context.Canceled", err)
	}
	type result struct {
		s   *client.Subscription
		err error
	}
	subbed := make(chan result)
	go func() {
		s, err := c.Subscribe(ctx, "x", nil)
		subbed <- result{s, err}
	}()
	published := make(chan error)
	go func() {
		_, err := c.Publish(ctx, "y", []byte("1"))
		published <- err
	}()
	px.Resume()
	r := <-subbed
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	p := srv.publish(t, "x", "1")
	if ev := next(t, r.s); ev.Position != p {
		t.Errorf("got %v, want %v", ev.Position, p)
	}
}

// TestPingDetectsStalledConnection stalls the network without closing
// anything: the client's ping goes unanswered, and it reconnects.
func TestPingDetectsStalledConnection(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	px := testenv.NewProxy(t, srv.addr)
	st := newStatuses()
	o := options(t, st)
	o.PingInterval, o.PingTimeout = 20*time.Millisecond, 200*time.Millisecond
	c := dial(t, wsURL(px), o)
	s := subscribe(t, c, "x", nil)
	st.waitFor(t, client.StatusConnected)
	px.Stall()
	srv.publish(t, "x", "lost in the stall")
	if got := st.waitFor(t, client.StatusDisconnected); got.Err == nil || !strings.Contains(got.Err.Error(), "ping") || got.Code != 0 {
		t.Errorf("got %+v, want a ping timeout", got)
	}
	st.waitFor(t, client.StatusConnected)
	p := srv.publish(t, "x", "2")
	if ev := next(t, s); ev.Position.Seq != 1 {
		t.Errorf("got %v, want the message published during the stall", ev.Position)
	}
	if ev := next(t, s); ev.Position != p {
		t.Errorf("got %v, want %v", ev.Position, p)
	}
}
