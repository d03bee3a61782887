package nats_test

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/gofanout/fanout/internal/testenv"
)

// TestConformance runs the suite against the NATS server of the machine
// (FANOUT_NATS_URL). It is not parallel: the suite checks for leaked
// goroutines after its own parallel scenarios.
func TestConformance(t *testing.T) {
	runConformance(t, testenv.NATS(t))
}

// TestConformanceCurrentServer runs the suite against a current
// nats-server, embedded in the test process on a free loopback port, so
// that the backplane is tested on the release that users run as well as
// on the machine's (older) one.
func TestConformanceCurrentServer(t *testing.T) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the embedded nats-server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	t.Logf("nats-server %s", server.VERSION)
	runConformance(t, s.ClientURL())
}

func runConformance(t *testing.T, url string) {
	const historySize = 32
	var clusters sync.Map // *testing.T -> *cluster
	backplanetest.Run(t, func(t *testing.T) func() fanout.Backplane {
		c := newClusterAt(t, url, &fnats.Options{HistorySize: historySize})
		clusters.Store(t, c)
		return func() fanout.Backplane { return c.node() }
	}, backplanetest.Features{
		HistorySize:                historySize,
		PositionExpiresWithHistory: true,
		Expiry: func(t *testing.T, l backplanetest.Lifetimes) func() fanout.Backplane {
			c := newClusterAt(t, url, &fnats.Options{
				HistorySize: historySize,
				IdleTTL:     l.IdleTTL, FinalTTL: l.FinalTTL, HistoryAge: l.HistoryAge,
			})
			return func() fanout.Backplane { return c.node() }
		},
		LoseHistory: func(t *testing.T, topic string) {
			c, _ := clusters.Load(t)
			c.(*cluster).deleteStreams()
		},
	})
}
