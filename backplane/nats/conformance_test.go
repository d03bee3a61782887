package nats_test

import (
	"sync"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fnats "github.com/gofanout/fanout/backplane/nats"
)

// TestConformance is not parallel: the suite checks for leaked goroutines
// after its own parallel scenarios.
func TestConformance(t *testing.T) {
	const historySize = 32
	var clusters sync.Map // *testing.T -> *cluster
	backplanetest.Run(t, func(t *testing.T) func() fanout.Backplane {
		c := newCluster(t, &fnats.Options{HistorySize: historySize})
		clusters.Store(t, c)
		return func() fanout.Backplane { return c.node() }
	}, backplanetest.Features{
		HistorySize:                historySize,
		PositionExpiresWithHistory: true,
		Expiry: func(t *testing.T, l backplanetest.Lifetimes) func() fanout.Backplane {
			c := newCluster(t, &fnats.Options{
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
