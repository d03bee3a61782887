package websocket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// TestWriteFramed checks the messages the writer frames itself: one text
// frame per batch, or one per maxMessage bytes of a large batch, with the
// header lengths of RFC 6455 (7-bit, 16-bit and 64-bit), whose payloads are
// the batch's frames separated by line breaks, in one write.
func TestWriteFramed(t *testing.T) {
	for _, sizes := range [][]int{{10}, {100, 200}, {70 << 10}, {60 << 10, 10 << 10, 5}, {1 << 10, 64 << 10, 64 << 10, 100}} {
		a, z := net.Pipe()
		c := &conn{nc: &corkConn{Conn: a}, framed: true}
		var frames []fanout.Frame
		var want [][]byte
		for i, n := range sizes {
			m := &fanout.Message{Topic: "t", Data: []byte(`"` + strings.Repeat("x", n) + `"`), Position: fanout.Position{Seq: uint64(i + 1)}}
			frames = append(frames, fanout.Frame{Type: fanout.FrameMessage, Message: m})
			want = append(want, wire.AppendFrame(nil, frames[i]))
		}
		done := make(chan error, 1)
		go func() { done <- c.writeFramed(frames, time.Now().Add(10*time.Second)); a.Close() }()
		out, err := io.ReadAll(z)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		for len(out) > 0 {
			if out[0] != 0x81 {
				t.Fatalf("sizes %v: frame starts with %#x, want 0x81 (final text)", sizes, out[0])
			}
			n, hl := int(out[1]), 2
			switch n {
			case 126:
				n, hl = int(binary.BigEndian.Uint16(out[2:])), 4
				if n <= 125 {
					t.Fatalf("sizes %v: 16-bit length %d", sizes, n)
				}
			case 127:
				n, hl = int(binary.BigEndian.Uint64(out[2:])), 10
				if n <= 0xffff {
					t.Fatalf("sizes %v: 64-bit length %d", sizes, n)
				}
			}
			got = append(got, bytes.Split(out[hl:hl+n], []byte("\n"))...)
			out = out[hl+n:]
		}
		if len(got) != len(want) {
			t.Fatalf("sizes %v: got %d frames, want %d", sizes, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("sizes %v: frame %d differs", sizes, i)
			}
		}
	}
}

// TestFrameTracker checks that the library's frames are followed however
// its writes split them, and that after its close frame no message goes
// out.
func TestFrameTracker(t *testing.T) {
	frame := func(op byte, n int) []byte {
		b := []byte{0x80 | op}
		switch {
		case n > 0xffff:
			b = append(b, 127)
			b = binary.BigEndian.AppendUint64(b, uint64(n))
		case n > 125:
			b = append(b, 126)
			b = binary.BigEndian.AppendUint16(b, uint16(n))
		default:
			b = append(b, byte(n))
		}
		// A payload that looks like close frames, to catch a tracker out
		// of step.
		return append(b, bytes.Repeat([]byte{0x88}, n)...)
	}
	stream := append(append(append(frame(0x9, 4), frame(0xA, 125)...), frame(0xA, 300)...), frame(0x1, 70000)...)
	for _, step := range []int{1, 3, 7, len(stream)} {
		var tr frameTracker
		for p := stream; len(p) > 0; {
			k := min(step, len(p))
			tr.scan(p[:k])
			p = p[k:]
		}
		if tr.shut || tr.rem != 0 || tr.nh != 0 {
			t.Fatalf("step %d: got %+v after frames without a close", step, tr)
		}
		close := frame(0x8, 2)
		tr.scan(close[:1])
		tr.scan(close[1:])
		if !tr.shut {
			t.Fatalf("step %d: the close frame was not seen", step)
		}
	}

	a, z := net.Pipe()
	defer z.Close()
	c := &corkConn{Conn: a}
	go io.Copy(io.Discard, z)
	if _, err := c.Write(frame(0x8, 2)); err != nil {
		t.Fatal(err)
	}
	if err := c.writeFramed([]byte{0x81, 0}, time.Now().Add(time.Second)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a message after the library's close frame: got %v, want net.ErrClosed", err)
	}
	c.Close()
}
