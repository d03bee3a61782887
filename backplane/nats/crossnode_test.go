package nats_test

import (
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
)

// BenchmarkCrossNode: publish on one node, receive on another, at paced
// rates (see backplanetest.BenchmarkCrossNode).
func BenchmarkCrossNode(b *testing.B) {
	c := newCluster(b, nil)
	backplanetest.BenchmarkCrossNode(b, 2*time.Second, func(*testing.B) fanout.Backplane { return c.node() })
}
