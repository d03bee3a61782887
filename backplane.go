package fanout

import "context"

// Backplane connects the hubs of several nodes so that they act as one: it
// assigns positions, stores history and snapshots, and delivers every message
// to every node that has local subscribers for its topic.
//
// A Backplane value is one node's handle: each hub gets its own, and the
// hub calls Open once before any other method. The hub calls Subscribe when a
// topic gets its first local subscriber and Unsubscribe after its last one
// leaves; calls for one topic never overlap. All methods must be safe for
// concurrent use.
//
// # Delivery
//
// After Subscribe returns, the backplane calls [Receiver.Deliver] for every
// message of the topic published from then on, by any node, in Seq order,
// never concurrently for one topic. Deliver never blocks. When the backplane
// may have missed messages (its connection dropped and came back, its
// subscription fell behind), it calls [Receiver.Resync] for each affected
// topic, and the hub fills the gap from History. A message delivered twice is
// harmless: the hub drops any Seq it has already seen.
//
// # Positions
//
// Publish assigns the message the next Seq of its topic, globally: two nodes
// never hand out the same Seq for one topic and Epoch. Seq starts at 1. When
// the backplane loses a topic's history, it changes the topic's Epoch.
//
// # Lifecycle
//
// A topic's stored state (position, history, snapshot, idempotency keys)
// is created by its first publish. A backplane expires it after an idle
// time without Publish, History or Snapshot, and a grace period after a
// message whose [Message.Final] is true (later reads do not extend that);
// it drops history older than its history age whether or not the topic is
// used again; and it keeps nothing for a topic that has neither stored
// state nor subscribed nodes. A topic whose state expired or was deleted is
// at Seq 0 with no epoch, History after any position but Seq 0 is
// incomplete, and its next publish starts a new epoch at Seq 1: a position
// is never handed out twice. The parts of the state expire together, or
// in an order that keeps that true.
//
// # Ownership
//
// Publish receives a message whose Topic, Key, Data, Time and Header are set
// and which the caller no longer modifies; the backplane sets its Position
// and may deliver that same value. Messages returned or delivered by the
// backplane are owned by the hub and never modified afterwards.
//
// # Errors and Close
//
// A method that cannot reach its server returns an error matching
// [ErrUnavailable] rather than blocking past its context. Close releases the
// node's resources and waits for its goroutines; after Close every method
// returns an error matching [ErrClosed]. Close is idempotent.
type Backplane interface {
	// Open tells the backplane where to deliver messages.
	Open(r Receiver) error
	// Publish assigns m its position, stores it in history (and in the
	// snapshot when m.Key is set) and delivers it to every subscribed node.
	// A non-empty idempotencyKey that was published to the same topic within
	// the backplane's idempotency window returns the first publication's
	// position and publishes nothing.
	Publish(ctx context.Context, m *Message, idempotencyKey string) (Position, error)
	// Subscribe starts delivery of the topic's messages to this node.
	Subscribe(ctx context.Context, topic string) error
	// Unsubscribe stops it.
	Unsubscribe(ctx context.Context, topic string) error
	// History returns the messages after the given position, in order.
	History(ctx context.Context, topic string, after Position) (History, error)
	// Snapshot returns the latest message per key and the position it
	// corresponds to.
	Snapshot(ctx context.Context, topic string) (Snapshot, error)
	// Delete removes the topic's stored state at once: history, snapshot,
	// position and idempotency keys. The next publish starts a new epoch
	// at Seq 1, so a client that resumes from an older position is told
	// that history does not reach back. Nodes subscribed to the topic stay
	// subscribed. Deleting a topic that has no stored state succeeds.
	Delete(ctx context.Context, topic string) error
	// Close releases the node.
	Close() error
}

// Receiver is what a hub gives its backplane in Open.
type Receiver interface {
	// Deliver hands over one message of a subscribed topic.
	Deliver(m *Message)
	// Resync says that messages of the topic may have been missed.
	Resync(topic string)
}

// History is the answer of [Backplane.History].
type History struct {
	// Messages are those after the requested position, in Seq order.
	Messages []*Message
	// Position is the topic's latest position when history was read.
	Position Position
	// Complete is false when the requested position is from another epoch
	// or older than the oldest retained message: Messages then do not reach
	// back to it and are empty.
	Complete bool
}

// Snapshot is the answer of [Backplane.Snapshot].
type Snapshot struct {
	// Items holds the latest message of each key, in Seq order.
	Items []*Message
	// Position is the topic's position that the items correspond to.
	Position Position
}
