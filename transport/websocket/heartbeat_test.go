package websocket_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
	fws "github.com/gofanout/fanout/transport/websocket"
)

// pipeDial connects a client to h, served by a real http.Server over an
// in-memory pipe, so that a test inside a synctest bubble runs the real
// handler and client with fake time. done is closed when the server closes
// the connection. The test closes h; its cleanup closes the server.
func pipeDial(t *testing.T, h *fws.Handler, opts *websocket.DialOptions) (c *websocket.Conn, done <-chan struct{}) {
	t.Helper()
	p := testenv.NewPipe()
	srv := &http.Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(p) }()
	server := make(chan *testenv.PipeConn, 1)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := p.Dial(ctx, network, addr)
		if err == nil {
			server <- c.(*testenv.PipeConn).Peer()
		}
		return c, err
	}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		<-served
	})
	var o websocket.DialOptions
	if opts != nil {
		o = *opts
	}
	o.HTTPClient = &http.Client{Transport: tr}
	c, _, err := websocket.Dial(context.Background(), "ws://pipe/", &o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c, (<-server).Closed()
}

func TestHeartbeatTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		events := make(chan fanout.Event, 16)
		hub, err := fanout.NewHub(&fanout.HubOptions{Observer: closeObserver(events)})
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		h := fws.New(hub, &fws.Options{PingInterval: 10 * time.Second, PingTimeout: 5 * time.Second})
		defer h.Close()
		c, done := pipeDial(t, h, nil)
		defer c.CloseNow()
		start := time.Now()

		// The client never reads, so it never answers a ping.
		<-done
		if got, want := time.Since(start), 15*time.Second; got != want {
			t.Fatalf("connection ended after %v, want %v (ping interval + timeout)", got, want)
		}
		if e := <-events; e.Code != fanout.CloseTimeout {
			t.Fatalf("got session close code %v, want %v", e.Code, fanout.CloseTimeout)
		}
	})
}

func TestHeartbeatAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, err := fanout.NewHub(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		h := fws.New(hub, &fws.Options{PingInterval: 10 * time.Second, PingTimeout: 5 * time.Second})
		defer h.Close()
		var pings atomic.Int64
		c, done := pipeDial(t, h, &websocket.DialOptions{
			OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
		})
		// The client reads, and so answers pings.
		readErr := make(chan error, 1)
		go func() {
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					readErr <- err
					return
				}
			}
		}()
		time.Sleep(5*time.Minute + time.Second)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("the server closed a connection that answers pings")
		default:
		}
		if got := pings.Load(); got != 30 {
			t.Fatalf("got %d pings in 5 minutes, want 30", got)
		}
		c.Close(websocket.StatusNormalClosure, "")
		<-done
		if err := <-readErr; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Fatalf("client read: got %v, want normal closure", err)
		}
	})
}

func TestPingsDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, err := fanout.NewHub(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		h := fws.New(hub, &fws.Options{PingInterval: -1})
		defer h.Close()
		c, done := pipeDial(t, h, nil)
		// A client that never reads stays connected: nothing is sent to it.
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("the server closed a connection without pings")
		default:
		}
		c.CloseNow()
		<-done
	})
}

func TestHeartbeatPongMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, err := fanout.NewHub(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		h := fws.New(hub, &fws.Options{PingInterval: 10 * time.Second, PingTimeout: 5 * time.Second})
		defer h.Close()
		// The client reads, but does not answer pings.
		c, done := pipeDial(t, h, &websocket.DialOptions{
			OnPingReceived: func(context.Context, []byte) bool { return false },
		})
		start := time.Now()
		_, msg, err := c.Read(context.Background())
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if got, want := time.Since(start), 15*time.Second; got != want {
			t.Fatalf("close frame after %v, want %v", got, want)
		}
		if want := `{"type":"close","code":4006,"reason":"no answer to ping","reconnect":true}`; string(msg) != want {
			t.Fatalf("got %s, want %s", msg, want)
		}
		_, _, err = c.Read(context.Background())
		if code := websocket.CloseStatus(err); code != websocket.StatusCode(fanout.CloseTimeout) {
			t.Fatalf("got close %v (%v), want %d", code, err, fanout.CloseTimeout)
		}
		<-done
	})
}

func TestWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		events := make(chan fanout.Event, 16)
		hub, err := fanout.NewHub(&fanout.HubOptions{Observer: closeObserver(events)})
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		h := fws.New(hub, &fws.Options{WriteTimeout: 3 * time.Second})
		defer h.Close()
		c, done := pipeDial(t, h, nil)
		defer c.CloseNow()
		// The client sends a command but never reads its reply.
		if err := c.Write(context.Background(), websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		<-done
		// The deadline is the write timeout rounded up by at most a
		// sixteenth of it.
		if got, want := time.Since(start), 3*time.Second; got < want || got > want+want/16 {
			t.Fatalf("connection ended after %v, want %v to %v (the write timeout)", got, want, want+want/16)
		}
		if e := <-events; e.Code != fanout.CloseSlowConsumer {
			t.Fatalf("got session close code %v, want %v", e.Code, fanout.CloseSlowConsumer)
		}
	})
}
