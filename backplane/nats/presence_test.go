package nats_test

import (
	"os"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/nats-io/nats.go"
)

const presenceTTL = time.Second

// TestPresenceKilledNode kills a node's process with SIGKILL: its session
// leaves presence within PresenceTTL, while the others stay.
func TestPresenceKilledNode(t *testing.T) {
	c := newCluster(t, &fnats.Options{PresenceTTL: presenceTTL})
	backplanetest.KilledNode(t, func() fanout.Backplane { return c.node() }, presenceTTL, "TestPresenceChildNode",
		"FANOUT_TEST_NATS_STREAM="+c.opts.Stream, "FANOUT_TEST_NATS_PREFIX="+c.opts.Prefix)
}

// TestPresenceChildNode is the node TestPresenceKilledNode kills.
func TestPresenceChildNode(t *testing.T) {
	backplanetest.ChildNode(t, func() fanout.Backplane {
		nc, err := nats.Connect(testenv.NATS(t))
		if err != nil {
			t.Fatal(err)
		}
		return fnats.New(nc, &fnats.Options{
			Stream: os.Getenv("FANOUT_TEST_NATS_STREAM"), Prefix: os.Getenv("FANOUT_TEST_NATS_PREFIX"),
			PresenceTTL: presenceTTL,
		})
	})
}
