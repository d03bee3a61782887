package client

import (
	"sync"
	"time"

	"github.com/gofanout/fanout"
)

// StatusKind says what a [Status] reports.
type StatusKind int

// Status kinds.
const (
	// StatusConnecting: a connection attempt starts. Attempt counts the
	// attempts since the last healthy connection.
	StatusConnecting StatusKind = iota + 1
	// StatusConnected: the connection is up; subscriptions are being
	// resumed.
	StatusConnected
	// StatusDisconnected: a connection ended or an attempt failed. Code and
	// Reason are the server's close code and reason (Code is 0 when the
	// connection failed without one), Err the error, and Retry the wait
	// before the next attempt.
	StatusDisconnected
	// StatusResumed: a subscription was resumed from its last position.
	// Recovered reports whether history reached back, so that nothing was
	// missed; when false, the subscription yields an [EventReset] and a
	// snapshot next.
	StatusResumed
	// StatusStopped: the client stopped, after Close (Err is [ErrClosed])
	// or because it gave up (Err says why). It is the last status.
	StatusStopped
)

// String returns the kind's name.
func (k StatusKind) String() string {
	switch k {
	case StatusConnecting:
		return "connecting"
	case StatusConnected:
		return "connected"
	case StatusDisconnected:
		return "disconnected"
	case StatusResumed:
		return "resumed"
	case StatusStopped:
		return "stopped"
	}
	return "unknown"
}

// Status reports a change of the client's connection or of a
// subscription, for logs, metrics and user interfaces. Which fields are
// set depends on Kind.
type Status struct {
	Kind StatusKind
	// Attempt is the number of the connection attempt since the last
	// healthy connection, from 1 (StatusConnecting).
	Attempt int
	// URL is the endpoint of the attempt (StatusConnecting).
	URL string
	// Code and Reason are the close code and reason the server gave
	// (StatusDisconnected).
	Code   fanout.CloseCode
	Reason string
	// Err is what ended the connection (StatusDisconnected) or the client
	// (StatusStopped).
	Err error
	// Retry is the wait before the next attempt (StatusDisconnected).
	Retry time.Duration
	// Topic and Recovered report a resumed subscription (StatusResumed).
	Topic     string
	Recovered bool
}

// notifier calls the application's OnStatus from its own goroutine, in
// order, so that a slow callback delays only later statuses and a callback
// may call the client's methods.
type notifier struct {
	fn   func(Status)
	wake chan struct{} // capacity 1
	done chan struct{} // closed when run returns

	mu     sync.Mutex // guards q and closed
	q      []Status
	closed bool
}

func newNotifier(fn func(Status)) *notifier {
	n := &notifier{fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if fn == nil {
		close(n.done)
	}
	return n
}

// post queues s; it never blocks.
func (n *notifier) post(s Status) {
	if n.fn == nil {
		return
	}
	n.mu.Lock()
	if !n.closed {
		n.q = append(n.q, s)
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// close makes run return once the queued statuses are delivered.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run() {
	defer close(n.done)
	for {
		n.mu.Lock()
		if len(n.q) > 0 {
			s := n.q[0]
			n.q[0] = Status{}
			n.q = n.q[1:]
			n.mu.Unlock()
			n.fn(s)
			continue
		}
		closed := n.closed
		n.mu.Unlock()
		if closed {
			return
		}
		<-n.wake
	}
}
