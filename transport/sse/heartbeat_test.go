package sse_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/transport/sse"
)

func TestHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, err := fanout.NewHub(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		// A real http.Server and http.Client over an in-memory pipe: a
		// loopback socket would keep the fake clock from advancing.
		l := testenv.NewPipe()
		srv := &http.Server{Handler: sse.New(hub, &sse.Options{HeartbeatInterval: 10 * time.Second})}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() {
			srv.Close()
			<-served
		}()
		tr := &http.Transport{DialContext: l.Dial}
		defer tr.CloseIdleConnections()

		req, _ := http.NewRequest(http.MethodGet, "http://pipe/?topic=hb", nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		er := newEventReader(resp.Body, "")
		read := func(want string) time.Duration {
			t.Helper()
			b := make([]byte, len(want))
			if _, err := io.ReadFull(er.r, b); err != nil {
				t.Fatalf("read %q: %v", want, err)
			}
			if string(b) != want {
				t.Fatalf("got %q, want %q", b, want)
			}
			return time.Since(start)
		}
		// The retry field and the reply come at once.
		if _, err := io.ReadFull(er.r, make([]byte, len("retry: 2000\n\n"))); err != nil {
			t.Fatal(err)
		}
		if ev, err := er.next(); err != nil || ev.Name != "reply" {
			t.Fatalf("got %+v, %v; want the reply", ev, err)
		}
		// Silence: a heartbeat after each interval.
		if d := read(": heartbeat\n\n"); d != 10*time.Second {
			t.Fatalf("first heartbeat after %v, want 10s", d)
		}
		if d := read(": heartbeat\n\n"); d != 20*time.Second {
			t.Fatalf("second heartbeat after %v, want 20s", d)
		}
		// A message 4s later postpones the next heartbeat to 10s after it.
		time.Sleep(4 * time.Second)
		if _, err := hub.Publish(context.Background(), "hb", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if ev, err := er.next(); err != nil || ev.Name != "msg" {
			t.Fatalf("got %+v, %v; want the message", ev, err)
		}
		if d := read(": heartbeat\n\n"); d != 34*time.Second {
			t.Fatalf("heartbeat after the message at %v, want 34s", d)
		}
		// The client goes away: the handler ends and the session closes.
		resp.Body.Close()
		synctest.Wait()
		if n := len(hub.Topics()); n != 0 {
			t.Fatalf("got %d topics with subscribers after the client left, want 0", n)
		}
	})
}
