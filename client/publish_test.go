package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
)

// cutOnPublish is a memory backplane that cuts the proxy's connections
// once, right after it published to topic and before the publisher's reply
// is written: the publish happened, and its reply is lost.
type cutOnPublish struct {
	fanout.Backplane
	topic string
	px    atomic.Pointer[testenv.Proxy]
	done  atomic.Bool
}

func (b *cutOnPublish) Publish(ctx context.Context, m *fanout.Message, idem string) (fanout.Position, error) {
	pos, err := b.Backplane.Publish(ctx, m, idem)
	if err == nil && m.Topic == b.topic && b.done.CompareAndSwap(false, true) {
		b.px.Load().Cut()
	}
	return pos, err
}

// TestPublishRetriedOnce: a publish whose reply a cut connection lost is
// sent again after the reconnect with the same idempotency key, so that it
// is published once and Publish returns its position.
func TestPublishRetriedOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []client.PublishOption
	}{
		{"generated key", nil},
		{"caller's key", []client.PublishOption{client.WithIdempotencyKey("evt-981")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obs := &cutOnPublish{Backplane: fanout.NewMemoryBroker(nil).Node(), topic: "orders"}
			srv := newServer(t, &fanout.HubOptions{Authorize: allowPublish, Backplane: obs})
			px := testenv.NewProxy(t, srv.addr)
			obs.px.Store(px)
			st := newStatuses()
			c := dial(t, wsURL(px), options(t, st))
			st.waitFor(t, client.StatusConnected)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pos, err := c.Publish(ctx, "orders", []byte(`{"n":1}`), tc.opts...)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			if !obs.done.Load() {
				t.Fatal("the connection was not cut")
			}
			st.waitFor(t, client.StatusDisconnected)
			if pos.Seq != 1 {
				t.Fatalf("got position %v, want seq 1", pos)
			}
			// One message was published: the next one is the second.
			if next := srv.publish(t, "orders", "2"); next.Seq != 2 {
				t.Fatalf("next publish got seq %d, want 2", next.Seq)
			}
		})
	}
}

// TestPublishOptions: key and header reach the subscribers, and a publish
// repeated with the caller's idempotency key publishes once.
func TestPublishOptions(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fanout.HubOptions{Authorize: allowPublish})
	c := dial(t, "ws://"+srv.addr+"/", options(t, nil))
	sub := subscribe(t, c, "traced", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := map[string]string{"traceparent": "00-4bf9-01"}
	opts := []client.PublishOption{client.WithKey("k"), client.WithHeader(h), client.WithIdempotencyKey("e1")}
	for range 2 {
		pos, err := c.Publish(ctx, "traced", []byte{0, 0xff}, opts...)
		if err != nil || pos.Seq != 1 {
			t.Fatalf("publish: got %v, %v, want seq 1", pos, err)
		}
	}
	ev := next(t, sub)
	m := ev.Message
	if ev.Kind != client.EventMessage || m.Key != "k" || m.Header["traceparent"] != "00-4bf9-01" || string(m.Data) != "\x00\xff" {
		t.Fatalf("got %+v, want the message with key and header", ev)
	}
	if pos, err := c.Publish(ctx, "traced", []byte(`2`)); err != nil || pos.Seq != 2 {
		t.Fatalf("publish: got %v, %v, want seq 2", pos, err)
	}
	if ev := next(t, sub); ev.Message.Position.Seq != 2 {
		t.Fatalf("got %+v, want seq 2", ev)
	}
}
