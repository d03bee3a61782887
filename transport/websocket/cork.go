package websocket

import (
	"net"
	"sync"
	"time"
)

// corkConn is the network connection under the WebSocket library. While its
// writer has it corked, writes collect in a buffer, and flush sends them in
// one system call: a batch goes out in one write however many WebSocket
// messages it spans and whatever the size of the library's write buffer. On
// loopback, and on busy servers, the system call costs far more than the
// copy.
//
// Writes from other goroutines (pings, pongs, close frames) collect too
// while it is corked; the library writes each frame under its own lock, so
// frames never interleave, and mu keeps the order of the bytes.
type corkConn struct {
	net.Conn

	mu       sync.Mutex
	buf      *[]byte      // the collected writes while corked; nil otherwise
	deadline time.Time    // the write deadline left on Conn by the writer, zero for none
	dropped  bool         // Close drops what was collected
	lib      frameTracker // the frames the library wrote, when the writer frames its own
}

// closeFlushTimeout bounds how long Close writes what was collected.
const closeFlushTimeout = time.Second

// Close closes the connection after writing what was collected: when the
// library closes the connection itself (a close frame after a protocol
// error or a message too large) while the writer has it corked, the close
// frame sits among the collected bytes. After drop, it closes at once.
//
// A write blocked on the network holds the lock, and only closing the
// connection ends it: Close then closes at once.
func (c *corkConn) Close() error {
	if c.mu.TryLock() {
		if b := c.buf; b != nil && len(*b) > 0 && !c.dropped {
			if c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout)) == nil {
				c.Conn.Write(*b)
			}
			*b = (*b)[:0]
		}
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

// drop makes Close close at once, without writing what was collected.
func (c *corkConn) drop() {
	c.mu.Lock()
	c.dropped = true
	c.mu.Unlock()
}

// Write writes p, or collects it while corked.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lib.scan(p)
	if c.buf != nil {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	if !c.deadline.IsZero() {
		// The library bounds its own writes by closing the connection.
		if err := c.Conn.SetWriteDeadline(time.Time{}); err != nil {
			return 0, err
		}
		c.deadline = time.Time{}
	}
	return c.Conn.Write(p)
}

// cork makes writes collect until flush.
func (c *corkConn) cork() {
	b := bufPool.Get().(*[]byte)
	c.mu.Lock()
	c.buf = b
	c.mu.Unlock()
}

// corked returns the number of bytes collected.
func (c *corkConn) corked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return 0
	}
	return len(*c.buf)
}

// flush writes what was collected, with a deadline, and uncorks c.
func (c *corkConn) flush(deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf
	if b == nil {
		return nil
	}
	c.buf = nil
	defer putBuf(b, *b)
	if len(*b) == 0 {
		return nil
	}
	// The deadline stays set for the next flush to move; a write that is
	// not a flush clears it first.
	if err := c.setDeadline(deadline); err != nil {
		return err
	}
	_, err := c.Conn.Write(*b)
	return err
}

// setDeadline sets the writer's write deadline on Conn, unless it is set
// already: consecutive writes mostly share one (see fanout's
// ConnOptions.WriteTimeout), and setting it moves a runtime timer. c.mu is
// held.
func (c *corkConn) setDeadline(d time.Time) error {
	if d.Equal(c.deadline) {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(d); err != nil {
		return err
	}
	c.deadline = d
	return nil
}
