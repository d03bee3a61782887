package fanout

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// FrameType says what a [Frame] carries.
type FrameType uint8

// Frame types.
const (
	FrameMessage  FrameType = iota + 1 // Message is set
	FrameReply                         // Reply is set
	FrameSnapshot                      // Snapshot is set
	FrameClose                         // Close is set; it is the session's last frame
	FrameJoin                          // Event is set: a session joined the topic
	FrameLeave                         // Event is set: a session left the topic
)

// Frame is one logical server frame, which a transport writes in its own wire
// format. Exactly the field named by Type is set.
type Frame struct {
	Type     FrameType
	Message  *Message
	Reply    *Reply
	Snapshot *SnapshotFrame
	Close    *CloseFrame
	Expiry   *ExpiryFrame
	Event    *PresenceEvent
}

// Reply answers a client command.
type Reply struct {
	// ID echoes the command's id.
	ID string
	// Topic is the command's topic, if it had one.
	Topic string
	// Err is nil when the command succeeded; [ErrorCode] gives its code.
	Err error
	// Position is the topic's position for subscribe and publish replies.
	Position *Position
	// Recovered is set on replies to subscribe with since: whether history
	// reached back, so that nothing was missed. When false, a snapshot
	// frame follows.
	Recovered *bool
	// ExpiresAt is set on the replies to auth and refresh: when the
	// session's new credentials expire (zero: never).
	ExpiresAt time.Time
	// Snapshot is set on a [FrameSubscribed] that a snapshot frame
	// follows.
	Snapshot bool
	// Presence is set on replies to presence: the topic's entries.
	Presence []ClientInfo
	// Count is set on replies to presence_count.
	Count *int
}

// SnapshotFrame carries a topic's state: its latest message per key and the
// position that state corresponds to. Live messages after Position follow.
type SnapshotFrame struct {
	Topic    string
	Items    []*Message
	Position Position
}

// CloseFrame ends a session.
type CloseFrame struct {
	Code      CloseCode
	Reason    string
	Reconnect bool
}

// SubscribeRequest is a subscribe command.
type SubscribeRequest struct {
	// ID is echoed in the reply.
	ID    string
	Topic string
	// Since, when set, resumes after that position: the session receives
	// every message after it, or, when history no longer reaches back, a
	// reply with recovered=false and the snapshot.
	Since *Position
	// Snapshot asks for the topic's current state first (when Since is nil).
	Snapshot bool

	server bool // made by Hub.Subscribe: not authorized, answered with FrameSubscribed
}

// Session is one connected client on any transport. A transport creates it
// with [Hub.NewSession], feeds it the client's commands, runs exactly one
// writer that takes frames with [Session.Next], and calls [Session.Close]
// when the connection ends. All methods are safe for concurrent use.
type Session struct {
	// The first 128 bytes hold what every delivery touches (the lock, the
	// queue, the admission counts, the wake-up), and the struct is padded
	// to 384 bytes (six cache lines, an allocation size class) so that it
	// starts on a cache line: at 10,000 sessions per message, every extra
	// cache miss per delivery shows. layout_test.go checks both.
	hub       *Hub
	mu        sync.Mutex // guards queue, closing, pendN, pendBytes and the fields after done
	queue     frameQueue
	closing   *CloseFrame // set once; no frames are queued afterwards
	pendN     int         // live messages waiting in subscriptions' pending
	pendBytes int

	notify chan struct{} // capacity 1: there is something for Next
	writer atomic.Pointer[writer]
	done   chan struct{} // closed when closing is set

	id        uint64
	principal Principal
	indexedID string // the principal ID the hub indexes the session by; guarded by hub.sessMu

	subs       map[string]*subscription
	drain      bool // write the queue before the close frame
	closeSent  bool
	released   bool
	tokens     float64
	lastRefill time.Time
	transport  string      // set by Attach, for events
	created    time.Time   // for inspection
	expiry     *time.Timer // closes the session when its credentials expire (expiry.go)
	awaiting   bool        // no credentials yet: only auth may come (refresh.go)

	_ [48]byte // to 384 bytes
}

// subscription is one session's interest in one topic.
type subscription struct {
	sess      *Session
	topicName string
	topic     *topic // set once acquired; guarded by sess.mu
	index     int    // in topic.subs; guarded by topic.mu
	pres      uint8  // presence flags (presence.go); guarded by sess.mu

	// Guarded by sess.mu.
	buffering bool       // initial read in progress: live messages wait
	pending   []*Message // live messages that arrived while buffering
	epoch     string     // last delivered position
	last      uint64
}

// NewSession creates a session for an authenticated principal. It fails
// with [ErrClosed] once the hub is shutting down.
func (h *Hub) NewSession(p Principal) (*Session, error) {
	h.sessMu.Lock()
	if h.draining {
		h.sessMu.Unlock()
		return nil, fmt.Errorf("new session: %w", ErrClosed)
	}
	h.nextID++
	s := &Session{
		hub:        h,
		id:         h.nextID,
		principal:  p,
		subs:       make(map[string]*subscription),
		tokens:     float64(h.opts.CommandBurst),
		lastRefill: time.Now(),
		created:    time.Now(),
		notify:     make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	h.sessions[s] = struct{}{}
	h.indexSession(s, p.ID)
	h.sessMu.Unlock()
	s.startExpiry()
	h.observe(Event{Type: EventSessionOpen, Session: s.id})
	return s, nil
}

// ID returns the session's id, unique within its hub.
func (s *Session) ID() uint64 { return s.id }

// Principal returns who the session acts as; after [Session.Refresh] or
// [Session.Authenticate], the new principal.
func (s *Session) Principal() Principal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.principal
}

// Done is closed when the session is closing: its writer should take the
// remaining frames with Next, ending with the close frame.
func (s *Session) Done() <-chan struct{} { return s.done }

// Allow spends one command from the session's rate limit and reports whether
// the command may proceed. A transport calls it once per client command and
// closes the session with [CloseRateLimited] on false.
func (s *Session) Allow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	o := &s.hub.opts
	s.tokens = min(float64(o.CommandBurst), s.tokens+now.Sub(s.lastRefill).Seconds()*o.CommandRate)
	s.lastRefill = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// Subscribe subscribes the session to a topic. On success it queues the
// reply, then what the request asked for (history after Since, or the
// snapshot), then every live message, in Seq order with no gap and no
// duplicate. On failure it queues nothing and returns the error, which
// matches [ErrInvalidTopic], [ErrForbidden], [ErrAlreadySubscribed],
// [ErrTooManySubscriptions], [ErrClosed] or the backplane's error.
func (s *Session) Subscribe(ctx context.Context, req SubscribeRequest) error {
	err := s.subscribe(ctx, req)
	if err != nil {
		s.observeFailure(EventSubscribeFailed, req.Topic, err)
		return err
	}
	s.hub.observe(Event{Type: EventSubscribe, Topic: req.Topic, Session: s.id})
	return nil
}

// observeFailure reports a client's failed subscribe or publish.
func (s *Session) observeFailure(t EventType, topic string, err error) {
	if s.hub.opts.Observer == nil {
		return
	}
	if errors.Is(err, ErrInvalidTopic) {
		topic = "" // not a topic: whatever the client sent
	}
	s.mu.Lock()
	tr := s.transport
	s.mu.Unlock()
	s.hub.observe(Event{Type: t, Topic: topic, Session: s.id, Transport: tr, Err: err})
}

func (s *Session) subscribe(ctx context.Context, req SubscribeRequest) error {
	if err := ValidateTopic(req.Topic); err != nil {
		return err
	}
	if !req.server {
		if err := s.hub.Authorize(ctx, s.Principal(), req.Topic, ActionSubscribe); err != nil {
			return err
		}
	}
	sub := &subscription{sess: s, topicName: req.Topic, buffering: true}
	s.mu.Lock()
	switch {
	case s.closing != nil:
		s.mu.Unlock()
		return ErrClosed
	case s.subs[req.Topic] != nil:
		s.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrAlreadySubscribed, req.Topic)
	case len(s.subs) >= s.hub.opts.MaxSubscriptions:
		s.mu.Unlock()
		return fmt.Errorf("%w: limit %d", ErrTooManySubscriptions, s.hub.opts.MaxSubscriptions)
	}
	s.subs[req.Topic] = sub
	s.mu.Unlock()

	t, err := s.hub.acquire(ctx, sub)
	if err != nil {
		s.mu.Lock()
		delete(s.subs, req.Topic)
		s.mu.Unlock()
		return fmt.Errorf("subscribe %q: %w", req.Topic, err)
	}
	s.mu.Lock()
	if s.subs[req.Topic] != sub { // unsubscribed or closed meanwhile
		s.mu.Unlock()
		s.hub.release(t, sub)
		return fmt.Errorf("subscribe %q: %w", req.Topic, ErrClosed)
	}
	sub.topic = t
	s.mu.Unlock()

	to := s.hub.topicOptions(req.Topic)
	reply, first, start, err := s.hub.initialRead(ctx, req, to.limits())
	if err != nil {
		s.removeSub(sub)
		return fmt.Errorf("subscribe %q: %w", req.Topic, err)
	}
	pres, err := s.presenceJoin(ctx, &to, req.Topic)
	if err != nil {
		s.removeSub(sub)
		return fmt.Errorf("subscribe %q: %w", req.Topic, err)
	}

	s.mu.Lock()
	if s.subs[req.Topic] != sub { // unsubscribed or closed meanwhile
		s.mu.Unlock()
		if pres != 0 {
			s.presenceLeave(req.Topic, pres&subPresent)
		}
		return fmt.Errorf("subscribe %q: %w", req.Topic, ErrClosed)
	}
	sub.pres = pres
	if req.server {
		reply.Snapshot = len(first) > 0
		s.pushLocked(Frame{Type: FrameSubscribed, Reply: reply})
	} else {
		s.pushLocked(Frame{Type: FrameReply, Reply: reply})
	}
	// What the subscribe owes (history, a snapshot) enters the queue as one
	// group, under its own budget (see admitLocked).
	owed := 0
	for _, f := range first {
		owed += frameSize(f)
	}
	if len(first) > 0 && s.admitLocked(owed, true) {
		for _, f := range first {
			s.queue.push(f, frameSize(f), true)
		}
	}
	sub.epoch, sub.last = start.Epoch, start.Seq
	sub.buffering = false
	pending := sub.pending
	sub.pending = nil
	for _, m := range pending {
		s.pendN--
		s.pendBytes -= m.size()
		sub.deliverLocked(m)
	}
	s.mu.Unlock()
	s.signal()
	if pres&subJoinLeave != 0 {
		s.presenceEvent(req.Topic, false)
	}
	return nil
}

// initialRead reads what a subscribe starts with: its reply, the frames
// that follow it, and the position live delivery continues after.
func (h *Hub) initialRead(ctx context.Context, req SubscribeRequest, limits *TopicLimits) (*Reply, []Frame, Position, error) {
	if req.Since != nil {
		hist, err := h.bp.History(ctx, req.Topic, *req.Since)
		if err != nil {
			return nil, nil, Position{}, err
		}
		hist = trimHistory(hist, limits, time.Now())
		if hist.Complete {
			start := Position{Epoch: hist.Position.Epoch, Seq: req.Since.Seq}
			frames := make([]Frame, len(hist.Messages))
			for i, m := range hist.Messages {
				frames[i] = Frame{Type: FrameMessage, Message: m}
				start = m.Position
			}
			ok := true
			return &Reply{ID: req.ID, Topic: req.Topic, Position: &start, Recovered: &ok}, frames, start, nil
		}
	}
	snap, err := h.bp.Snapshot(ctx, req.Topic)
	if err != nil {
		return nil, nil, Position{}, err
	}
	pos := snap.Position
	r := &Reply{ID: req.ID, Topic: req.Topic, Position: &pos}
	if req.Since == nil && !req.Snapshot {
		return r, nil, pos, nil
	}
	if req.Since != nil {
		r.Recovered = new(bool)
	}
	return r, []Frame{{Type: FrameSnapshot, Snapshot: &SnapshotFrame{Topic: req.Topic, Items: snap.Items, Position: pos}}}, pos, nil
}

// Unsubscribe ends the session's subscription to topic and queues an ok
// reply. It fails with [ErrNotSubscribed] when there is none.
func (s *Session) Unsubscribe(ctx context.Context, id, topic string) error {
	s.mu.Lock()
	sub := s.subs[topic]
	s.mu.Unlock()
	if sub == nil {
		return fmt.Errorf("%w: %q", ErrNotSubscribed, topic)
	}
	s.removeSub(sub)
	s.hub.observe(Event{Type: EventUnsubscribe, Topic: topic, Session: s.id})
	s.Reply(Reply{ID: id, Topic: topic})
	return nil
}

// removeSub forgets sub and releases its topic.
func (s *Session) removeSub(sub *subscription) {
	s.mu.Lock()
	if s.subs[sub.topicName] == sub {
		delete(s.subs, sub.topicName)
		// What the subscribe owed and the client has not read yet is not
		// written: the client left the topic. So subscribing and leaving
		// again and again cannot pile up snapshots.
		s.queue.dropOwed(sub.topicName)
	}
	for _, m := range sub.pending {
		s.pendN--
		s.pendBytes -= m.size()
	}
	sub.pending = nil
	t := sub.topic
	sub.topic = nil
	pres := sub.pres
	sub.pres = 0
	s.mu.Unlock()
	if t != nil {
		s.hub.release(t, sub)
	}
	if pres != 0 {
		s.presenceLeave(sub.topicName, pres)
	}
}

// Publish publishes on behalf of the session's principal, if the authorizer
// allows it, and queues a reply with the message's position.
func (s *Session) Publish(ctx context.Context, id, topic string, data []byte, opts ...PublishOption) error {
	// What the client sent is checked before it is authorized: a
	// malformed publish is a bad request whoever sends it.
	m, idem, err := s.hub.newMessage(topic, data, opts)
	if err != nil {
		s.observeFailure(EventPublishFailed, topic, err)
		return err
	}
	if err := s.hub.Authorize(ctx, s.Principal(), topic, ActionPublish); err != nil {
		s.observeFailure(EventPublishFailed, topic, err)
		return err
	}
	s.mu.Lock()
	tr := s.transport
	s.mu.Unlock()
	pos, err := s.hub.publish(ctx, m, idem, tr)
	if err != nil {
		return err
	}
	s.Reply(Reply{ID: id, Topic: topic, Position: &pos})
	return nil
}

// Reply queues a reply, for commands the transport answers itself (ping,
// or a command that failed).
func (s *Session) Reply(r Reply) {
	s.mu.Lock()
	s.pushLocked(Frame{Type: FrameReply, Reply: &r})
	s.mu.Unlock()
	s.signal()
}

// Next waits for frames to write and returns them, appended to buf[:0]; it
// returns at most cap(buf) frames, or 256 when buf has no capacity. After the
// session closes, Next returns the queued frames (when the close drains),
// then the close frame, then the error [ErrClosed]. Only one goroutine, the
// session's writer, may call Next. When Next had to wait, it yields
// (runtime.Gosched) before it takes the frames, and yields again while a
// yield found more queued, up to half a batch, so that a publisher in the
// middle of its fan-out queues more: under load, batches grow; when nothing
// else is runnable, the yield returns at once.
func (s *Session) Next(ctx context.Context, buf []Frame) ([]Frame, error) {
	return s.next(ctx, buf, nil)
}

// batchStats describes what the writer took from the queue, for
// [EventWrite].
type batchStats struct {
	queued int       // frames queued when the batch was taken
	live   int       // live messages taken
	oldest time.Time // when the first live message taken was published
}

// next is Next, and counts what it takes in st unless st is nil.
func (s *Session) next(ctx context.Context, buf []Frame, st *batchStats) ([]Frame, error) {
	max := cap(buf)
	if max == 0 {
		max = 256
	}
	buf = buf[:0]
	for {
		s.mu.Lock()
		if s.queue.n > 0 && (s.closing == nil || s.drain) {
			if st != nil && s.queue.n > st.queued {
				st.queued = s.queue.n
			}
			buf = s.queue.pop(buf, max, st)
			s.mu.Unlock()
			if len(buf) == 0 {
				continue // only frames dropped after they were queued
			}
			return buf, nil
		}
		if s.closing != nil {
			defer s.mu.Unlock()
			if s.closeSent {
				return buf, ErrClosed
			}
			s.closeSent = true
			s.queue.reset()
			return append(buf, Frame{Type: FrameClose, Close: s.closing}), nil
		}
		s.mu.Unlock()
		if done := ctx.Done(); done == nil {
			<-s.notify // a plain receive parks and wakes faster than a select
		} else {
			select {
			case <-done: // first, so that a done context never waits
				return buf, ctx.Err()
			default:
			}
			select {
			case <-s.notify:
			case <-done:
				return buf, ctx.Err()
			}
		}
		s.settle(max)
	}
}

// settle is what a writer does after a wake-up, before it takes frames. The
// wake-up comes from the first frame into an empty queue, while the
// publisher that queued it is mid-way through its fan-out: settle yields
// (runtime.Gosched) so that the publisher queues more, and yields again
// while the last yield found more queued, until half of limit is queued.
// Under load this turns one wake-up per message into one per batch. When
// nothing else is runnable a yield returns at once and nothing more is
// queued, so an idle server adds no latency; a session whose publisher
// has finished yields once, as before.
func (s *Session) settle(limit int) {
	s.mu.Lock()
	seen := s.queue.n
	s.mu.Unlock()
	for seen < limit/2 {
		runtime.Gosched()
		s.mu.Lock()
		n := s.queue.n
		s.mu.Unlock()
		if n <= seen {
			return
		}
		seen = n
	}
}

// Close closes the session with code and reason: it queues nothing more,
// its writer gets the close frame next (after the queued frames when code is
// [CloseShutdown]), and it leaves all its topics. The first code given wins.
// Transports call Close when the connection ends. Close is idempotent.
func (s *Session) Close(code CloseCode, reason string) {
	s.close(code, reason, code == CloseShutdown)
	s.mu.Lock()
	if s.released {
		s.mu.Unlock()
		return
	}
	s.released = true
	subs := make([]*subscription, 0, len(s.subs))
	for _, sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		s.removeSub(sub)
	}
	h := s.hub
	h.sessMu.Lock()
	delete(h.sessions, s)
	h.unindexSession(s)
	if h.gone != nil && len(h.sessions) == 0 {
		select {
		case <-h.gone:
		default:
			close(h.gone)
		}
	}
	h.sessMu.Unlock()
	s.mu.Lock()
	tr, cf := s.transport, s.closing
	s.mu.Unlock()
	h.observe(Event{Type: EventSessionClose, Session: s.id, Transport: tr, Code: cf.Code})
	h.logClose(s, tr, cf)
}

// close marks the session closing without leaving its topics, so that it
// may be called under a topic's lock.
func (s *Session) close(code CloseCode, reason string, drain bool) {
	s.mu.Lock()
	s.closeLocked(code, reason, drain)
	s.mu.Unlock()
	s.signal()
}

func (s *Session) closeLocked(code CloseCode, reason string, drain bool) {
	if s.closing != nil {
		return
	}
	if reason == "" {
		reason = code.String()
	}
	s.closing = &CloseFrame{Code: code, Reason: reason, Reconnect: code.Reconnect()}
	s.drain = drain
	s.stopExpiryLocked()
	if !drain {
		s.queue.reset()
	}
	for _, sub := range s.subs {
		sub.pending = nil
	}
	s.pendN, s.pendBytes = 0, 0
	close(s.done)
}

// signal wakes the writer.
func (s *Session) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if w := s.writer.Load(); w != nil {
		w.wake()
	}
}

// takeClose marks the close frame as written by the session's writer,
// which wrote a close frame of its own.
func (s *Session) takeClose() {
	s.mu.Lock()
	s.closeSent = true
	s.queue.reset()
	s.mu.Unlock()
}

// abort drops the session's connection, if it has one.
func (s *Session) abort() {
	if w := s.writer.Load(); w != nil {
		w.abort()
	}
}

// pushLocked queues a reply. s.mu must be held.
func (s *Session) pushLocked(f Frame) {
	if size := frameSize(f); s.admitLocked(size, false) {
		s.queue.push(f, size, false)
	}
}

// admitLocked is the session's one admission rule: every frame enters the
// queue only after it said yes, and a no closes the session with
// [CloseSlowConsumer] (after which nothing is queued). s.mu must be held.
//
// Live messages and replies, with the live messages that wait while a
// subscribe reads history (pending), are bounded by QueueMessages and
// QueueBytes. What subscribes owe (history, snapshots: owed) is bounded by
// CatchUpBytes on its own, since it may exceed a live queue's worth, but a
// subscribe's whole catch-up is admitted when nothing else is owed: a topic
// whose state is larger than the budget can still be resumed, one at a
// time.
func (s *Session) admitLocked(size int, owed bool) bool {
	if s.closing != nil {
		return false
	}
	o := &s.hub.opts
	q := &s.queue
	if owed {
		if q.owed == 0 || q.owed+size <= o.CatchUpBytes {
			return true
		}
	} else if q.counted+s.pendN < o.QueueMessages && q.bytes+s.pendBytes+size <= o.QueueBytes {
		return true
	}
	s.closeLocked(CloseSlowConsumer, "", false)
	return false
}

// deliver hands a live message to the subscription.
func (sub *subscription) deliver(m *Message) {
	s := sub.sess
	s.mu.Lock()
	wake := s.queue.n == 0
	sub.deliverLocked(m)
	s.mu.Unlock()
	if wake {
		s.signal()
	}
}

func (sub *subscription) deliverLocked(m *Message) {
	s := sub.sess
	if s.closing != nil {
		return
	}
	size := m.size()
	if sub.buffering {
		if s.admitLocked(size, false) {
			sub.pending = append(sub.pending, m)
			s.pendN++
			s.pendBytes += size
		}
		return
	}
	p := m.Position
	if p.Epoch == sub.epoch && p.Seq <= sub.last {
		return // already delivered
	}
	if p.Seq != sub.last+1 || (p.Epoch != sub.epoch && sub.last != 0) {
		s.closeLocked(CloseResync, "gap in topic "+m.Topic, false)
		return
	}
	sub.epoch, sub.last = p.Epoch, p.Seq
	if s.admitLocked(size, false) {
		s.queue.pushEntry(queued{msg: m, size: int32(size)})
	}
}

func frameSize(f Frame) int {
	switch f.Type {
	case FrameMessage:
		return f.Message.size()
	case FrameJoin, FrameLeave:
		return f.Event.size()
	case FrameSnapshot:
		n := 64
		for _, m := range f.Snapshot.Items {
			n += m.size()
		}
		return n
	}
	return 64
}

// queued is one entry of a session's queue: a message (the common case, kept
// small) or another frame, and what it costs. An entry with neither is a
// frame dropped after it was queued.
type queued struct {
	msg   *Message
	other *Frame
	size  int32
	owed  bool // counts against the catch-up budget, not the live limits
}

// frameQueue is a growable ring of frames. Its length is zero or a power of
// two. counted and bytes measure the live entries (messages and replies),
// owed the bytes of the catch-up entries (history and snapshots).
type frameQueue struct {
	buf     []queued
	head    int
	n       int
	counted int
	bytes   int
	owed    int
}

func (q *frameQueue) push(f Frame, size int, owed bool) {
	e := queued{size: int32(size), owed: owed}
	if f.Type == FrameMessage {
		e.msg = f.Message
	} else {
		e.other = &f
	}
	q.pushEntry(e)
}

func (q *frameQueue) pushEntry(e queued) {
	if q.n == len(q.buf) {
		nb := make([]queued, max(8, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = e
	q.n++
	if e.owed {
		q.owed += int(e.size)
	} else {
		q.counted++
		q.bytes += int(e.size)
	}
}

// dropOwed drops the catch-up entries of topic that are still queued.
func (q *frameQueue) dropOwed(topic string) {
	if q.owed == 0 {
		return
	}
	mask := len(q.buf) - 1
	for i := 0; i < q.n; i++ {
		e := &q.buf[(q.head+i)&mask]
		if !e.owed || (e.msg == nil && e.other == nil) {
			continue
		}
		if (e.msg != nil && e.msg.Topic == topic) || (e.other != nil && e.other.Snapshot != nil && e.other.Snapshot.Topic == topic) {
			q.owed -= int(e.size)
			e.msg, e.other, e.size = nil, nil, 0
		}
	}
}

func (q *frameQueue) pop(dst []Frame, max int, st *batchStats) []Frame {
	mask := len(q.buf) - 1
	popped := len(dst)
	for q.n > 0 && len(dst) < max {
		e := &q.buf[q.head]
		switch {
		case e.msg != nil:
			dst = append(dst, Frame{Type: FrameMessage, Message: e.msg})
			if st != nil && !e.owed {
				if st.live == 0 {
					st.oldest = e.msg.Time
				}
				st.live++
			}
		case e.other != nil:
			dst = append(dst, *e.other)
		}
		if e.owed {
			q.owed -= int(e.size)
		} else {
			q.counted--
			q.bytes -= int(e.size)
		}
		*e = queued{}
		q.head = (q.head + 1) & mask
		q.n--
	}
	if q.n == 0 {
		q.head, q.counted, q.bytes, q.owed = 0, 0, 0, 0
		if len(q.buf) > 256 && len(dst)-popped < len(q.buf)/8 {
			// The burst that grew the ring is over: give its memory back.
			// A ring that still fills up is kept, so that steady traffic
			// does not grow and drop it again and again.
			q.buf = nil
		}
	}
	return dst
}

func (q *frameQueue) reset() {
	q.buf, q.head, q.n, q.counted, q.bytes, q.owed = nil, 0, 0, 0, 0, 0
}
