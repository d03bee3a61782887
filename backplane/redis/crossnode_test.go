package redis_test

import (
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
)

// BenchmarkCrossNode: publish on one node, receive on another, at paced
// rates (see backplanetest.BenchmarkCrossNode).
func BenchmarkCrossNode(b *testing.B) {
	c := newClient(b, nil)
	prefix := uniquePrefix(b, c)
	backplanetest.BenchmarkCrossNode(b, 2*time.Second, func(*testing.B) fanout.Backplane {
		return fanoutredis.New(c, &fanoutredis.Options{Prefix: prefix})
	})
}
