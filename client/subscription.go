package client

import (
	"context"
	"sync"
	"time"

	"github.com/gofanout/fanout"
)

// Message is one message of a topic.
type Message struct {
	Topic    string
	Position fanout.Position
	// Key is the message's snapshot key, if it was published with one.
	Key string
	// Data is the payload, exactly the bytes that were published.
	Data []byte
	// Time is when the message was published, to the millisecond.
	Time time.Time
	// Header is the message's metadata, such as trace context.
	Header map[string]string
}

// EventKind says what an [Event] carries.
type EventKind int

// Event kinds.
const (
	// EventMessage: Message is the topic's next message.
	EventMessage EventKind = iota + 1
	// EventSnapshot: Snapshot is the topic's state at Position, the latest
	// message of each key in Seq order. It comes first when the
	// subscription asked for a snapshot, and after every EventReset.
	// Messages after Position follow.
	EventSnapshot
	// EventReset: messages after Position (the last position delivered)
	// were lost: the connection was away longer than the server's history
	// reaches, or the server lost its history (a new epoch). An
	// EventSnapshot with the current state follows.
	EventReset
	// EventJoin: Client subscribed to the topic, on any node (topics
	// whose server options enable join/leave). It takes no position.
	EventJoin
	// EventLeave: Client left the topic. It takes no position.
	EventLeave
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventMessage:
		return "message"
	case EventSnapshot:
		return "snapshot"
	case EventReset:
		return "reset"
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	}
	return "unknown"
}

// Event is one item of a subscription's stream.
type Event struct {
	Kind EventKind
	// Message is set for EventMessage.
	Message Message
	// Snapshot is set for EventSnapshot; it may be empty.
	Snapshot []Message
	// Position is the message's position (EventMessage), the position of
	// the state (EventSnapshot), or the last position delivered before the
	// loss (EventReset).
	Position fanout.Position
	// Client is who joined or left, for EventJoin and EventLeave.
	Client fanout.ClientInfo
}

// SubscribeOptions configures a [Client.Subscribe]. The zero value is
// valid.
type SubscribeOptions struct {
	// Since, when set, starts the subscription after this position: every
	// message after it is delivered, or, when history no longer reaches
	// back, an EventReset and an EventSnapshot. Use the position of the
	// last message processed before a restart. Default: nil, live messages
	// from now on.
	Since *fanout.Position
	// Snapshot asks for the topic's current state first, as an
	// EventSnapshot, when Since is nil. Default: false.
	Snapshot bool
	// Buffer bounds the events the subscription holds for the
	// application. Default: [Options.Buffer].
	Buffer int
}

// subState is where a subscription stands on the current connection.
type subState uint8

const (
	subIdle      subState = iota // not subscribed on the server
	subPending                   // subscribe sent, reply awaited
	subAwaitSnap                 // reply received, snapshot frame awaited
	subLive                      // messages flow
	subLeaving                   // unsubscribe sent, reply awaited
)

// Subscription is a client's subscription to one topic: the stream of its
// events, in order, across reconnects. Read it with [Subscription.Next].
// Its methods are safe for concurrent use, but with several goroutines
// calling Next each event goes to one of them, so only a single reader
// sees the stream in order.
//
// # Buffer
//
// The subscription holds at most Buffer events (plus the reset and
// snapshot of one resubscribe) that the application has not taken yet.
// When a message arrives and the buffer is full, the client does not block
// the connection and does not drop the message silently: it drops it and
// unsubscribes the topic on the server, keeping the buffered events. Once
// Next has taken half of them, the client subscribes again from the last
// buffered position, and the server resends what followed from its
// history. Nothing is lost while history reaches back; otherwise the
// application gets an EventReset and a snapshot, as after a long
// disconnection.
type Subscription struct {
	c      *Client
	topic  string
	snap   bool
	buffer int

	// Owned by the client's connection goroutine.
	state   subState
	pos     fanout.Position // position of the last event buffered
	hasPos  bool            // pos is known: resubscribe with since=pos
	started bool            // the first subscribe was answered
	reset   bool            // the awaited snapshot follows a loss
	removed bool            // closed by the application
	server  bool            // made by the server (see Options.OnServerSubscribe)

	ready    chan struct{} // closed when the first subscribe is answered
	readyErr error         // set before ready is closed

	notify chan struct{} // capacity 1: events or an error arrived

	mu     sync.Mutex // guards q, parked, err and closed
	q      []Event
	parked bool  // dropped on overflow; resubscribe once half drained
	err    error // the stream's end, reported after q is drained
	closed bool
}

func newSubscription(c *Client, topic string, o *SubscribeOptions) *Subscription {
	s := &Subscription{
		c:      c,
		topic:  topic,
		buffer: c.opts.Buffer,
		ready:  make(chan struct{}),
		notify: make(chan struct{}, 1),
	}
	if o != nil {
		if o.Since != nil {
			s.pos, s.hasPos = *o.Since, true
		}
		s.snap = o.Snapshot
		if o.Buffer > 0 {
			s.buffer = o.Buffer
		}
	}
	return s
}

// Topic returns the subscription's topic.
func (s *Subscription) Topic() string { return s.topic }

// Next returns the subscription's next event, waiting for one until ctx
// ends. Events come in order: messages by Seq with no duplicate and no
// gap, a snapshot where asked for, and a reset (followed by a snapshot)
// where messages were lost. Across reconnects the stream goes on: Next
// just waits meanwhile.
//
// After [Subscription.Close], Next returns [ErrClosed]. When the client
// stops ([ErrClosed] after [Client.Close], or why it gave up, see
// [Client.Err]) or the server refuses to resume the subscription (a
// [*ServerError], such as one matching [fanout.ErrForbidden]), Next
// returns the events already buffered, then that error.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if len(s.q) > 0 {
			ev := s.q[0]
			s.q[0] = Event{}
			s.q = s.q[1:]
			resume := s.parked && len(s.q) <= s.buffer/2
			if resume {
				s.parked = false
			}
			s.mu.Unlock()
			if resume {
				s.c.post(request{op: opResume, sub: s})
			}
			return ev, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return Event{}, err
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Close ends the subscription: the client unsubscribes on the server, and
// Next returns [ErrClosed]. Close does not block and is idempotent.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.q = nil
	if s.err == nil {
		s.err = ErrClosed
	}
	s.mu.Unlock()
	s.signal()
	s.c.post(request{op: opRemove, sub: s})
	return nil
}

func (s *Subscription) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// push buffers ev. It reports false, and parks the subscription, when the
// buffer is full. A closed subscription takes and forgets everything.
func (s *Subscription) push(ev Event) bool {
	s.mu.Lock()
	if s.closed || s.err != nil {
		s.mu.Unlock()
		return true
	}
	if len(s.q) >= s.buffer {
		s.parked = true
		s.mu.Unlock()
		return false
	}
	s.q = append(s.q, ev)
	s.mu.Unlock()
	s.signal()
	return true
}

// pushAll buffers evs whatever the buffer holds: a reset and its snapshot
// are never dropped. They come only right after a subscribe, which is sent
// only while the buffer is not full, so the buffer exceeds its bound by at
// most two.
func (s *Subscription) pushAll(evs ...Event) {
	s.mu.Lock()
	if !s.closed && s.err == nil {
		s.q = append(s.q, evs...)
	}
	s.mu.Unlock()
	s.signal()
}

// isParked reports whether the subscription waits for the application to
// drain its buffer.
func (s *Subscription) isParked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parked
}

// end makes Next return err once the buffered events are taken.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.signal()
}

// answer settles the first subscribe.
func (s *Subscription) answer(err error) {
	if s.started {
		return
	}
	s.started = true
	s.readyErr = err
	close(s.ready)
}
