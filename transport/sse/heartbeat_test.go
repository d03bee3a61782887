package sse_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
)

// pipeListener hands the server the far ends of in-memory connections, so
// that a real http.Server and http.Client run inside a synctest bubble
// (whose fake clock needs every goroutine blocked on something it sees).
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, err := fanout.NewHub(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		l := newPipeListener()
		srv := &http.Server{Handler: sse.New(hub, &sse.Options{HeartbeatInterval: 10 * time.Second})}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() {
			srv.Close()
			<-served
		}()
		tr := &http.Transport{DialContext: l.dial}
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
