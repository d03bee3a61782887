package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

// publishN publishes n messages to topic and returns the last position.
func publishN(t *testing.T, bp *fanoutredis.Backplane, topic string, n int) []fanout.Position {
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

// TestRestartFromOlderData: Redis restarted from an RDB file older than
// what nodes and clients saw (as after a crash with RDB snapshots, a
// failover to a lagging replica, or an append-only file fsynced every
// second) never hands out a position again in the same epoch, even when
// publishes move past the old head before anyone reads, and a reader from
// a lost position is told that history does not reach back to it.
func TestRestartFromOlderData(t *testing.T) {
	srv := privateRedis(t, nil)
	c := newClient(t, &goredis.Options{Addr: srv.Addr()})
	bp := fanoutredis.New(c, nil)
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()

	before := publishN(t, bp, "rollback", 20)
	if err := srv.BGSave(ctx); err != nil {
		t.Fatal(err)
	}
	before = append(before, publishN(t, bp, "rollback", 10)...)
	head := before[len(before)-1]
	if err := srv.Restart(); err != nil { // kill -9, then load the RDB file
		t.Fatal(err)
	}
	var after []fanout.Position
	for i := range 15 { // past the old head, under another key
		m := &fanout.Message{Topic: "rollback", Key: "later", Data: []byte(fmt.Sprint("after ", i)), Time: time.Now()}
		p, err := bp.Publish(ctx, m, "")
		if err != nil {
			t.Fatalf("publish after the restart: %v", err)
		}
		after = append(after, p)
	}
	seen := make(map[fanout.Position]bool)
	for _, p := range before {
		seen[p] = true
	}
	for _, p := range after {
		if seen[p] {
			t.Fatalf("position %v handed out before and after the restart", p)
		}
	}
	h, err := bp.History(ctx, "rollback", head)
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete {
		t.Fatalf("history after %v, the head before the restart: complete with %d messages up to %v; want incomplete", head, len(h.Messages), h.Position)
	}
	s, err := bp.Snapshot(ctx, "rollback")
	if err != nil {
		t.Fatal(err)
	}
	if s.Position != after[len(after)-1] {
		t.Fatalf("snapshot at %v, want %v", s.Position, after[len(after)-1])
	}
	if len(s.Items) != 4 {
		t.Errorf("snapshot of %d items, want the 3 keys restored and the later one", len(s.Items))
	}
	for _, m := range s.Items {
		if m.Position.Epoch != s.Position.Epoch || m.Position.Seq > s.Position.Seq {
			t.Errorf("snapshot item at %v, snapshot at %v", m.Position, s.Position)
		}
	}
}
