package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/chaos"
	goredis "github.com/redis/go-redis/v9"
)

// TestRedisClusterFailover: on a Redis Cluster of three primaries and
// three replicas, the primary that holds a topic is killed mid-stream; its
// replica takes over, and no position of the topic is handed out twice,
// whatever the replica had received: the topic moves to a new epoch, and a
// reader from the old head is told that history does not reach back.
func TestRedisClusterFailover(t *testing.T) {
	rc, err := chaos.StartRedisCluster(t.TempDir())
	if err != nil {
		t.Skipf("cannot start a Redis Cluster: %v", err)
	}
	t.Cleanup(func() { rc.Close() })
	c := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:       rc.Addrs(),
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond,
	})
	t.Cleanup(func() { c.Close() })
	bp := fanoutredis.New(c, &fanoutredis.Options{Prefix: "cluster"})
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()

	before := publishN(t, bp, "failover", 20)
	head := before[len(before)-1]
	primary, err := rc.PrimaryOf(ctx, "{cluster:failover}:pos")
	if err != nil {
		t.Fatal(err)
	}
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	var after []fanout.Position
	failures := 0
	for len(after) < 15 {
		m := &fanout.Message{Topic: "failover", Key: "k", Data: []byte("after"), Time: time.Now()}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		p, err := bp.Publish(pctx, m, "")
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("no publish succeeded after the failover: %v", err)
			}
			failures++ // the replica is not primary yet
			continue
		}
		after = append(after, p)
	}
	t.Logf("%d publishes failed during the failover", failures)
	seen := make(map[fanout.Position]bool)
	for _, p := range before {
		seen[p] = true
	}
	for _, p := range after {
		if seen[p] {
			t.Fatalf("position %v handed out before and after the failover", p)
		}
	}
	h, err := bp.History(ctx, "failover", head)
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete {
		t.Fatalf("history after %v, the head before the failover: complete with %d messages; want incomplete", head, len(h.Messages))
	}
	s, err := bp.Snapshot(ctx, "failover")
	if err != nil {
		t.Fatal(err)
	}
	if s.Position != after[len(after)-1] || len(s.Items) == 0 {
		t.Fatalf("snapshot at %v with %d items, want at %v", s.Position, len(s.Items), after[len(after)-1])
	}
}
