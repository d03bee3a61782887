package backplanetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutclient "github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/transport/websocket"
)

// The scenarios of server control through the backplane: Disconnect and
// server-side Subscribe/Unsubscribe of a principal connected to two hubs,
// over real WebSocket connections with the Go client.

func init() {
	scenarios = append(scenarios,
		scenario{name: "ControlDisconnect", run: testControlDisconnect},
		scenario{name: "ControlSubscribe", run: testControlSubscribe},
		scenario{name: "ControlLimits", run: testControlLimits},
	)
}

// ctlNode returns a new node of the cluster, or skips the scenario when
// the backplane carries no control messages.
func (s *suite) ctlNode(t *testing.T) fanout.Backplane {
	t.Helper()
	n := s.newNode()
	if _, ok := n.(fanout.ControlBackplane); !ok {
		n.Close()
		t.Skip("the backplane does not implement fanout.ControlBackplane")
	}
	return n
}

// ctlServer is a hub on a node of the cluster, served over WebSocket; a
// client's token is its principal's ID.
type ctlServer struct {
	hub *fanout.Hub
	url string
}

func (s *suite) ctlServer(t *testing.T) *ctlServer {
	t.Helper()
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Backplane: s.ctlNode(t),
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			return fanout.Principal{ID: c.Token}, nil
		},
	})
	if err != nil {
		t.Fatalf("new hub: %v", err)
	}
	h := websocket.New(hub, nil)
	srv := testenv.NewServer(t, h, &testenv.ServerOptions{Stop: func() { hub.Close(); h.Close() }})
	return &ctlServer{hub: hub, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/"}
}

// ctlClient is a Go client whose server-side subscriptions arrive on subs.
type ctlClient struct {
	c    *fanoutclient.Client
	subs chan *fanoutclient.Subscription
}

// dial connects a client as principal, and makes sure its session is
// attached on the server (a subscribe was answered) before it returns.
func (s *suite) dial(t *testing.T, srv *ctlServer, principal, warm string) *ctlClient {
	t.Helper()
	cc := &ctlClient{subs: make(chan *fanoutclient.Subscription, 16)}
	c, err := fanoutclient.Dial(s.ctx(t), srv.url, &fanoutclient.Options{
		Token:             func(context.Context) (string, error) { return principal, nil },
		PingInterval:      -1,
		OnServerSubscribe: func(sub *fanoutclient.Subscription) { cc.subs <- sub },
	})
	if err != nil {
		t.Fatalf("dial %s as %q: %v", srv.url, principal, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Subscribe(s.ctx(t), warm, nil); err != nil {
		t.Fatalf("subscribe %q as %q: %v", warm, principal, err)
	}
	cc.c = c
	return cc
}

// stopped waits for the client to stop and returns why.
func (s *suite) stopped(t *testing.T, who string, c *fanoutclient.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(s.f.Timeout):
		t.Fatalf("%s: still connected after %v", who, s.f.Timeout)
		return nil
	}
}

func testControlDisconnect(t *testing.T, s *suite) {
	a, b := s.ctlServer(t), s.ctlServer(t)
	warm := s.topic + "-warm"
	alice1 := s.dial(t, a, "alice", warm)
	alice2 := s.dial(t, b, "alice", warm)
	bob := s.dial(t, b, "bob", warm)
	bobSub, err := bob.c.Subscribe(s.ctx(t), s.topic, nil)
	if err != nil {
		t.Fatalf("bob: subscribe: %v", err)
	}
	if got := len(a.hub.PrincipalSessions("alice")); got != 1 {
		t.Fatalf("node a: %d sessions of alice, want 1", got)
	}
	if got := b.hub.PrincipalSessions("bob"); len(got) != 1 || got[0].Transport != "websocket" {
		t.Fatalf("node b: sessions of bob %+v, want one websocket session", got)
	}

	// A principal with no session anywhere is harmless.
	if err := a.hub.Disconnect(s.ctx(t), "nobody", nil); err != nil {
		t.Fatalf("disconnect nobody: %v", err)
	}
	if err := a.hub.Disconnect(s.ctx(t), "alice", &fanout.DisconnectOptions{Reason: "account locked"}); err != nil {
		t.Fatalf("disconnect alice: %v", err)
	}
	for who, c := range map[string]*ctlClient{"alice on a": alice1, "alice on b": alice2} {
		var ce *fanoutclient.CloseError
		if err := s.stopped(t, who, c.c); !errors.As(err, &ce) || ce.Code != fanout.CloseDisconnected || ce.Reason != "account locked" {
			t.Fatalf("%s: stopped with %v, want close %d %q", who, err, fanout.CloseDisconnected, "account locked")
		}
	}
	// Bob, on the node that applied the control message, stays.
	select {
	case <-bob.c.Done():
		t.Fatalf("bob stopped too: %v", bob.c.Err())
	default:
	}
	s.hubPublish(t, a.hub, s.topic, `"still here"`)
	ctx := s.ctx(t)
	if ev, err := bobSub.Next(ctx); err != nil || ev.Kind != fanoutclient.EventMessage || string(ev.Message.Data) != `"still here"` {
		t.Fatalf("bob: got %+v, %v; want the message", ev, err)
	}
}

func testControlSubscribe(t *testing.T, s *suite) {
	a, b := s.ctlServer(t), s.ctlServer(t)
	warm := s.topic + "-warm"
	alice1 := s.dial(t, a, "alice", warm)
	alice2 := s.dial(t, b, "alice", warm)
	bob := s.dial(t, b, "bob", warm)
	first := s.hubPublish(t, a.hub, s.topic, `{"step":"booked"}`, fanout.WithKey("status"))

	if err := a.hub.Subscribe(s.ctx(t), "nobody", s.topic, nil); err != nil {
		t.Fatalf("subscribe nobody: %v", err)
	}
	if err := b.hub.Subscribe(s.ctx(t), "alice", s.topic, &fanout.ServerSubscribeOptions{Snapshot: true}); err != nil {
		t.Fatalf("subscribe alice: %v", err)
	}
	subs := map[string]*fanoutclient.Subscription{}
	for who, c := range map[string]*ctlClient{"alice on a": alice1, "alice on b": alice2} {
		select {
		case sub := <-c.subs:
			if sub.Topic() != s.topic || !sub.Server() {
				t.Fatalf("%s: got server-side subscription %q (server %v), want %q", who, sub.Topic(), sub.Server(), s.topic)
			}
			subs[who] = sub
		case <-time.After(s.f.Timeout):
			t.Fatalf("%s: no server-side subscription within %v", who, s.f.Timeout)
		}
		ev, err := subs[who].Next(s.ctx(t))
		if err != nil || ev.Kind != fanoutclient.EventSnapshot || len(ev.Snapshot) != 1 || ev.Position != first {
			t.Fatalf("%s: got %+v, %v; want the snapshot at %v", who, ev, err, first)
		}
	}
	for _, h := range []*fanout.Hub{a.hub, b.hub} {
		if got := h.PrincipalSessions("alice"); len(got) != 1 || len(got[0].Topics) != 2 {
			t.Fatalf("sessions of alice %+v, want one subscribed to 2 topics", got)
		}
	}
	next := s.hubPublish(t, b.hub, s.topic, `{"step":"paid"}`, fanout.WithKey("status"))
	for who, sub := range subs {
		ev, err := sub.Next(s.ctx(t))
		if err != nil || ev.Kind != fanoutclient.EventMessage || ev.Position != next {
			t.Fatalf("%s: got %+v, %v; want the message at %v", who, ev, err, next)
		}
	}

	if err := a.hub.Unsubscribe(s.ctx(t), "alice", s.topic); err != nil {
		t.Fatalf("unsubscribe alice: %v", err)
	}
	for who, sub := range subs {
		if ev, err := sub.Next(s.ctx(t)); !errors.Is(err, fanoutclient.ErrUnsubscribed) {
			t.Fatalf("%s: got %+v, %v; want ErrUnsubscribed", who, ev, err)
		}
	}
	// The control messages reach node b in order: bob, whose principal
	// was never named, got nothing before alice's unsubscribe.
	select {
	case sub := <-bob.subs:
		t.Fatalf("bob got a server-side subscription to %q", sub.Topic())
	default:
	}
	// The clients stay connected, and may subscribe to the topic again.
	if _, err := alice1.c.Subscribe(s.ctx(t), s.topic, nil); err != nil {
		t.Fatalf("alice on a: subscribe again: %v", err)
	}
}

func testControlLimits(t *testing.T, s *suite) {
	n := s.ctlNode(t)
	if err := n.Open(newRecorder(t)); err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	cb := n.(fanout.ControlBackplane)
	if err := cb.OpenControl(s.ctx(t), nopControl{}); err != nil {
		t.Fatalf("open control: %v", err)
	}
	if err := cb.PublishControl(s.ctx(t), make([]byte, fanout.MaxControlBytes+1)); !errors.Is(err, fanout.ErrTooLarge) {
		t.Fatalf("publish control of %d bytes: got %v, want ErrTooLarge", fanout.MaxControlBytes+1, err)
	}
	srv := s.ctlServer(t)
	long := strings.Repeat("p", fanout.MaxControlBytes)
	if err := srv.hub.Disconnect(s.ctx(t), long, nil); !errors.Is(err, fanout.ErrTooLarge) {
		t.Fatalf("disconnect a principal of %d bytes: got %v, want ErrTooLarge", len(long), err)
	}
	if err := srv.hub.Subscribe(s.ctx(t), "alice", "not a topic", nil); !errors.Is(err, fanout.ErrInvalidTopic) {
		t.Fatalf("subscribe to an invalid topic: got %v, want ErrInvalidTopic", err)
	}
	// Garbage from the backplane is dropped, and the node goes on.
	if err := cb.PublishControl(s.ctx(t), []byte(`{"op":"explode","principal":"alice"}`)); err != nil {
		t.Fatalf("publish control: %v", err)
	}
	c := s.dial(t, srv, "alice", s.topic)
	if err := srv.hub.Disconnect(s.ctx(t), "alice", nil); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	var ce *fanoutclient.CloseError
	if err := s.stopped(t, "alice", c.c); !errors.As(err, &ce) || ce.Code != fanout.CloseDisconnected {
		t.Fatalf("alice: stopped with %v, want close %d", err, fanout.CloseDisconnected)
	}
}

type nopControl struct{}

func (nopControl) Control([]byte) {}
