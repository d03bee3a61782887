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

// deadlineCounter counts the write deadlines set on its connection.
type deadlineCounter struct {
	net.Conn
	set []time.Time
}

func (d *deadlineCounter) SetWriteDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return d.Conn.SetWriteDeadline(t)
}

// TestDeadlineSetOnce: writes of the writer that share a deadline set it
// once; a write of the library clears it, and the writer's next write sets
// it again.
func TestDeadlineSetOnce(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	dc := &deadlineCounter{Conn: a}
	c := &corkConn{Conn: dc}
	defer c.Close()
	d1 := time.Now().Add(time.Minute)
	d2 := d1.Add(time.Second)
	steps := []func() error{
		func() error { return c.writeFramed([]byte("a"), d1) },
		func() error { return c.writeFramed([]byte("b"), d1) },
		func() error { c.cork(); c.Write([]byte("c")); return c.flush(d1) },
		func() error { return c.writeFramed([]byte("d"), d2) },
		func() error { _, err := c.Write([]byte("ping")); return err },
		func() error { return c.writeFramed([]byte("e"), d2) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []time.Time{d1, d2, {}, d2}
	if len(dc.set) != len(want) {
		t.Fatalf("deadlines set: %v, want %v", dc.set, want)
	}
	for i := range want {
		if !dc.set[i].Equal(want[i]) {
			t.Fatalf("deadlines set: %v, want %v", dc.set, want)
		}
	}
}
