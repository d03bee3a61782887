package testenv

import (
	"context"
	"errors"
	"net"
	"sync"
)

// ErrRefused is the error of [Pipe.Dial] while the pipe is down.
var ErrRefused = errors.New("testenv: connection refused")

// Pipe is an in-memory network of one server, for tests in a
// testing/synctest bubble, where a loopback socket would keep the fake
// clock from advancing. It is a [net.Listener]: [Pipe.Dial] makes a
// [net.Pipe] and hands its far end to [Pipe.Accept], so that a real
// [net/http.Server] serving the Pipe and a real [net/http.Transport]
// dialing it talk through memory. [Pipe.SetDown] refuses new connections
// as a server that is down, and [Pipe.Cut] closes the current ones.
//
// A Pipe is safe for concurrent use. It starts no goroutines; closing it
// ends pending and future Accept and Dial calls, not the connections made.
type Pipe struct {
	accept chan net.Conn
	closed chan struct{}
	once   sync.Once

	mu    sync.Mutex // guards down and conns
	down  bool
	conns map[*PipeConn]struct{} // ends not yet closed
}

// NewPipe returns an open Pipe that accepts connections.
func NewPipe() *Pipe {
	return &Pipe{
		accept: make(chan net.Conn),
		closed: make(chan struct{}),
		conns:  make(map[*PipeConn]struct{}),
	}
}

// Accept waits for a [Pipe.Dial] and returns the server's end of its
// connection, a [*PipeConn]. After [Pipe.Close] it returns [net.ErrClosed].
func (p *Pipe) Accept() (net.Conn, error) {
	select {
	case c := <-p.accept:
		return c, nil
	case <-p.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting: pending and future Accept and Dial calls fail.
// Connections already made stay open. Close is idempotent and returns nil.
func (p *Pipe) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// Addr returns the address of the pipe, whose network and string are
// "pipe".
func (p *Pipe) Addr() net.Addr { return pipeAddr{} }

// Dial connects to the server of the pipe and returns the client's end, a
// [*PipeConn]. It blocks until the server accepts, ctx is done (returning
// its error) or the pipe is closed ([net.ErrClosed]). While the pipe is
// down it fails at once with [ErrRefused]. network and address are ignored:
// Dial has the signature of [net/http.Transport.DialContext].
func (p *Pipe) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	c, s := net.Pipe()
	client := &PipeConn{Conn: c, pipe: p, closed: make(chan struct{})}
	server := &PipeConn{Conn: s, pipe: p, closed: make(chan struct{})}
	client.peer, server.peer = server, client
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		return nil, ErrRefused
	}
	p.conns[client] = struct{}{}
	p.conns[server] = struct{}{}
	p.mu.Unlock()
	select {
	case p.accept <- server:
		return client, nil
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, ctx.Err()
	case <-p.closed:
		client.Close()
		server.Close()
		return nil, net.ErrClosed
	}
}

// SetDown sets whether [Pipe.Dial] refuses new connections. It leaves the
// current ones alone; see [Pipe.Cut].
func (p *Pipe) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// Cut closes both ends of every current connection, including one that a
// Dial is handing to Accept.
func (p *Pipe) Cut() {
	p.mu.Lock()
	conns := make([]*PipeConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// PipeConn is one end of a connection made by [Pipe.Dial]: a [net.Pipe]
// end that reports when it is closed. It is safe for concurrent use as a
// [net.Conn].
type PipeConn struct {
	net.Conn
	pipe   *Pipe
	peer   *PipeConn
	once   sync.Once
	closed chan struct{}
}

// Close closes this end: reads and writes at the other end fail with
// io.EOF or io.ErrClosedPipe, and [PipeConn.Closed] is closed. It is
// idempotent.
func (c *PipeConn) Close() error {
	var err error
	c.once.Do(func() {
		c.pipe.mu.Lock()
		delete(c.pipe.conns, c)
		c.pipe.mu.Unlock()
		err = c.Conn.Close()
		close(c.closed)
	})
	return err
}

// Closed returns a channel that is closed once this end has been closed.
func (c *PipeConn) Closed() <-chan struct{} { return c.closed }

// Peer returns the other end of the connection.
func (c *PipeConn) Peer() *PipeConn { return c.peer }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
