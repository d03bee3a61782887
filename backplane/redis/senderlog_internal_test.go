package redis

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/gofanout/fanout/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// TestStaleCopyFenced: a publish logged to a sender's log that reaches
// Redis after the log was taken away (a copy still in flight on the
// connection that failed) writes nothing, and says so; recoverScript
// returns what ran before.
func TestStaleCopyFenced(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prefix := "fanout-test-fence-" + newEpoch()
	b := New(c, &Options{Prefix: prefix})
	t.Cleanup(func() { b.Close() })
	log := "{" + prefix + "}:sender:test"
	t.Cleanup(func() { c.Del(context.Background(), log) })
	if err := c.RPush(ctx, log, "log").Err(); err != nil {
		t.Fatal(err)
	}
	k := b.keys("fenced")
	t.Cleanup(func() { c.Del(context.Background(), k.all[:]...) })
	keys := k.all[:5]
	keys[4] = log
	publish := func(n, data string) []any {
		t.Helper()
		var args publishArgs
		for i := range args {
			args[i] = ""
		}
		args[argNewEpoch] = "e"
		args[argBody] = data
		args[argHistorySize] = 16
		args[argHistoryAge] = 60000
		args[argIdemWindow] = 60000
		args[argChannel] = k.base
		args[argTTL] = 60000
		args[argSlack] = 1000
		args[argStreamTTL] = 60000
		args[argRetryWindow] = 60000
		args[argLog] = n
		res, err := publishScript.Run(ctx, c, keys, args[:]...).Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := publish("1", "a"); res[0] != int64(1) || res[1] != "e 1" {
		t.Fatalf("first publish: %v", res)
	}
	if res := publish("2", "b"); res[0] != int64(1) || res[1] != "e 2" {
		t.Fatalf("second publish: %v", res)
	}
	t.Cleanup(func() { c.Del(context.Background(), log+":taken") })
	for range 2 { // the second time as when the first reply was lost
		entries, err := recoverScript.Run(ctx, c, []string{log, log + ":taken"}, 60000).StringSlice()
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 || entries[0] != "1 1 e 1" || entries[1] != "2 1 e 2" {
			t.Fatalf("log: %q, want both publishes", entries)
		}
	}
	if res := publish("3", "late"); res[0] != int64(-1) {
		t.Fatalf("a publish after the log was taken: %v, want {-1, \"\"}", res)
	}
	if n, err := c.XLen(ctx, k.stream()).Result(); err != nil || n != 2 {
		t.Fatalf("stream holds %d messages (%v), want 2", n, err)
	}
	if s, err := c.HGet(ctx, k.pos(), "s").Result(); err != nil || s != "2" {
		t.Fatalf("position: %q (%v), want 2", s, err)
	}
}

// FuzzParseLogEntry: an entry of a sender's log parses into what wrote it,
// and anything else is rejected rather than misread.
func FuzzParseLogEntry(f *testing.F) {
	for _, e := range []string{"1 1 e 1", "42 0 abc 7", "", "1", "1 1", "x 1 e 1", "1 x e 1", "-1 1 e 1", "1 1  "} {
		f.Add(e)
	}
	f.Fuzz(func(t *testing.T, e string) {
		n, created, pos, err := parseLogEntry(e)
		if err != nil {
			return
		}
		if got := strconv.FormatInt(n, 10) + " " + strconv.FormatInt(created, 10) + " " + pos; got != e {
			// Numbers written another way (a sign, leading zeros) are
			// accepted but never written by the script.
			if n2, c2, p2, err := parseLogEntry(got); err != nil || n2 != n || c2 != created || p2 != pos {
				t.Fatalf("%q parsed as %d %d %q, which does not parse back", e, n, created, pos)
			}
		}
	})
}
