package testenv_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout/internal/testenv"
)

// echoServer answers each line with prefix and the line. When a
// connection ends, the number of bytes it received goes to received.
type echoServer struct {
	ln       net.Listener
	received chan int
}

func newEchoServer(t *testing.T, prefix string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, received: make(chan int, 16)}
	var wg sync.WaitGroup // the accept loop and the connections
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				n := 0
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					n += len(line)
					if err != nil {
						break
					}
					if _, err := io.WriteString(c, prefix+line); err != nil {
						break
					}
				}
				select {
				case e.received <- n:
				default:
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return e
}

type conn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, Conn: c, r: bufio.NewReader(c)}
}

// echo sends line and returns the answer, or the error that ended the
// connection.
func (c *conn) echo(line string) (string, error) {
	c.t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return s[:len(s)-1], nil
}

func (c *conn) wantEcho(line, want string) {
	c.t.Helper()
	got, err := c.echo(line)
	if err != nil || got != want {
		c.t.Fatalf("echo %q: got %q, %v; want %q", line, got, err, want)
	}
}

// wantClosed checks that the proxy closed the connection.
func (c *conn) wantClosed() {
	c.t.Helper()
	if _, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		c.t.Fatalf("got %v, want the connection closed", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func TestProxyForwards(t *testing.T) {
	t.Parallel()
	e := newEchoServer(t, "a:")
	px := testenv.NewProxy(t, e.ln.Addr().String())
	c := dial(t, px.Addr())
	c.wantEcho("1", "a:1")
	c.wantEcho("2", "a:2")
	if got := px.Accepted(); got != 1 {
		t.Errorf("got %d accepted, want 1", got)
	}
}

func TestProxyCut(t *testing.T) {
	t.Parallel()
	e := newEchoServer(t, "a:")
	px := testenv.NewProxy(t, e.ln.Addr().String())
	c1, c2 := dial(t, px.Addr()), dial(t, px.Addr())
	c1.wantEcho("1", "a:1")
	c2.wantEcho("2", "a:2")
	px.Cut()
	c1.wantClosed()
	c2.wantClosed()
	for range 2 {
		if n := <-e.received; n != 2 {
			t.Errorf("server got %d bytes, want 2: the cut closes the server's end too", n)
		}
	}
	dial(t, px.Addr()).wantEcho("3", "a:3")
}

func TestProxyRefuseResume(t *testing.T) {
	t.Parallel()
	e := newEchoServer(t, "a:")
	px := testenv.NewProxy(t, e.ln.Addr().String())
	before := dial(t, px.Addr())
	before.wantEcho("1", "a:1")
	px.Refuse()
	dial(t, px.Addr()).wantClosed()
	dial(t, px.Addr()).wantClosed()
	before.wantEcho("2", "a:2") // Refuse alone cuts nothing
	if got := px.Accepted(); got != 3 {
		t.Errorf("got %d accepted, want 3: refused connections count", got)
	}
	px.Resume()
	dial(t, px.Addr()).wantEcho("3", "a:3")
}

func TestProxyStall(t *testing.T) {
	t.Parallel()
	e := newEchoServer(t, "a:")
	px := testenv.NewProxy(t, e.ln.Addr().String())
	c := dial(t, px.Addr())
	c.wantEcho("1", "a:1")
	px.Stall()
	if _, err := io.WriteString(c, "lost\n"); err != nil {
		t.Fatal(err)
	}
	fresh := dial(t, px.Addr())
	fresh.wantEcho("2", "a:2") // new connections work
	fresh.Close()
	if n := <-e.received; n != 2 {
		t.Errorf("new connection: server got %d bytes, want 2", n)
	}
	c.Close() // the close still reaches the server
	if n := <-e.received; n != 2 {
		t.Errorf("stalled connection: server got %d bytes, want 2 (the line sent during the stall dropped)", n)
	}
}

func TestProxySetTarget(t *testing.T) {
	t.Parallel()
	a, b := newEchoServer(t, "a:"), newEchoServer(t, "b:")
	px := testenv.NewProxy(t, a.ln.Addr().String())
	ca := dial(t, px.Addr())
	ca.wantEcho("1", "a:1")
	px.SetTarget(b.ln.Addr().String())
	dial(t, px.Addr()).wantEcho("2", "b:2")
	ca.wantEcho("3", "a:3") // current connections stay
}

func TestServerWaitsForHandlers(t *testing.T) {
	t.Parallel()
	var (
		stopped  = make(chan struct{})
		started  = make(chan struct{})
		finished atomic.Bool
	)
	t.Run("serve", func(t *testing.T) {
		// Cleanups run last first: the server's, then the wait for the
		// request, then closing the client's idle connections.
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		errc := make(chan error, 1)
		t.Cleanup(func() {
			if err := <-errc; err != nil {
				t.Errorf("get: %v", err)
			}
		})
		srv := testenv.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-stopped
			finished.Store(true)
		}), &testenv.ServerOptions{Stop: func() { close(stopped) }})
		go func() {
			res, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if err == nil {
				res.Body.Close()
			}
			errc <- err
		}()
		<-started
	})
	if !finished.Load() {
		t.Error("the cleanup returned before the handler")
	}
}
