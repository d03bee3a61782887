// Package backplanetest is the conformance suite of [fanout.Backplane]. An
// implementation's test is a constructor plus one call to [Run]:
//
//	func TestConformance(t *testing.T) {
//		backplanetest.Run(t, func(t *testing.T) func() fanout.Backplane {
//			b := memory.New(&memory.Options{HistorySize: 64})
//			return b.Node
//		}, backplanetest.Features{HistorySize: 64})
//	}
//
// # The contract it checks
//
// Each scenario runs as a parallel subtest with a fresh cluster and topic
// names of its own, mostly through real [fanout.Hub] values (one per node)
// and, for what a hub would hide, through direct calls on the Backplane with
// a [fanout.Receiver] of the suite's own. Together they require that:
//
//   - positions are global: nodes publishing concurrently to one topic never
//     hand out the same Seq, and Seq grows by exactly one from 1;
//   - every subscribed node receives every message of a topic in Seq order,
//     never concurrently for one topic, and the same sequence as every other
//     node;
//   - a node receives nothing for a topic it has not subscribed to, or has
//     unsubscribed from;
//   - History returns the messages after a position with their topic, key,
//     data and header intact, and says Complete=false, with no messages,
//     for a position of another epoch, beyond the topic's head, or older
//     than what is retained;
//   - Snapshot returns the latest message per key, in Seq order, and exactly
//     the position those items correspond to, even while others publish;
//   - a client resumes on another node from the position it saw on the
//     first, with nothing lost or repeated, also while messages flow;
//   - a topic whose history is lost gets a new epoch, and hubs tell their
//     sessions so (see [Features.LoseHistory]);
//   - a repeated idempotency key returns the first position and publishes
//     nothing, also when repeated on another node;
//   - a cancelled context makes a method return the context's error and
//     change nothing;
//   - Close is idempotent and safe concurrently; afterwards every method
//     returns an error matching [fanout.ErrClosed] and nothing is delivered;
//   - no goroutine is left once every hub and node is closed.
//
// Scenarios that need a capability the implementation does not declare in
// [Features] are skipped with the reason.
package backplanetest

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"go.uber.org/goleak"
)

// Features declares what the backplane under test can do and how the
// suite may exercise it. The zero value runs every scenario that needs no
// capability beyond the [fanout.Backplane] contract.
type Features struct {
	// HistorySize is how many messages per topic the clusters made by
	// newCluster keep in history: at least this many, and fewer than three
	// times as many. The retention scenario publishes more than three times
	// as many and expects the oldest to be reported lost. Default: 0, which
	// skips that scenario.
	HistorySize int

	// LoseHistory destroys the stored history, position and snapshot of
	// topic, as a flushed or restarted server would, so that the next
	// publish starts a new epoch. It receives the same *testing.T that
	// newCluster received for the scenario, so an implementation may map
	// it to the cluster it made (for example through a sync.Map keyed by
	// t). Default: nil, which skips the epoch-change scenario.
	LoseHistory func(t *testing.T, topic string)

	// Timeout bounds each wait of the suite for a delivery or a frame.
	// Default: 10s.
	Timeout time.Duration
}

// Run runs the conformance suite. newCluster is called once per scenario,
// with the scenario's t, and makes a fresh cluster isolated from every other
// (a new in-memory broker, a unique key prefix, a unique stream name); it
// returns a function that makes a new, unopened node of that cluster. The
// suite opens and closes every node it makes; newCluster may register
// cleanups on t, which run after the scenario's nodes are closed.
//
// After the scenarios, Run checks that no goroutine started during it is
// left. Call it from a test that does not run in parallel with other tests
// (the scenarios themselves run in parallel with each other).
func Run(t *testing.T, newCluster func(t *testing.T) func() fanout.Backplane, f Features) {
	t.Helper()
	if f.Timeout <= 0 {
		f.Timeout = 10 * time.Second
	}
	before := goleak.IgnoreCurrent()
	t.Run("Scenarios", func(t *testing.T) {
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				if sc.needs != nil {
					if reason := sc.needs(f); reason != "" {
						t.Skip(reason)
					}
				}
				s := &suite{
					f:       f,
					newNode: newCluster(t),
					topic:   uniqueTopic(sc.name),
				}
				sc.run(t, s)
			})
		}
	})
	t.Run("NoGoroutineLeft", func(t *testing.T) {
		if err := goleak.Find(before); err != nil {
			t.Errorf("goroutines left after every hub and node closed: %v", err)
		}
	})
}

// suite is one scenario's environment.
type suite struct {
	f       Features
	newNode func() fanout.Backplane
	topic   string // unique to the scenario
}

type scenario struct {
	name  string
	needs func(Features) string // returns why the scenario is skipped, or ""
	run   func(t *testing.T, s *suite)
}

// uniqueTopic returns a valid topic name that no other scenario or run
// uses.
func uniqueTopic(name string) string {
	var b [6]byte
	rand.Read(b[:])
	return "bt-" + strings.ToLower(name) + "-" + hex.EncodeToString(b[:])
}
