package memory_test

import (
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	"github.com/gofanout/fanout/backplane/memory"
)

// TestConformance is not parallel: the suite checks for leaked goroutines
// after its own parallel scenarios.
func TestConformance(t *testing.T) {
	const historySize = 32
	backplanetest.Run(t, func(t *testing.T) func() fanout.Backplane {
		return memory.New(&memory.Options{HistorySize: historySize}).Node
	}, backplanetest.Features{HistorySize: historySize})
}
