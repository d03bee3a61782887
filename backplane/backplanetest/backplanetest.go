// Package backplanetest is the conformance suite of [fanout.Backplane]. An
// implementation's test is a constructor plus one call to [Run]:
//
//	func TestConformance(t *testing.T) {
//		backplanetest.Run(t, func(t *testing.T) func() fanout.Backplane {
//			b := fanout.NewMemoryBroker(&fanout.MemoryOptions{HistorySize: 64})
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
//   - Delete forgets a topic's position, history, snapshot and idempotency
//     keys: the next publish starts a new epoch at Seq 1, a resume from
//     before gets recovered=false and the new snapshot, and hubs resync
//     their live sessions;
//   - stored state expires after an idle time without publish or read, a
//     final topic's state a grace period after its final message (reads do
//     not extend it), history at its age, and positions are never reused
//     after expiry (see [Features.Expiry]);
//   - a backplane that implements [fanout.ControlBackplane] carries
//     control messages to every node: Disconnect and server-side
//     Subscribe/Unsubscribe of a principal connected to two hubs reach
//     both, over WebSocket with the Go client; a principal without
//     sessions is harmless; messages over [fanout.MaxControlBytes] are
//     refused;
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

	// Expiry makes a cluster, as newCluster does, whose backplane expires
	// stored state with the given lifetimes (fields IdleTTL, FinalTTL and
	// HistoryAge of its options). The scenarios give lifetimes of 100 to
	// 500 ms and wait for them in real time. Default: nil, which skips the
	// expiry scenarios.
	Expiry func(t *testing.T, l Lifetimes) func() fanout.Backplane
	// PositionExpiresWithHistory declares that the backplane keeps a
	// topic's position only as long as its last message stays in history
	// (NATS on servers without per-message TTLs): a topic silent for
	// HistoryAge is forgotten whole, and the next publish starts a new
	// epoch. The HistoryAge scenario then checks that instead of a
	// position that outlives history. Default: false.
	PositionExpiresWithHistory bool
	// ExpiryLatency is how long after its deadline the backplane may still
	// hold expired state: the expiry scenarios wait that much longer
	// before they look. Default: 250ms.
	ExpiryLatency time.Duration

	// Timeout bounds each wait of the suite for a delivery or a frame.
	// Default: 10s.
	Timeout time.Duration
}

// Lifetimes are what the expiry scenarios build a cluster with: how long a
// topic's stored state lives without publish or read (IdleTTL), after a
// final message (FinalTTL), and how long a message stays in history
// (HistoryAge).
type Lifetimes struct {
	IdleTTL    time.Duration
	FinalTTL   time.Duration
	HistoryAge time.Duration
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
	if f.ExpiryLatency <= 0 {
		f.ExpiryLatency = 250 * time.Millisecond
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
				s := &suite{f: f, topic: uniqueTopic(sc.name), life: sc.life}
				if sc.life != (Lifetimes{}) {
					s.newNode = f.Expiry(t, sc.life)
				} else {
					s.newNode = newCluster(t)
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
	topic   string    // unique to the scenario
	life    Lifetimes // the cluster's, for expiry scenarios
}

type scenario struct {
	name  string
	needs func(Features) string // returns why the scenario is skipped, or ""
	// life, when set, makes the scenario's cluster with Features.Expiry.
	life Lifetimes
	run  func(t *testing.T, s *suite)
}

// uniqueTopic returns a valid topic name that no other scenario or run
// uses.
func uniqueTopic(name string) string {
	var b [6]byte
	rand.Read(b[:])
	return "bt-" + strings.ToLower(name) + "-" + hex.EncodeToString(b[:])
}
