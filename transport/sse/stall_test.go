package sse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
)

// stallObserver records the hub's session close codes and subscriptions.
type stallObserver struct {
	closes     closes
	subscribed chan struct{}
}

func newStallObserver() stallObserver {
	return stallObserver{closes: make(closes, 16), subscribed: make(chan struct{}, 16)}
}

func (o stallObserver) Observe(e fanout.Event) {
	o.closes.Observe(e)
	if e.Type == fanout.EventSubscribe {
		o.subscribed <- struct{}{}
	}
}

// stall opens a stream of topic that never reads: over HTTP/1.1 a raw TCP
// connection with a small receive buffer, over HTTP/2 a response whose
// body is left alone.
func stall(t *testing.T, ctx context.Context, tr *transport, ev stallObserver, h2 bool, topic string) {
	t.Helper()
	defer func() {
		select {
		case <-ev.subscribed:
		case <-ctx.Done():
			t.Fatal("the stalled stream never subscribed")
		}
	}()
	if h2 {
		resp := tr.get(t, ctx, tr.url+"/?topic="+topic, nil)
		_ = resp // never read
		return
	}
	nc, err := net.Dial("tcp", strings.TrimPrefix(tr.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := fmt.Fprintf(nc, "GET /?topic=%s HTTP/1.1\r\nHost: test\r\n\r\n", topic); err != nil {
		t.Fatal(err)
	}
}

// flood publishes to topic until the hub reports a session close, and
// returns it.
func flood(t *testing.T, ctx context.Context, hub *fanout.Hub, topic string, ev closes) fanout.CloseCode {
	t.Helper()
	payload := []byte(`"` + strings.Repeat("x", 16<<10) + `"`)
	for range 4000 { // 64 MB: far more than any socket and stream window hold
		select {
		case e := <-ev:
			return e
		default:
		}
		if _, err := hub.Publish(ctx, topic, payload); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case e := <-ev:
		return e
	case <-ctx.Done():
		t.Fatal("the stalled stream was never closed")
	}
	return 0
}

// TestStalledClientClosed checks that a client that stops reading is closed
// as a slow consumer once a write has waited WriteTimeout, as on WebSocket,
// and that its stream ends.
func TestStalledClientClosed(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP1", true: "HTTP2"}[h2], func(t *testing.T) {
			t.Parallel()
			ev := newStallObserver()
			hub := newHub(t, &fanout.HubOptions{
				Observer:      ev,
				WriteTimeout:  200 * time.Millisecond,
				QueueMessages: 1 << 20,
				QueueBytes:    1 << 30, // so that only the write deadline can close it
			})
			tr := newTransport(t, sse.New(hub, nil), h2)
			ctx := testContext(t)
			stall(t, ctx, tr, ev, h2, "t")
			if code := flood(t, ctx, hub, "t", ev.closes); code != fanout.CloseSlowConsumer {
				t.Fatalf("got session close %d, want %d", code, fanout.CloseSlowConsumer)
			}
		})
	}
}

// TestShutdownWithStalledClient checks that Shutdown returns within its
// context while a client does not read, and that the stream is dropped.
func TestShutdownWithStalledClient(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP1", true: "HTTP2"}[h2], func(t *testing.T) {
			t.Parallel()
			ev := newStallObserver()
			hub := newHub(t, &fanout.HubOptions{
				Observer:      ev,
				WriteTimeout:  time.Hour, // only Shutdown's context can end the wait
				QueueMessages: 1 << 20,
				QueueBytes:    1 << 30,
			})
			tr := newTransport(t, sse.New(hub, nil), h2)
			ctx := testContext(t)
			stall(t, ctx, tr, ev, h2, "t")
			payload := []byte(`"` + strings.Repeat("x", 16<<10) + `"`)
			for range 1000 { // 16 MB: more than the socket and stream windows hold
				if _, err := hub.Publish(ctx, "t", payload); err != nil {
					t.Fatal(err)
				}
			}
			sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			if err := hub.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("shutdown: got %v, want the context's deadline", err)
			}
			select {
			case <-ev.closes:
			case <-ctx.Done():
				t.Fatal("the stalled stream outlived Shutdown")
			}
		})
	}
}
