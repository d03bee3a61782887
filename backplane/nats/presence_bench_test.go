package nats_test

import (
	"testing"

	"github.com/gofanout/fanout/backplane/backplanetest"
)

// BenchmarkPresence measures Presence and PresenceCount on a topic of
// 10,000 entries (see backplanetest.BenchmarkPresence).
func BenchmarkPresence(b *testing.B) {
	backplanetest.BenchmarkPresence(b, newCluster(b, nil).node())
}
