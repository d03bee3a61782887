package sse_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/internal/wire"
	"github.com/gofanout/fanout/transport/sse"
)

// TestExpiryEndsStream: a stream whose credentials expire tells when, and
// ends then with close 4002; the client reconnects with fresh credentials
// (from the access_token cookie here) and resumes with Last-Event-ID.
func TestExpiryEndsStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, err := fanout.NewHub(&fanout.HubOptions{
			Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
				if !strings.HasPrefix(c.Token, "alice-") {
					return fanout.Principal{}, errors.New("bad token")
				}
				return fanout.Principal{ID: "alice", ExpiresAt: time.Now().Add(time.Minute)}, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		l := testenv.NewPipe()
		srv := &http.Server{Handler: sse.New(hub, &sse.Options{HeartbeatInterval: time.Hour})}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() {
			srv.Close()
			<-served
		}()
		tr := &http.Transport{DialContext: l.Dial}
		defer tr.CloseIdleConnections()
		open := func(token, lastID string) (*eventReader, io.Closer) {
			req, _ := http.NewRequest(http.MethodGet, "http://pipe/?topic=exp", nil)
			req.AddCookie(&http.Cookie{Name: "access_token", Value: token})
			if lastID != "" {
				req.Header.Set("Last-Event-ID", lastID)
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("open: %v, %v", resp, err)
			}
			return newEventReader(resp.Body, lastID), resp.Body
		}
		er, body := open("alice-1", "")
		defer body.Close()
		start := time.Now()
		ev, err := er.next()
		if err != nil || ev.Name != "expiry" {
			t.Fatalf("got %+v, %v; want the expiry event first", ev, err)
		}
		f, err := wire.ParseFrame([]byte(ev.Data))
		if err != nil || !f.Expires.Equal(start.Add(time.Minute).Truncate(time.Millisecond)) {
			t.Fatalf("expiry %+v, %v; want +1m", f, err)
		}
		if ev, err := er.next(); err != nil || ev.Name != "reply" {
			t.Fatalf("got %+v, %v; want the reply", ev, err)
		}
		if _, err := hub.Publish(context.Background(), "exp", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if ev, err := er.next(); err != nil || ev.Name != "msg" {
			t.Fatalf("got %+v, %v; want the message", ev, err)
		}
		ev, err = er.next()
		if err != nil || ev.Name != "close" {
			t.Fatalf("got %+v, %v; want close", ev, err)
		}
		if f, _ := wire.ParseFrame([]byte(ev.Data)); f.Code != fanout.CloseUnauthorized || f.Reason != fanout.ReasonExpired {
			t.Fatalf("got close %+v, want 4002 %q", f, fanout.ReasonExpired)
		}
		if d := time.Since(start); d != time.Minute {
			t.Fatalf("closed after %v, want 1m", d)
		}
		if _, err := er.next(); err != io.EOF {
			t.Fatalf("after close: %v, want the end of the stream", err)
		}
		// Published while the client was away: the fresh stream resumes.
		if _, err := hub.Publish(context.Background(), "exp", []byte("2")); err != nil {
			t.Fatal(err)
		}
		er2, body2 := open("alice-2", er.lastID)
		defer body2.Close()
		for _, want := range []string{"expiry", "reply", "msg"} {
			ev, err := er2.next()
			if err != nil || ev.Name != want {
				t.Fatalf("after reconnecting: got %+v, %v; want %s", ev, err, want)
			}
			if want == "msg" && !strings.Contains(ev.Data, `"seq":2`) {
				t.Fatalf("resumed with %s, want seq 2", ev.Data)
			}
		}
	})
}
