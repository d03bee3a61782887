package fanout

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Observer receives the hub's events, for metrics. Observe is called
// synchronously from the goroutine that caused the event, never under a hub
// lock, possibly concurrently; it must be fast and must not block. It must
// not keep e.Err's wrapped values beyond the call unless it copies them.
//
// Events that happen per message and per session (EventDeliver,
// EventWrite) are emitted once per fan-out and once per write, never once
// per delivered message, so that an observer costs the hot path a few
// nanoseconds per batch.
type Observer interface {
	Observe(e Event)
}

// EventType says what happened.
type EventType int

// Event types. The fields of [Event] that each one sets are named; Type is
// always set.
const (
	// EventSessionOpen: a session was created (Session).
	EventSessionOpen EventType = iota + 1
	// EventSessionClose: a session ended; Code says why (Session, Code,
	// and Transport when the session had a connection, see
	// [Session.Attach]). Code [CloseSlowConsumer] is a client that did not
	// keep up: its queue was full or a write timed out.
	EventSessionClose
	// EventPublish: a message was published through this hub (Topic; N is
	// its payload size in bytes).
	EventPublish
	// EventDeliver: a message reached this hub from the backplane (Topic;
	// N is the number of local subscriptions it was handed to).
	EventDeliver
	// EventSubscribe: a session subscribed to Topic (Session).
	EventSubscribe
	// EventUnsubscribe: a session left Topic (Session).
	EventUnsubscribe
	// EventResync: the hub found a gap in Topic and filled it from
	// history; N is the number of messages recovered.
	EventResync
	// EventResyncFailed: a gap in Topic could not be filled (history no
	// longer reached back); its sessions were closed with [CloseResync].
	EventResyncFailed
	// EventError: a background operation failed (Topic, Op, Err): "unsubscribe"
	// of a topic on the backplane, or the "resync" history read. The hub
	// logs it at Warn too.
	EventError
	// EventPublishFailed: a publish was refused or failed (Topic, Err, and
	// Transport when a client or service published through a transport:
	// "websocket", "sse", "grpc" or "http"). [ErrorCode] of Err says why.
	EventPublishFailed
	// EventSubscribeFailed: a session's subscribe was refused or failed
	// (Session, Topic, Err, Transport). [ErrorCode] of Err says why.
	EventSubscribeFailed
	// EventHandshake: a transport accepted or refused a connection
	// (Transport, Duration from the request's arrival to the answer; Err
	// is nil when accepted, else the refusal, whose [ErrorCode] is the
	// reason: "unauthenticated", "forbidden" (an origin or a topic the
	// client may not use), "closed" (the server is draining), "bad_request",
	// "too_large", "too_many_subscriptions"). See [Hub.ObserveHandshake].
	EventHandshake
	// EventAttach: a session was given its connection (Session, Transport);
	// see [Session.Attach]. Its EventSessionClose carries the same
	// Transport.
	EventAttach
	// EventWrite: a session's writer wrote a batch to its client (Session,
	// Transport). N is the number of live messages in the batch (not the
	// history or snapshot a subscribe replays); Queue is the number of
	// frames that were queued when the writer took the batch; Duration is
	// the delivery latency of the batch's oldest live message, from the
	// publish that created it to the end of this write (zero when N is
	// 0). A publisher's and a writer's clocks may differ across nodes.
	EventWrite
	// EventBackplane: a backplane call returned (Op: "publish",
	// "subscribe", "unsubscribe", "history", "snapshot" or "delete";
	// Duration; Err when it failed, Topic).
	EventBackplane
	// EventBackplaneDown: a backplane call failed with [ErrUnavailable]
	// after the backplane had worked (or on the first call): the hub logs
	// it at Warn with Err. [Hub.Ready] asks the backplane itself.
	EventBackplaneDown
	// EventBackplaneUp: a backplane call succeeded after EventBackplaneDown;
	// the hub logs it at Info.
	EventBackplaneUp
)

var eventNames = [...]string{
	EventSessionOpen:     "session_open",
	EventSessionClose:    "session_close",
	EventPublish:         "publish",
	EventDeliver:         "deliver",
	EventSubscribe:       "subscribe",
	EventUnsubscribe:     "unsubscribe",
	EventResync:          "resync",
	EventResyncFailed:    "resync_failed",
	EventError:           "error",
	EventPublishFailed:   "publish_failed",
	EventSubscribeFailed: "subscribe_failed",
	EventHandshake:       "handshake",
	EventAttach:          "attach",
	EventWrite:           "write",
	EventBackplane:       "backplane",
	EventBackplaneDown:   "backplane_down",
	EventBackplaneUp:     "backplane_up",
}

// String returns the event type's name in snake case, e.g. "publish_failed".
func (t EventType) String() string {
	if t > 0 && int(t) < len(eventNames) {
		return eventNames[t]
	}
	return "unknown"
}

// Event is one observation. Which fields are set depends on Type.
type Event struct {
	Type EventType
	// Topic is the topic concerned, if any.
	Topic string
	// Session is the session concerned, if any (see [Session.ID]).
	Session uint64
	// Transport names the transport concerned, if any: "websocket", "sse",
	// "grpc" or "http", or a third-party transport's name.
	Transport string
	// Op names the operation of EventBackplane and EventError.
	Op string
	// Code is the close code of EventSessionClose.
	Code CloseCode
	// N counts bytes or messages, as each type says.
	N int
	// Queue is the queue depth of EventWrite.
	Queue int
	// Duration is how long something took, as each type says.
	Duration time.Duration
	// Err is the error of a failure.
	Err error
}

// ObserveHandshake reports the outcome of a connection's handshake to the
// hub's observer, as [EventHandshake]: transport names the transport,
// start is when the request arrived, and err is nil when the connection
// was accepted or the refusal that was answered. Transports call it once
// per connection attempt; a refusal is logged at Debug.
func (h *Hub) ObserveHandshake(transport string, start time.Time, err error) {
	if err != nil {
		h.opts.Logger.Debug("fanout: handshake refused", "transport", transport, "code", ErrorCode(err), "err", err)
	}
	if h.opts.Observer == nil {
		return
	}
	h.opts.Observer.Observe(Event{Type: EventHandshake, Transport: transport, Duration: time.Since(start), Err: err})
}

func (h *Hub) observe(e Event) {
	if h.opts.Observer != nil {
		h.opts.Observer.Observe(e)
	}
}

// logClose logs a session's end: at Info when the client did not keep up,
// lost a topic, sent too much or stopped answering, at Warn after a server
// error, and at Debug otherwise.
func (h *Hub) logClose(s *Session, transport string, cf *CloseFrame) {
	lvl := slog.LevelDebug
	switch cf.Code {
	case CloseSlowConsumer, CloseResync, CloseRateLimited, CloseTimeout, CloseTooLarge:
		lvl = slog.LevelInfo
	case CloseInternal:
		lvl = slog.LevelWarn
	}
	ctx := context.Background()
	if !h.opts.Logger.Enabled(ctx, lvl) {
		return
	}
	h.opts.Logger.Log(ctx, lvl, "fanout: session closed", "session", s.id, "principal", s.principal.ID,
		"transport", transport, "code", int(cf.Code), "reason", cf.Reason)
}

// backgroundError reports a failed background operation as [EventError]
// and logs it at Warn.
func (h *Hub) backgroundError(topic, op string, err error) {
	h.opts.Logger.Warn("fanout: "+op+" failed", "topic", topic, "err", err)
	h.observe(Event{Type: EventError, Topic: topic, Op: op, Err: fmt.Errorf("%s: %w", op, err)})
}
