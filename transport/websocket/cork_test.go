package websocket

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// TestCorkConn checks that writes collect while corked and go out in order,
// in one write, with the flush; that writes pass through otherwise; and that
// a flush the peer does not take in time fails with a deadline error.
func TestCorkConn(t *testing.T) {
	synctest.Test(t, testCorkConn)
}

func testCorkConn(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &corkConn{Conn: a}
	defer c.Close()

	read := func(n int) string {
		t.Helper()
		p := make([]byte, n)
		if _, err := io.ReadFull(b, p); err != nil {
			t.Fatal(err)
		}
		return string(p)
	}

	c.cork()
	written := make(chan struct{})
	go func() {
		// Another goroutine's write (a ping) collects too.
		c.Write([]byte("two,"))
		close(written)
	}()
	c.Write([]byte("one,"))
	<-written
	c.Write([]byte("three"))
	if got := c.corked(); got != len("one,two,three") {
		t.Fatalf("corked %d bytes, want %d", got, len("one,two,three"))
	}
	flushed := make(chan error, 1)
	go func() { flushed <- c.flush(time.Now().Add(time.Second)) }()
	// net.Pipe hands over each write whole: one read of the flush's size
	// gets all of it.
	p := make([]byte, 64)
	n, err := b.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(p[:n]); got != "one,two,three" && got != "two,one,three" {
		t.Fatalf("one read got %q, want the three writes", got)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if c.corked() != 0 {
		t.Fatal("still corked after flush")
	}

	// Uncorked, a write passes through, and the flush's deadline, long
	// past, does not apply to it.
	time.Sleep(time.Minute)
	go c.Write([]byte("ping"))
	if got := read(4); got != "ping" {
		t.Fatalf("got %q, want ping", got)
	}

	// Nobody reads: the flush fails when its deadline passes.
	c.cork()
	c.Write([]byte("stuck"))
	start := time.Now()
	if err := c.flush(start.Add(10 * time.Second)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("flush to a stalled peer: got %v, want %v", err, os.ErrDeadlineExceeded)
	}
	if got := time.Since(start); got != 10*time.Second {
		t.Fatalf("flush failed after %v, want 10s", got)
	}
}
