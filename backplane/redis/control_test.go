package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/testenv"
)

// controlRecorder passes control messages on to a channel.
type controlRecorder chan string

func (c controlRecorder) Control(b []byte) { c <- string(b) }

// TestControlTooLargeDropped: a control message over the limit that
// reaches the channel (published by something else than a node) is
// dropped, and the next one is delivered.
func TestControlTooLargeDropped(t *testing.T) {
	testenv.Redis(t)
	t.Parallel()
	c := newClient(t, nil)
	prefix := uniquePrefix(t, c)
	n := fanoutredis.New(c, &fanoutredis.Options{Prefix: prefix})
	if err := n.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	got := make(controlRecorder, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.OpenControl(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, prefix+":control", strings.Repeat("x", fanout.MaxControlBytes+1)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := n.PublishControl(ctx, []byte("small")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "small" {
			t.Fatalf("got a message of %d bytes, want the small one", len(m))
		}
	case <-ctx.Done():
		t.Fatal("no control message delivered")
	}
}
