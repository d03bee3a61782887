// Package bridge lets backplane/memory construct the in-memory backplane that
// lives in package fanout, where the hub needs it as its default, without
// exporting it twice.
package bridge

import "time"

// MemoryOptions mirrors memory.Options after defaults are applied.
type MemoryOptions struct {
	HistorySize       int
	HistoryAge        time.Duration
	IdempotencyWindow time.Duration
}

// NewMemoryBroker is set by package fanout. It returns a function that makes
// a new node (a fanout.Backplane) of one shared in-memory broker.
var NewMemoryBroker func(MemoryOptions) (node func() any)
