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
