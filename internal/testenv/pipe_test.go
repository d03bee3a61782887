package testenv_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout/internal/testenv"
)

// TestPipeHTTP serves HTTP over a Pipe in a synctest bubble, where the
// fake clock only advances if the connections are in memory.
func TestPipeHTTP(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := testenv.NewPipe()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Hour)
			io.WriteString(w, "late")
		})}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(p) }()
		tr := &http.Transport{DialContext: p.Dial}
		start := time.Now()
		resp, err := (&http.Client{Transport: tr}).Get("http://pipe/")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "late" {
			t.Errorf("got %q, %v, want %q", b, err, "late")
		}
		if got := time.Since(start); got != time.Hour {
			t.Errorf("got a response after %v, want %v", got, time.Hour)
		}
		tr.CloseIdleConnections()
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("got Serve error %v, want %v", err, http.ErrServerClosed)
		}
	})
}

func TestPipeDownAndCut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := testenv.NewPipe()
	defer p.Close()
	if got := p.Addr().String(); got != "pipe" {
		t.Errorf("got address %q, want %q", got, "pipe")
	}

	p.SetDown(true)
	if _, err := p.Dial(ctx, "tcp", "x"); !errors.Is(err, testenv.ErrRefused) {
		t.Fatalf("dial while down: got %v, want %v", err, testenv.ErrRefused)
	}
	p.SetDown(false)

	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := p.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- s
	}()
	c, err := p.Dial(ctx, "tcp", "x")
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if got := s.(*testenv.PipeConn); got != c.(*testenv.PipeConn).Peer() || got.Peer() != c {
		t.Fatalf("got an accepted end %p, want the peer %p of the dialed one", got, c.(*testenv.PipeConn).Peer())
	}
	go c.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(s, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("got %q, %v, want %q", buf, err, "x")
	}

	// The pipe being down leaves current connections alone.
	p.SetDown(true)
	select {
	case <-s.(*testenv.PipeConn).Closed():
		t.Fatal("SetDown closed a connection")
	default:
	}
	p.Cut()
	for _, e := range []net.Conn{c, s} {
		<-e.(*testenv.PipeConn).Closed()
		if _, err := e.Read(buf); !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("read after Cut: got %v, want %v", err, io.ErrClosedPipe)
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}

func TestPipeClose(t *testing.T) {
	t.Parallel()
	p := testenv.NewPipe()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Dial(ctx, "", ""); !errors.Is(err, context.Canceled) {
		t.Errorf("dial with a canceled context: got %v, want %v", err, context.Canceled)
	}
	dialed := make(chan error, 1)
	go func() {
		_, err := p.Dial(context.Background(), "", "")
		dialed <- err
	}()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
	if err := <-dialed; !errors.Is(err, net.ErrClosed) {
		t.Errorf("pending dial: got %v, want %v", err, net.ErrClosed)
	}
	if _, err := p.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after Close: got %v, want %v", err, net.ErrClosed)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}
