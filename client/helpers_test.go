package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	fws "github.com/gofanout/fanout/transport/websocket"
)

// server is a hub served over WebSocket on a loopback httptest server.
type server struct {
	hub  *fanout.Hub
	addr string // host:port
}

// newServer starts a hub with options ho and serves it over WebSocket. The
// cleanup closes the hub and waits for every connection's handler.
func newServer(t testing.TB, ho *fanout.HubOptions) *server {
	t.Helper()
	hub, err := fanout.NewHub(ho)
	if err != nil {
		t.Fatal(err)
	}
	h := fws.New(hub, nil)
	var (
		mu     sync.Mutex // guards closed and the Add of handlers
		closed bool
		wg     sync.WaitGroup // running handlers
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if closed {
			mu.Unlock()
			http.Error(w, "closed", http.StatusServiceUnavailable)
			return
		}
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		mu.Unlock()
		hub.Close()
		h.Close()
		wg.Wait()
		srv.Close()
	})
	return &server{hub: hub, addr: strings.TrimPrefix(srv.URL, "http://")}
}

func (s *server) publish(t testing.TB, topic, data string, opts ...fanout.PublishOption) fanout.Position {
	t.Helper()
	p, err := s.hub.Publish(context.Background(), topic, []byte(data), opts...)
	if err != nil {
		t.Errorf("publish: %v", err)
	}
	return p
}

// proxy is a loopback TCP proxy in front of servers, which a test can cut
// (close every connection through it), take down (close every new
// connection at once) and point at another server.
type proxy struct {
	ln net.Listener
	wg sync.WaitGroup // the accept loop and the pipes

	mu     sync.Mutex // guards target, down, conns, frozen and accepted
	target string
	down   bool
	conns  map[net.Conn]struct{}
	frozen map[net.Conn]bool // connections whose data is dropped
	// accepted counts the connections taken, cut or refused.
	accepted int
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{}), frozen: make(map[net.Conn]bool)}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(func() {
		ln.Close()
		p.setDown(true)
		p.cut()
		p.wg.Wait()
	})
	return p
}

// url is the WebSocket URL through the proxy.
func (p *proxy) url() string { return "ws://" + p.ln.Addr().String() + "/" }

func (p *proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		down, target := p.down, p.target
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down { // taken down meanwhile
			p.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		frozen := p.frozen[src]
		p.mu.Unlock()
		if n > 0 && !frozen {
			if _, err := dst.Write(buf[:n]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	delete(p.frozen, dst)
	delete(p.frozen, src)
	p.mu.Unlock()
}

// cut closes every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// freeze silently drops whatever the current connections carry, as a
// network that stalls without closing anything.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		p.frozen[c] = true
	}
}

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

func (p *proxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// statuses records a client's statuses.
type statuses struct {
	ch chan client.Status
}

func newStatuses() *statuses { return &statuses{ch: make(chan client.Status, 4096)} }

func (s *statuses) record(st client.Status) {
	select {
	case s.ch <- st:
	default:
		panic("statuses: the test does not read them")
	}
}

// waitFor returns the next status of kind k, failing the test after a
// while.
func (s *statuses) waitFor(t testing.TB, k client.StatusKind) client.Status {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case st := <-s.ch:
			if st.Kind == k {
				return st
			}
		case <-timeout:
			t.Fatalf("no %v status in 10s", k)
		}
	}
}

// options returns client options suited to tests: fast backoff, an HTTP
// client whose idle connections the cleanup closes, statuses recorded.
func options(t testing.TB, st *statuses) *client.Options {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	o := &client.Options{
		HTTPClient: &http.Client{Transport: tr},
		BackoffMin: time.Millisecond,
		BackoffMax: 10 * time.Millisecond,
	}
	if st != nil {
		o.OnStatus = st.record
	}
	return o
}

func dial(t testing.TB, url string, o *client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func subscribe(t testing.TB, c *client.Client, topic string, o *client.SubscribeOptions) *client.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Subscribe(ctx, topic, o)
	if err != nil {
		t.Fatalf("subscribe %q: %v", topic, err)
	}
	return s
}

// next returns the subscription's next event, failing the test after a
// while.
func next(t testing.TB, s *client.Subscription) client.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("next event of %q: %v", s.Topic(), err)
	}
	return ev
}

// nextErr waits for the subscription's end and returns its error.
func nextErr(t testing.TB, s *client.Subscription) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := s.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("subscription %q did not end", s.Topic())
		}
		if err != nil {
			return err
		}
	}
}

func allowPublish(context.Context, fanout.Principal, string, fanout.Action) error { return nil }
