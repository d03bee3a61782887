package fanoutgrpc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// observer records the hub's session close codes and subscriptions.
type observer struct {
	closes     chan fanout.CloseCode
	subscribed chan struct{}
}

func (o observer) Observe(e fanout.Event) {
	switch e.Type {
	case fanout.EventSessionClose:
		o.closes <- e.Code
	case fanout.EventSubscribe:
		o.subscribed <- struct{}{}
	}
}

// stalledEnv is a hub whose client reads nothing: small flow-control
// windows make the server's sends block soon.
func stalledEnv(t *testing.T, writeTimeout time.Duration) (*env, observer) {
	ev := observer{closes: make(chan fanout.CloseCode, 16), subscribed: make(chan struct{}, 16)}
	e := newEnv(t, envOptions{
		hub: &fanout.HubOptions{
			Observer:      ev,
			WriteTimeout:  writeTimeout,
			QueueMessages: 1 << 20,
			QueueBytes:    1 << 30, // so that only the write deadline can close it
		},
		dial: []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)},
	})
	return e, ev
}

// stall starts a call that subscribes to topic and never reads.
func stall(t *testing.T, ctx context.Context, e *env, ev observer, connect bool, topic string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if connect {
		st, err := e.sub.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(sub("1", topic)); err != nil {
			t.Fatal(err)
		}
	} else {
		if _, err := e.sub.Subscribe(ctx, &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: topic}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the subscription is made.
	select {
	case <-ev.subscribed:
	case <-ctx.Done():
		t.Fatal("the stalled call never subscribed")
	}
}

// flood publishes to topic until the hub reports a session close.
func flood(t *testing.T, ctx context.Context, hub *fanout.Hub, topic string, ev observer, n int) (fanout.CloseCode, bool) {
	t.Helper()
	payload := []byte(strings.Repeat("x", 16<<10))
	for range n {
		select {
		case code := <-ev.closes:
			return code, true
		default:
		}
		if _, err := hub.Publish(ctx, topic, payload); err != nil {
			t.Fatal(err)
		}
	}
	return 0, false
}

// TestStalledCallClosed checks that a Subscribe or Connect call whose
// client stops reading is closed as a slow consumer once a send has waited
// WriteTimeout, as on WebSocket.
func TestStalledCallClosed(t *testing.T) {
	t.Parallel()
	for _, connect := range []bool{false, true} {
		t.Run(map[bool]string{false: "Subscribe", true: "Connect"}[connect], func(t *testing.T) {
			t.Parallel()
			e, ev := stalledEnv(t, 200*time.Millisecond)
			ctx := testCtx(t)
			stall(t, ctx, e, ev, connect, "t")
			code, ok := flood(t, ctx, e.hub, "t", ev, 4000)
			if !ok {
				select {
				case code = <-ev.closes:
				case <-ctx.Done():
					t.Fatal("the stalled call was never closed")
				}
			}
			if code != fanout.CloseSlowConsumer {
				t.Fatalf("got session close %d, want %d", code, fanout.CloseSlowConsumer)
			}
		})
	}
}

// TestShutdownWithStalledCall checks that Shutdown returns within its
// context while a client does not read, and that the call ends.
func TestShutdownWithStalledCall(t *testing.T) {
	t.Parallel()
	for _, connect := range []bool{false, true} {
		t.Run(map[bool]string{false: "Subscribe", true: "Connect"}[connect], func(t *testing.T) {
			t.Parallel()
			e, ev := stalledEnv(t, time.Hour) // only Shutdown's context can end the wait
			ctx := testCtx(t)
			stall(t, ctx, e, ev, connect, "t")
			if _, ok := flood(t, ctx, e.hub, "t", ev, 200); ok { // 3 MB: far past the 64 KiB windows
				t.Fatal("the session closed before Shutdown")
			}
			sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			if err := e.hub.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("shutdown: got %v, want the context's deadline", err)
			}
			select {
			case <-ev.closes:
			case <-ctx.Done():
				t.Fatal("the stalled call outlived Shutdown")
			}
		})
	}
}
