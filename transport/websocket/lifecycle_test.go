package websocket_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
	fws "github.com/gofanout/fanout/transport/websocket"
)

// maskedText returns a masked text frame carrying p.
func maskedText(p string) []byte {
	key := [4]byte{1, 2, 3, 4}
	b := []byte{0x81}
	if n := len(p); n < 126 {
		b = append(b, 0x80|byte(n))
	} else {
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	b = append(b, key[:]...)
	for i := range len(p) {
		b = append(b, p[i]^key[i&3])
	}
	return b
}

// TestCommandsWithHandshake sends commands in the same write as the
// upgrade request, so that net/http may have read them before the upgrade:
// none may be lost, whether it fits in the connection's read buffer or not
// (the publish is refused, but its reply shows it was read whole).
func TestCommandsWithHandshake(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	addr := s.srv.Listener.Addr().String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a lost command fails, not hangs
	long := strings.Repeat("x", 2000)
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	b := append([]byte(req), maskedText(`{"type":"ping","id":"a"}`)...)
	b = append(b, maskedText(`{"type":"publish","id":"b","topic":"t","data":"`+long+`"}`)...)
	b = append(b, maskedText(`{"type":"ping","id":"c"}`)...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	rc := &rawConn{c: c, r: bufio.NewReader(c)}
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got status %d, want 101", resp.StatusCode)
	}
	var ids []string
	for len(ids) < 3 {
		if _, err := rc.next(); err != nil {
			t.Fatalf("after replies %q: %v", ids, err)
		}
		fs, err := wire.ParseFrames(nil, rc.msg, true)
		if err != nil {
			t.Fatalf("message %q: %v", rc.msg, err)
		}
		for _, f := range fs {
			if f.Type != "reply" {
				t.Fatalf("got frame %+v, want a reply", f)
			}
			ids = append(ids, f.ID)
		}
	}
	if got, want := strings.Join(ids, ","), "a,b,c"; got != want {
		t.Fatalf("got replies to %s, want %s", got, want)
	}
}

// TestHandlerClose checks that Handler.Close closes the connections with
// CloseShutdown, waits for them, and refuses new ones.
func TestHandlerClose(t *testing.T) {
	t.Parallel()
	hub, err := fanout.NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	h := fws.New(hub, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				closed <- err
				return
			}
		}
	}()
	if err := h.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-closed; websocket.CloseStatus(err) != websocket.StatusCode(fanout.CloseShutdown) {
		t.Fatalf("client read: got %v, want close code %d", err, fanout.CloseShutdown)
	}
	_, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Close: got %v (%v), want status 503", resp, err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}
