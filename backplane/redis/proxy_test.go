package redis_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy forwards loopback TCP connections to the real Redis, so that a test
// can cut a node off Redis, or make its connections go silent, and restore
// it.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and the pipes

	mu    sync.Mutex // guards pairs and cut
	pairs map[*pair]struct{}
	cut   bool // new connections are closed at once
}

// pair is one forwarded connection.
type pair struct {
	client, server net.Conn
	stalled        atomic.Bool // forward nothing more, but keep both open
	once           sync.Once
	done           chan struct{} // closed when the pair is closed
}

func (p *pair) close() {
	p.once.Do(func() {
		close(p.done)
		p.client.Close()
		p.server.Close()
	})
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, pairs: make(map[*pair]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{client: c, server: s, done: make(chan struct{})}
		p.mu.Lock()
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pr, s, c)
		go p.pipe(pr, c, s)
	}
}

// pipe copies src to dst until either fails or the pair stalls.
func (p *proxy) pipe(pr *pair, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if pr.stalled.Load() {
				<-pr.done // a black hole: read nothing more, write nothing
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	pr.close()
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

// setCut closes every connection and refuses new ones (true), or accepts
// them again (false).
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	p.cut = cut
	var pairs []*pair
	if cut {
		for pr := range p.pairs {
			pairs = append(pairs, pr)
		}
	}
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.close()
	}
}

// stall makes every current connection silent: nothing more is forwarded
// on them, yet they stay open. New connections work.
func (p *proxy) stall() {
	p.mu.Lock()
	for pr := range p.pairs {
		pr.stalled.Store(true)
	}
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.ln.Close()
	p.setCut(true)
	p.wg.Wait()
}
