package nats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/nats-io/nats.go"
)

type nopReceiver struct{}

func (nopReceiver) Deliver(*fanout.Message) {}
func (nopReceiver) Resync(string)           {}

// publishN publishes n keyed messages to topic and returns their
// positions.
func publishN(t *testing.T, bp *fnats.Backplane, topic string, n int) []fanout.Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	var ps []fanout.Position
	for i := range n {
		m := &fanout.Message{Topic: topic, Key: fmt.Sprint(i % 3), Data: []byte(fmt.Sprint(i)), Time: time.Now()}
		p, err := bp.Publish(ctx, m, "")
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestRestoredFromOlderData: NATS restarted with a JetStream store older
// than what the node published (a backup, or what an OS crash left
// unsynced) never makes the node hand out a position again in the same
// epoch, and a reader from a lost position is told that history does not
// reach back to it.
func TestRestoredFromOlderData(t *testing.T) {
	srv := privateNATS(t)
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	bp := fnats.New(nc, nil)
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })

	before := publishN(t, bp, "rollback", 20)
	if err := srv.SaveStore(); err != nil {
		t.Fatal(err)
	}
	before = append(before, publishN(t, bp, "rollback", 10)...)
	if err := srv.RestoreStore(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("no reconnect to NATS")
	}
	checkPastOldHead(ctx, t, bp, "rollback", before)
}

// checkPastOldHead publishes to topic, restored from older data, past its
// old head, and checks that no position of before is handed out again and
// that history after the old head is incomplete.
func checkPastOldHead(ctx context.Context, t *testing.T, bp *fnats.Backplane, topic string, before []fanout.Position) {
	t.Helper()
	head := before[len(before)-1]
	var after []fanout.Position
	for len(after) < 15 { // past the old head
		m := &fanout.Message{Topic: topic, Key: "k", Data: []byte("after"), Time: time.Now()}
		p, err := bp.Publish(ctx, m, "")
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			continue // JetStream may still be recovering its streams
		}
		after = append(after, p)
	}
	seen := make(map[fanout.Position]bool)
	for _, p := range before {
		seen[p] = true
	}
	for _, p := range after {
		if seen[p] {
			t.Fatalf("position %v handed out before and after the restore", p)
		}
	}
	h, err := bp.History(ctx, topic, head)
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete {
		t.Fatalf("history after %v, the head before the restore: complete with %d messages up to %v; want incomplete", head, len(h.Messages), h.Position)
	}
}

// TestRestoredFromOlderDataUnwitnessed: after NATS restarts from a store
// older than what was published, a node that never saw the lost messages
// (it starts after the restore) does not hand out their positions again
// in the same epoch either.
func TestRestoredFromOlderDataUnwitnessed(t *testing.T) {
	srv := privateNATS(t)
	connect := func() *fnats.Backplane {
		nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		bp := fnats.New(nc, nil)
		if err := bp.Open(nopReceiver{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bp.Close() })
		return bp
	}
	a := connect()
	before := publishN(t, a, "unwitnessed", 20)
	if err := srv.SaveStore(); err != nil {
		t.Fatal(err)
	}
	before = append(before, publishN(t, a, "unwitnessed", 10)...)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.RestoreStore(); err != nil {
		t.Fatal(err)
	}

	b := connect() // knows nothing of what a published
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	checkPastOldHead(ctx, t, b, "unwitnessed", before)
}
