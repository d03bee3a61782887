package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	fanoutclient "github.com/gofanout/fanout/client"
	saga "github.com/gofanout/fanout/examples/saga"
)

// userToken asks GET /token for a new user (no cookie) and returns its
// token.
func (ts *testServer) userToken(t *testing.T) (user, token string) {
	t.Helper()
	resp, err := ts.http.Get(ts.url + "/token")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u struct{ User, Token string }
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil || resp.StatusCode != http.StatusOK || u.Token == "" {
		t.Fatalf("GET /token: got %s %+v (decode: %v), want 200 and a token", resp.Status, u, err)
	}
	if !strings.HasPrefix(u.Token, u.User+".") {
		t.Fatalf("token %q is not user %q's", u.Token, u.User)
	}
	return u.User, u.Token
}

// dialUser connects a Go client over WebSocket as the user of token, and
// returns the server-side subscriptions it receives.
func (ts *testServer) dialUser(t *testing.T, token string) <-chan *fanoutclient.Subscription {
	t.Helper()
	subs := make(chan *fanoutclient.Subscription, 4)
	c, err := fanoutclient.Dial(bounded(t), "ws"+strings.TrimPrefix(ts.url, "http")+"/ws", &fanoutclient.Options{
		Token:             func(context.Context) (string, error) { return token, nil },
		OnServerSubscribe: func(s *fanoutclient.Subscription) { subs <- s },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Dial returns once the upgrade is done, which may be before the
	// server registered the session: a server-side subscribe made then
	// would not find it. Any reply to a command, even a refusal, comes
	// after the registration.
	var se *fanoutclient.ServerError
	if _, err := c.Subscribe(bounded(t), "saga.registered", nil); err != nil && !errors.As(err, &se) {
		t.Fatalf("subscribe after dial: %v", err)
	}
	return subs
}

// TestServerSideSubscription: a booking posted with {"subscribe": true}
// reaches the WebSocket of the user who booked, which never names the
// topic, from the snapshot of every step pending to the final update; the
// other user's WebSocket gets nothing.
func TestServerSideSubscription(t *testing.T) {
	for _, secret := range []string{"", "s3cret"} {
		t.Run("secret="+secret, func(t *testing.T) {
			ts := startServer(t, saga.Config{Secret: []byte(secret)})
			_, alice := ts.userToken(t)
			_, bob := ts.userToken(t)
			aliceSubs := ts.dialUser(t, alice)
			bobSubs := ts.dialUser(t, bob)

			req, _ := http.NewRequest(http.MethodPost, ts.url+"/bookings", strings.NewReader(`{"fail":"car","subscribe":true}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+alice)
			resp, err := ts.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b struct{ Tx string }
			json.NewDecoder(resp.Body).Decode(&b)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST /bookings: got %s, want 202", resp.Status)
			}

			ctx := bounded(t)
			var sub *fanoutclient.Subscription
			select {
			case sub = <-aliceSubs:
			case <-ctx.Done():
				t.Fatal("no server-side subscription for the user who booked")
			}
			if sub.Topic() != saga.Topic(b.Tx) || !sub.Server() {
				t.Fatalf("got subscription to %q (server %v), want %q by the server", sub.Topic(), sub.Server(), saga.Topic(b.Tx))
			}
			ev, err := sub.Next(ctx)
			if err != nil || ev.Kind != fanoutclient.EventSnapshot || len(ev.Snapshot) != len(saga.Steps)+1 {
				t.Fatalf("got first event %+v (%v), want the snapshot of %d keys", ev, err, len(saga.Steps)+1)
			}
			ts.release()
			var last saga.Update
			for !last.Final {
				ev, err := sub.Next(ctx)
				if err != nil {
					t.Fatalf("before the final update: %v", err)
				}
				if ev.Kind == fanoutclient.EventJoin || ev.Kind == fanoutclient.EventLeave {
					continue // saga topics deliver join and leave (its own join)
				}
				if ev.Kind != fanoutclient.EventMessage {
					t.Fatalf("got event %+v, want live messages", ev)
				}
				if err := json.Unmarshal(ev.Message.Data, &last); err != nil {
					t.Fatal(err)
				}
			}
			if last.Status != saga.StatusCompensated {
				t.Errorf("got final status %q, want %q", last.Status, saga.StatusCompensated)
			}
			select {
			case s := <-bobSubs:
				t.Errorf("another user was subscribed to %q", s.Topic())
			default:
			}
		})
	}
}
