package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
	fws "github.com/gofanout/fanout/transport/websocket"
)

// server is a hub served over WebSocket on a loopback httptest server.
type server struct {
	hub  *fanout.Hub
	addr string // host:port
}

// newServer starts a hub with options ho and serves it over WebSocket. The
// cleanup closes the hub and waits for every connection's handler.
func newServer(t testing.TB, ho *fanout.HubOptions) *server {
	t.Helper()
	hub, err := fanout.NewHub(ho)
	if err != nil {
		t.Fatal(err)
	}
	h := fws.New(hub, nil)
	srv := testenv.NewServer(t, h, &testenv.ServerOptions{Stop: func() { hub.Close(); h.Close() }})
	return &server{hub: hub, addr: strings.TrimPrefix(srv.URL, "http://")}
}

func (s *server) publish(t testing.TB, topic, data string, opts ...fanout.PublishOption) fanout.Position {
	t.Helper()
	p, err := s.hub.Publish(context.Background(), topic, []byte(data), opts...)
	if err != nil {
		t.Errorf("publish: %v", err)
	}
	return p
}

// wsURL is the WebSocket URL through the proxy.
func wsURL(px *testenv.Proxy) string { return "ws://" + px.Addr() + "/" }

// statuses records a client's statuses.
type statuses struct {
	ch chan client.Status
}

func newStatuses() *statuses { return &statuses{ch: make(chan client.Status, 4096)} }

func (s *statuses) record(st client.Status) {
	select {
	case s.ch <- st:
	default:
		panic("statuses: the test does not read them")
	}
}

// waitFor returns the next status of kind k, failing the test after a
// while.
func (s *statuses) waitFor(t testing.TB, k client.StatusKind) client.Status {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case st := <-s.ch:
			if st.Kind == k {
				return st
			}
		case <-timeout:
			t.Fatalf("no %v status in 10s", k)
		}
	}
}

// options returns client options suited to tests: fast backoff, an HTTP
// client whose idle connections the cleanup closes, statuses recorded.
func options(t testing.TB, st *statuses) *client.Options {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	o := &client.Options{
		HTTPClient: &http.Client{Transport: tr},
		BackoffMin: time.Millisecond,
		BackoffMax: 10 * time.Millisecond,
	}
	if st != nil {
		o.OnStatus = st.record
	}
	return o
}

func dial(t testing.TB, url string, o *client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func subscribe(t testing.TB, c *client.Client, topic string, o *client.SubscribeOptions) *client.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Subscribe(ctx, topic, o)
	if err != nil {
		t.Fatalf("subscribe %q: %v", topic, err)
	}
	return s
}

// next returns the subscription's next event, failing the test after a
// while.
func next(t testing.TB, s *client.Subscription) client.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("next event of %q: %v", s.Topic(), err)
	}
	return ev
}

// nextErr waits for the subscription's end and returns its error.
func nextErr(t testing.TB, s *client.Subscription) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := s.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("subscription %q did not end", s.Topic())
		}
		if err != nil {
			return err
		}
	}
}

func allowPublish(context.Context, fanout.Principal, string, fanout.Action) error { return nil }
