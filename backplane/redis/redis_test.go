package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

func TestNewPanicsOnMisuse(t *testing.T) {
	t.Parallel()
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { c.Close() })
	for name, f := range map[string]func(){
		"nil client":         func() { fanoutredis.New(nil, nil) },
		"prefix with braces": func() { fanoutredis.New(c, &fanoutredis.Options{Prefix: "a{b}"}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: got no panic, want one", name)
				}
			}()
			f()
		}()
	}
}

// TestCloseKeepsClient: the client belongs to the caller, and still works
// after the backplane is closed.
func TestCloseKeepsClient(t *testing.T) {
	t.Parallel()
	c := newClient(t, nil)
	n := fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(t, c)})
	if err := n.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	if err := n.Subscribe(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping after the backplane closed: got %v, want the client still open", err)
	}
}

// TestHistoryAge: a publish trims the messages older than HistoryAge.
func TestHistoryAge(t *testing.T) {
	t.Parallel()
	c := newClient(t, nil)
	// History also trims by age as it reads, so the age leaves the test
	// time to read the new message before it is trimmed too.
	const age = 500 * time.Millisecond
	n := fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(t, c), HistoryAge: age})
	if err := n.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx := context.Background()
	publish := func(data string) fanout.Position {
		t.Helper()
		p, err := n.Publish(ctx, &fanout.Message{Topic: "aged", Data: []byte(data), Time: time.Now()}, "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := publish("old")
	// Let Redis's clock pass the age of the first message.
	start, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for now := start; now.Sub(start) <= age+age/8; {
		if now, err = c.Time(ctx).Result(); err != nil {
			t.Fatal(err)
		}
	}
	second := publish("new")
	h, err := n.History(ctx, "aged", fanout.Position{Epoch: first.Epoch})
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete || h.Position != second {
		t.Fatalf("history from the start: got complete=%v at %v, want incomplete at %v", h.Complete, h.Position, second)
	}
	if h, err = n.History(ctx, "aged", first); err != nil || !h.Complete || len(h.Messages) != 1 || string(h.Messages[0].Data) != "new" {
		t.Fatalf("history after the trimmed message: got complete=%v, %d messages, err %v; want the new one", h.Complete, len(h.Messages), err)
	}
}
