package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// newLogTest returns a context that ends with the test, a client of the
// test Redis, a backplane with a prefix of its own, and a sender's log
// made as a sender makes it; the log goes when the test ends, taken or
// not.
func newLogTest(t *testing.T, name string) (context.Context, *goredis.Client, *Backplane, string) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	prefix := "fanout-test-" + name + "-" + newEpoch()
	b := New(c, &Options{Prefix: prefix})
	t.Cleanup(func() { b.Close() })
	log := "{" + prefix + "}:sender:test"
	t.Cleanup(func() { c.Del(context.Background(), log, log+":taken") })
	if err := c.RPush(ctx, log, "log").Err(); err != nil {
		t.Fatal(err)
	}
	return ctx, c, b, log
}

// TestStaleCopyFenced: a publish script call logged to a sender's log that
// reaches Redis after the log was taken away (a copy still in flight on
// the connection that failed) writes nothing, and says so; recoverScript
// returns what the last call before ran.
func TestStaleCopyFenced(t *testing.T) {
	ctx, c, b, log := newLogTest(t, "fenced")
	k := b.keys("fenced")
	t.Cleanup(func() { c.Del(context.Background(), k.all[:]...) })
	// publish calls the publish script as a sender logging entry n.
	publish := func(n int64, data ...string) []any {
		t.Helper()
		var batch []*publishReq
		for _, d := range data {
			batch = append(batch, &publishReq{keys: k.all, channel: k.base, body: []byte(d)})
		}
		keys, args := b.pub.command(batch, "", log, n)
		args[hdrNewEpoch] = "e"
		res, err := publishScript.Run(ctx, c, keys, args...).Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := publish(7, "x"); len(res) != 2 || res[0] != int64(1) || res[1] != "e 1" {
		t.Fatalf("first call: %v", res)
	}
	// The next call drops the entries of those before.
	if res := publish(1, "a", "b"); len(res) != 4 || res[0] != int64(1) || res[1] != "e 2" || res[2] != int64(1) || res[3] != "e 3" {
		t.Fatalf("second call: %v", res)
	}
	for range 2 { // the second time as when the first reply was lost
		entries, err := recoverScript.Run(ctx, c, []string{log, log + ":taken"}, 60000).StringSlice()
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 || entries[0] != "1 1 e 2" || entries[1] != "2 1 e 3" {
			t.Fatalf("log: %q, want the publishes of the last call", entries)
		}
	}
	if res := publish(3, "late"); len(res) != 1 || res[0] != int64(-1) {
		t.Fatalf("a publish after the log was taken: %v, want {-1}", res)
	}
	if n, err := c.XLen(ctx, k.stream()).Result(); err != nil || n != 3 {
		t.Fatalf("stream holds %d messages (%v), want 3", n, err)
	}
	if s, err := c.HGet(ctx, k.pos(), "s").Result(); err != nil || s != "3" {
		t.Fatalf("position: %q (%v), want 3", s, err)
	}
}

// TestLogHoldsFailedPublish: a publish that fails in a call of the publish
// script fails alone, and the sender's log holds its error, which a
// sender that recovers the log answers it with.
func TestLogHoldsFailedPublish(t *testing.T) {
	ctx, c, b, log := newLogTest(t, "failed")
	fine, broken := b.keys("fine"), b.keys("broken")
	t.Cleanup(func() {
		c.Del(context.Background(), append(fine.all[:], broken.all[:]...)...)
	})
	if err := c.Set(ctx, broken.pos(), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	batch := []*publishReq{
		{keys: fine.all, channel: fine.base, body: []byte("a")},
		{keys: broken.all, channel: broken.base, body: []byte("b")},
		{keys: fine.all, channel: fine.base, body: []byte("c")},
	}
	keys, args := b.pub.command(batch, "", log, 1)
	args[hdrNewEpoch] = "e"
	res, gone, err := replies(publishScript.Run(ctx, c, keys, args...), len(batch))
	if err != nil || gone {
		t.Fatalf("call: %v, log gone %v", err, gone)
	}
	if res[0].pos != "e 1" || res[2].pos != "e 2" || res[0].err != nil || res[2].err != nil {
		t.Fatalf("sound publishes: %+v, %+v", res[0], res[2])
	}
	var rerr goredis.Error
	if !errors.As(res[1].err, &rerr) || !strings.HasPrefix(rerr.Error(), "WRONGTYPE") {
		t.Fatalf("broken publish: %v, want a WRONGTYPE error reply", res[1].err)
	}
	sc := &senderConn{conn: c.Conn()}
	t.Cleanup(func() { sc.conn.Close() })
	for i, r := range batch {
		r.ctx, r.log, r.n = ctx, log, int64(i+1)
		r.done = make(chan publishRes, 1)
	}
	rest, err := b.pub.recover(ctx, sc, batch)
	if err != nil || len(rest) != 0 {
		t.Fatalf("recover: %v, %d publishes not in the log", err, len(rest))
	}
	for i, r := range batch {
		got := <-r.done
		if (got.err == nil) != (res[i].err == nil) || got.pos != res[i].pos || got.created != res[i].created {
			t.Errorf("publish %d: recovered %+v, replied %+v", i, got, res[i])
		}
	}
}

// FuzzParseLogEntry: an entry of a sender's log parses into what wrote it,
// and anything else is rejected rather than misread.
func FuzzParseLogEntry(f *testing.F) {
	for _, e := range []string{"1 1 e 1", "42 0 abc 7", "", "1", "1 1", "x 1 e 1", "1 x e 1", "-1 1 e 1", "1 1  ", "3 -2 WRONGTYPE Operation against a key", "3 -1 e 1", "3 2 e 1"} {
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
