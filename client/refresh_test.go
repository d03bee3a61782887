package client_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
)

// TestRefreshInPlace: credentials that expire are refreshed before they
// do, with a refresh command: the connection stays, past the first
// credentials' expiry.
func TestRefreshInPlace(t *testing.T) {
	t.Parallel()
	const life = 1500 * time.Millisecond
	s := newServer(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if !strings.HasPrefix(c.Token, "alice-") {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "alice", ExpiresAt: time.Now().Add(life)}, nil
		},
	})
	var n atomic.Int64
	asked := make(chan time.Time, 16)
	st := newStatuses()
	start := time.Now()
	c, err := client.Dial(context.Background(), "ws://"+s.addr+"/", &client.Options{
		Token: func(context.Context) (string, error) {
			asked <- time.Now()
			return "alice-" + string(rune('0'+n.Add(1))), nil
		},
		RefreshMargin: time.Second,
		OnStatus:      st.record,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, err := c.Subscribe(context.Background(), "cred", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The connection's token, then refreshes, until well past the first
	// credentials' expiry.
	var last time.Time
	for range 4 {
		last = <-asked
	}
	if last.Sub(start) < life {
		t.Fatalf("four tokens within %v, want the last past the first expiry", last.Sub(start))
	}
	s.publish(t, "cred", `"still here"`)
	ev, err := sub.Next(context.Background())
	if err != nil || string(ev.Message.Data) != `"still here"` {
		t.Fatalf("got %+v, %v", ev, err)
	}
	c.Close()
	for s := range st.ch {
		if s.Kind == client.StatusDisconnected && !errors.Is(s.Err, client.ErrClosed) {
			t.Fatalf("disconnected: %+v", s)
		}
		if s.Kind == client.StatusStopped {
			break
		}
	}
}

// TestRefreshFailsReconnect: a token callback that fails at refresh time
// leaves the connection until the server closes it at expiry with 4002;
// the client then reconnects with a fresh token and resumes.
func TestRefreshFailsReconnect(t *testing.T) {
	t.Parallel()
	s := newServer(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if !strings.HasPrefix(c.Token, "alice-") {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "alice", ExpiresAt: time.Now().Add(300 * time.Millisecond)}, nil
		},
	})
	var calls atomic.Int64
	st := newStatuses()
	o := options(t, st)
	o.RefreshMargin = time.Second
	o.Token = func(context.Context) (string, error) {
		// The connection's token, then a failed refresh, then the token
		// of the reconnect; later refreshes fail too.
		switch calls.Add(1) {
		case 1, 3:
			return "alice-ok", nil
		}
		return "", errors.New("identity provider down")
	}
	c := dial(t, "ws://"+s.addr+"/", o)
	sub := subscribe(t, c, "cred2", nil)
	got := st.waitFor(t, client.StatusDisconnected)
	if got.Code != fanout.CloseUnauthorized || got.Reason != fanout.ReasonExpired {
		t.Fatalf("got %+v, want 4002 %q", got, fanout.ReasonExpired)
	}
	st.waitFor(t, client.StatusConnected)
	st.waitFor(t, client.StatusResumed)
	s.publish(t, "cred2", `"after"`)
	if ev := next(t, sub); string(ev.Message.Data) != `"after"` {
		t.Fatalf("got %+v", ev)
	}
	if n := calls.Load(); n < 3 {
		t.Fatalf("token called %d times, want the reconnect's too", n)
	}
}
