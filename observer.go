package fanout

// Observer receives the hub's events, for metrics. Observe is called
// synchronously from the goroutine that caused the event, never under a hub
// lock, possibly concurrently; it must be fast and must not block.
type Observer interface {
	Observe(e Event)
}

// EventType says what happened.
type EventType int

// Event types.
const (
	// EventSessionOpen: a session was created.
	EventSessionOpen EventType = iota + 1
	// EventSessionClose: a session ended; Code says why.
	EventSessionClose
	// EventPublish: a message was published through this hub; N is its
	// payload size in bytes.
	EventPublish
	// EventDeliver: a message reached this hub from the backplane; N is
	// the number of local subscriptions it was handed to.
	EventDeliver
	// EventSubscribe: a session subscribed to Topic.
	EventSubscribe
	// EventUnsubscribe: a session left Topic.
	EventUnsubscribe
	// EventResync: the hub found a gap in Topic and filled it from
	// history; N is the number of messages recovered.
	EventResync
	// EventResyncFailed: a gap in Topic could not be filled (history no
	// longer reached back); its sessions were closed with [CloseResync].
	EventResyncFailed
	// EventError: an operation failed; Err says which and why.
	EventError
)

// Event is one observation.
type Event struct {
	Type    EventType
	Topic   string
	Session uint64
	Code    CloseCode
	N       int
	Err     error
}
