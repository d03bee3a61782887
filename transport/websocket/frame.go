package websocket

import (
	"encoding/binary"
	"net"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// Messages from the writer go out framed by this package rather than by the
// WebSocket library, when no extension (compression) is in use: a server's
// text frame is a header of 2 to 10 bytes and the payload as is. The frames
// of a batch are encoded once, straight into the buffer that one system call
// writes, with no copy through the library's write buffer and none of its
// per-message locking. The library still writes the control frames (pings,
// pongs, close), each whole, through the same corkConn, whose lock keeps
// frames from interleaving.

// maxHeader is the longest header of a server's frame: unmasked, with a
// 64-bit length.
const maxHeader = 10

// appendHeaderSpace reserves room for a frame header at the end of b.
func appendHeaderSpace(b []byte) []byte { return append(b, make([]byte, maxHeader)...) }

// putHeader writes the header of a final text frame whose payload is
// b[at+maxHeader:], into the room reserved at b[at:], and returns where the
// frame starts: the header is right-aligned against its payload.
func putHeader(b []byte, at int) int {
	n := len(b) - at - maxHeader
	var h [maxHeader]byte
	h[0] = 0x80 | 0x1 // FIN, text
	hl := 2
	switch {
	case n > 0xffff:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
		hl = 10
	case n > 125:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		hl = 4
	default:
		h[1] = byte(n)
	}
	start := at + maxHeader - hl
	copy(b[start:], h[:hl])
	return start
}

// frameTracker follows the frame boundaries in the bytes the library
// writes, to see its close frame go out: after it, the protocol allows no
// more messages.
type frameTracker struct {
	hdr  [maxHeader + 4]byte
	nh   int   // header bytes collected
	rem  int64 // payload bytes of the current frame still to come
	shut bool  // a close frame was written
}

// scan follows p, the next bytes the library writes.
func (t *frameTracker) scan(p []byte) {
	for len(p) > 0 {
		if t.rem > 0 {
			k := min(t.rem, int64(len(p)))
			t.rem -= k
			p = p[k:]
			continue
		}
		t.hdr[t.nh] = p[0]
		t.nh++
		p = p[1:]
		if t.nh < 2 {
			continue
		}
		need := 2
		switch t.hdr[1] & 0x7f {
		case 126:
			need += 2
		case 127:
			need += 8
		}
		if t.hdr[1]&0x80 != 0 {
			need += 4 // masked: not a server's frame, but stay in step
		}
		if t.nh < need {
			continue
		}
		switch l := t.hdr[1] & 0x7f; l {
		case 126:
			t.rem = int64(binary.BigEndian.Uint16(t.hdr[2:]))
		case 127:
			t.rem = int64(binary.BigEndian.Uint64(t.hdr[2:]) & (1<<63 - 1))
		default:
			t.rem = int64(l)
		}
		if t.hdr[0]&0x0f == 0x8 {
			t.shut = true
		}
		t.nh = 0
	}
}

// writeFramed writes b, complete frames, in one write bounded by deadline,
// unless the library has written its close frame.
func (c *corkConn) writeFramed(b []byte, deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lib.shut {
		return net.ErrClosed
	}
	if err := c.setDeadline(deadline); err != nil {
		return err
	}
	_, err := c.Conn.Write(b)
	return err
}

// writeFramed implements WriteFrames without the library: one text message
// per maxMessage bytes of frames, all in one system call.
func (c *conn) writeFramed(frames []fanout.Frame, deadline time.Time) error {
	p := bufPool.Get().(*[]byte)
	b := appendHeaderSpace((*p)[:0])
	at := 0 // the room for the current message's header
	for i, f := range frames {
		if i > 0 {
			if len(b)-at-maxHeader >= maxMessage {
				// A large batch goes on in another message. This one is
				// longer than 0xffff bytes: its header fills its room.
				putHeader(b, at)
				at = len(b)
				b = appendHeaderSpace(b)
			} else {
				b = append(b, '\n')
			}
		}
		b = wire.AppendFrame(b, f)
	}
	out := b
	if start := putHeader(b, at); at == 0 {
		out = b[start:] // the first message: the output starts at its header
	} else if start > at {
		// The last message is shorter: it moves up to the one before.
		b = b[:at+copy(b[at:], b[start:])]
		out = b
	}
	err := c.nc.writeFramed(out, deadline)
	putBuf(p, b)
	return err
}
