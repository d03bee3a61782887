package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
)

// presenceServer gives each client the principal its token names, with
// info, and presence and join/leave on "room:" topics only.
func presenceServer(t *testing.T) *server {
	return newServer(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			info, _ := json.Marshal(map[string]string{"name": c.Token})
			return fanout.Principal{ID: c.Token, Info: info}, nil
		},
		TopicOptions: func(topic string) fanout.TopicOptions {
			if len(topic) > 5 && topic[:5] == "room:" {
				return fanout.TopicOptions{Presence: true, JoinLeave: true, PresenceRead: fanout.PermitAuthenticated}
			}
			return fanout.TopicOptions{PresenceRead: fanout.PermitNone}
		},
	})
}

func TestPresenceAndJoinLeave(t *testing.T) {
	srv := presenceServer(t)
	url := "ws://" + srv.addr + "/"
	alice := dial(t, url, &client.Options{Token: token("alice")})
	bob := dial(t, url, &client.Options{Token: token("bob")})

	sa := subscribe(t, alice, "room:1", nil)
	if ev := next(t, sa); ev.Kind != client.EventJoin || ev.Client.Principal != "alice" {
		t.Fatalf("got %v %+v, want alice's own join", ev.Kind, ev.Client)
	}
	sb := subscribe(t, bob, "room:1", nil)
	ev := next(t, sa)
	if ev.Kind != client.EventJoin || ev.Client.Principal != "bob" || string(ev.Client.Info) != `{"name":"bob"}` || ev.Client.Session == "" {
		t.Fatalf("got %v %+v, want bob's join with his info", ev.Kind, ev.Client)
	}
	srv.publish(t, "room:1", "hello")
	if ev := next(t, sa); ev.Kind != client.EventMessage || string(ev.Message.Data) != "hello" {
		t.Fatalf("got %v, want the message after the join", ev.Kind)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := alice.Presence(ctx, "room:1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range l {
		ids = append(ids, c.Principal)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"alice", "bob"}) {
		t.Fatalf("presence %v, want alice and bob", ids)
	}
	if n, err := bob.PresenceCount(ctx, "room:1"); err != nil || n != 2 {
		t.Fatalf("presence count %d, %v; want 2", n, err)
	}

	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, sa); ev.Kind != client.EventLeave || ev.Client.Principal != "bob" {
		t.Fatalf("got %v %+v, want bob's leave", ev.Kind, ev.Client)
	}
	if n, err := alice.PresenceCount(ctx, "room:1"); err != nil || n != 1 {
		t.Fatalf("presence count %d, %v; want 1", n, err)
	}

	// Topics whose options forbid reading presence refuse it.
	if _, err := alice.Presence(ctx, "other"); !errors.Is(err, fanout.ErrForbidden) {
		t.Fatalf("presence of a topic that forbids it: %v, want forbidden", err)
	}
}

func token(s string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return s, nil }
}
