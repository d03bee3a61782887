package nats_test

import (
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/gofanout/fanout/internal/chaos"
)

// BenchmarkHubPublish measures Hub.Publish through the backplane on a
// private nats-server with JetStream on loopback (see
// backplanetest.BenchmarkHubPublish).
func BenchmarkHubPublish(b *testing.B) {
	srv, err := chaos.StartNATS(b.TempDir(), nil)
	if err != nil {
		b.Skipf("cannot start a private nats-server: %v", err)
	}
	b.Cleanup(func() { srv.Close() })
	backplanetest.BenchmarkHubPublish(b, func(b *testing.B, _ backplanetest.PublishLoad) *fanout.Hub {
		c := newClusterAt(b, srv.URL(), &fnats.Options{HistorySize: 1024, HistoryAge: 10 * time.Minute})
		return newHub(b, c.node(), nil)
	}, nil, "")
}
