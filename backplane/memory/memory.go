// Package memory is the in-process backplane: several hubs in one process
// that share one [Broker] act as one cluster. A hub created without a
// backplane uses a private broker with the default options.
//
// History and snapshots live in the process's memory and are lost with it;
// each broker has its own epoch, so a client that resumes against a new
// process learns that its position no longer counts.
package memory

import (
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/bridge"
)

// Options configures a [Broker]. The zero value is valid; New copies it.
type Options struct {
	// HistorySize is how many messages each topic keeps. Default: 1024.
	HistorySize int
	// HistoryAge is how long a message stays in history. Default: 10m.
	HistoryAge time.Duration
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered. Default: 5m.
	IdempotencyWindow time.Duration
}

// Broker holds the topics shared by its nodes. It is safe for concurrent use.
type Broker struct {
	node func() any
}

// New returns a broker.
func New(opts *Options) *Broker {
	var o Options
	if opts != nil {
		o = *opts
	}
	return &Broker{node: bridge.NewMemoryBroker(bridge.MemoryOptions(o))}
}

// Node returns a new node of the broker, for one hub's
// [fanout.HubOptions.Backplane]. The hub closes it.
func (b *Broker) Node() fanout.Backplane {
	return b.node().(fanout.Backplane)
}
