package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// newClient returns a client of the test Redis, closed when the test ends.
func newClient(t testing.TB, opts *goredis.Options) *goredis.Client {
	t.Helper()
	var o goredis.Options
	if opts != nil {
		o = *opts
	}
	if o.Addr == "" {
		o.Addr = testenv.Redis(t)
	}
	c := goredis.NewClient(&o)
	t.Cleanup(func() { c.Close() })
	return c
}

// uniquePrefix returns a key prefix no other test uses, and deletes its
// keys when the test ends.
func uniquePrefix(t testing.TB, c goredis.UniversalClient) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	prefix := "fanout-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		for _, pattern := range []string{"{" + prefix + ":*", "{" + prefix + "}:*"} {
			if err := deleteKeys(c, pattern); err != nil {
				t.Errorf("delete keys of %s: %v", prefix, err)
			}
		}
	})
	return prefix
}

// deleteKeys deletes the keys that match pattern.
func deleteKeys(c goredis.UniversalClient, pattern string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := c.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.Del(ctx, batch...).Err()
	}
	return nil
}

// infoField returns a field of a section of Redis's INFO, "" when the
// section has none.
func infoField(t testing.TB, c *goredis.Client, section, field string) string {
	t.Helper()
	text, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(text, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

// scriptCalls returns how many EVALSHA calls Redis ran since its
// statistics were last reset, and the µs it spent in them (INFO
// commandstats).
func scriptCalls(t testing.TB, c *goredis.Client) (calls, usec float64) {
	t.Helper()
	for _, kv := range strings.Split(infoField(t, c, "commandstats", "cmdstat_evalsha"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		f, _ := strconv.ParseFloat(v, 64)
		switch k {
		case "calls":
			calls = f
		case "usec":
			usec = f
		}
	}
	return calls, usec
}
