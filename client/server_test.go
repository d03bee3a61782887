package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
)

// unsubscribes passes on the topics sessions leave.
type unsubscribes chan string

func (u unsubscribes) Observe(e fanout.Event) {
	if e.Type == fanout.EventUnsubscribe {
		u <- e.Topic
	}
}

func asAlice(context.Context, *fanout.Credentials) (fanout.Principal, error) {
	return fanout.Principal{ID: "alice"}, nil
}

// TestServerSubscriptionDeclined: without OnServerSubscribe the client
// unsubscribes what the server subscribed it to.
func TestServerSubscriptionDeclined(t *testing.T) {
	left := make(unsubscribes, 16)
	srv := newServer(t, &fanout.HubOptions{Authenticate: asAlice, Observer: left})
	c := dial(t, "ws://"+srv.addr+"/", options(t, nil))
	subscribe(t, c, "warm", nil) // the session is attached
	if err := srv.hub.Subscribe(context.Background(), "alice", "pushed", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-left:
		if topic != "pushed" {
			t.Fatalf("the session left %q, want pushed", topic)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not decline the server-side subscription")
	}
}

// TestServerSubscriptionOnReconnect: a server-side subscription resumes
// after a reconnect from its last position, as the client's own.
func TestServerSubscriptionOnReconnect(t *testing.T) {
	srv := newServer(t, &fanout.HubOptions{Authenticate: asAlice})
	subs := make(chan *client.Subscription, 1)
	o := options(t, nil)
	o.OnServerSubscribe = func(s *client.Subscription) { subs <- s }
	c := dial(t, "ws://"+srv.addr+"/", o)
	subscribe(t, c, "warm", nil)
	ctx := context.Background()
	if err := srv.hub.Subscribe(ctx, "alice", "pushed", nil); err != nil {
		t.Fatal(err)
	}
	var s *client.Subscription
	select {
	case s = <-subs:
	case <-time.After(10 * time.Second):
		t.Fatal("no server-side subscription")
	}
	p1 := srv.publish(t, "pushed", `1`)
	if ev := next(t, s); ev.Position != p1 {
		t.Fatalf("got %+v, want the message at %v", ev, p1)
	}
	// The server drops the connection; the message published meanwhile
	// arrives after the client resumed.
	if err := srv.hub.Disconnect(ctx, "alice", &fanout.DisconnectOptions{Code: 4100}); err != nil {
		t.Fatal(err)
	}
	p2 := srv.publish(t, "pushed", `2`)
	if ev := next(t, s); ev.Position != p2 {
		t.Fatalf("got %+v, want the message at %v", ev, p2)
	}
	if err := srv.hub.Unsubscribe(ctx, "alice", "pushed"); err != nil {
		t.Fatal(err)
	}
	if err := nextErr(t, s); !errors.Is(err, client.ErrUnsubscribed) {
		t.Fatalf("got %v, want ErrUnsubscribed", err)
	}
}
