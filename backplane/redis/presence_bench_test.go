package redis_test

import (
	"testing"

	"github.com/gofanout/fanout/backplane/backplanetest"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
)

// BenchmarkPresence measures Presence and PresenceCount on a topic of
// 10,000 entries (see backplanetest.BenchmarkPresence).
func BenchmarkPresence(b *testing.B) {
	c := newClient(b, nil)
	backplanetest.BenchmarkPresence(b, fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(b, c)}))
}
