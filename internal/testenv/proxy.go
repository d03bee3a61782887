package testenv

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards loopback TCP connections to a target address, so that a
// test can break the network between a client and a server and restore it:
// [Proxy.Cut] closes every connection, [Proxy.Refuse] closes new ones at
// once as a server that is down, [Proxy.Stall] silences the current ones
// without closing them.
//
// A Proxy is safe for concurrent use. It is closed by the cleanup of the test
// that made it, which returns after all of its goroutines have ended.
type Proxy struct {
	ln     net.Listener
	cancel context.CancelFunc // cancels dials to the target
	wg     sync.WaitGroup     // the accept loop, the dials and the pipes

	mu       sync.Mutex // guards the fields below
	target   string
	refuse   bool
	cuts     uint64 // how many times Cut ran
	accepted int
	links    map[*link]struct{}
}

// link is one forwarded connection.
type link struct {
	client, server net.Conn
	stalled        atomic.Bool // drop whatever either end sends
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		l.client.Close()
		l.server.Close()
	})
}

// NewProxy starts a proxy on 127.0.0.1 that forwards each connection to
// target (host:port). The proxy is closed when the test and its subtests
// end: it stops listening, closes every connection and waits for its
// goroutines.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{ln: ln, cancel: cancel, target: target, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept(ctx)
	t.Cleanup(p.close)
	return p
}

// Addr returns the host:port that clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every current connection, at both ends. A connection being
// set up while Cut runs is closed too. New connections are forwarded
// unless the proxy refuses them.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cuts++
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Refuse makes the proxy close each new connection as soon as it accepts
// it, until [Proxy.Resume]. Current connections stay: call [Proxy.Cut] too
// to take the server down.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	p.refuse = true
	p.mu.Unlock()
}

// Resume forwards new connections again after [Proxy.Refuse].
func (p *Proxy) Resume() {
	p.mu.Lock()
	p.refuse = false
	p.mu.Unlock()
}

// Stall makes every current connection silent, as a network that stops
// carrying packets without closing anything: the proxy drops whatever
// either end sends from then on. A close by either end still closes the
// other. New connections are forwarded.
func (p *Proxy) Stall() {
	p.mu.Lock()
	for l := range p.links {
		l.stalled.Store(true)
	}
	p.mu.Unlock()
}

// SetTarget makes new connections go to target; current ones stay where
// they are.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Accepted returns how many connections the proxy has accepted, refused
// ones included.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *Proxy) accept(ctx context.Context) {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		refuse, target, cuts := p.refuse, p.target, p.cuts
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.forward(ctx, c, target, cuts)
	}
}

// forward connects c to target and copies both ways until either end
// closes, unless the proxy refused or cut connections since c was accepted
// (cuts is the count of cuts then).
func (p *Proxy) forward(ctx context.Context, c net.Conn, target string, cuts uint64) {
	defer p.wg.Done()
	var d net.Dialer
	s, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		c.Close()
		return
	}
	l := &link{client: c, server: s}
	p.mu.Lock()
	if p.refuse || p.cuts != cuts {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pipe(l, s, c)
	}()
	p.pipe(l, c, s)
}

// pipe copies src to dst, dropping the data while the link is stalled,
// until either fails; then it closes the link.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.stalled.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	l.close()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.cancel()
	p.Refuse()
	p.Cut()
	p.wg.Wait()
}
