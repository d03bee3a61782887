package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
)

// HubOptions configures a [Hub]. The zero value is valid: every field
// documents its default. NewHub copies the options.
type HubOptions struct {
	// Backplane connects this hub to the hubs of other nodes. The hub opens
	// it and closes it in Close. Default: a node of a private
	// [MemoryBroker] with its defaults, for a single process.
	Backplane Backplane
	// BackplaneTimeout bounds every call the hub makes to the backplane
	// (publish, subscribe, history, snapshot, delete) whose context has no
	// earlier deadline: a backplane that gives no answer in time, as a hung
	// server does, fails the call with [ErrUnavailable]. Default: 2s.
	BackplaneTimeout time.Duration

	// Authenticate judges the credentials of a connecting client. Default:
	// everyone is accepted as the anonymous principal.
	Authenticate Authenticator
	// Authorize allows or denies subscribing, publishing and reading
	// presence. Default: everyone may subscribe to any topic and read its
	// presence; clients may not publish. [TopicOptions] permissions are
	// checked before it.
	Authorize Authorizer
	// TopicOptions returns the options of a topic: history limits,
	// presence, join/leave and permissions. It is called on every
	// subscribe, unsubscribe and publish, so it should be fast (a switch
	// on the topic's prefix). Default: every topic has the zero
	// TopicOptions.
	TopicOptions func(topic string) TopicOptions
	// MaxPresence bounds how many entries [Hub.Presence] and the presence
	// command return; [Hub.PresenceCount] counts them all. Default: 1000.
	MaxPresence int

	// Observer receives events for metrics. Default: none.
	Observer Observer
	// Tracer traces messages from their publish to the nodes that deliver
	// them (package otel). Default: none; the W3C trace context of an HTTP
	// publish still travels in the message's header.
	Tracer Tracer
	// Logger receives the hub's logs. Default: logs are discarded.
	Logger *slog.Logger

	// QueueMessages bounds a session's outbound queue, in messages. A
	// session whose queue is full is closed with [CloseSlowConsumer].
	// Default: 4096.
	QueueMessages int
	// QueueBytes bounds a session's outbound queue, in bytes of payload
	// plus a fixed 64 bytes per message. Default: 4 MiB.
	QueueBytes int
	// MaxSubscriptions bounds the topics one session may subscribe to.
	// Default: 256.
	MaxSubscriptions int
	// CommandRate is the sustained number of commands per second a session
	// may send; CommandBurst is how many it may send at once. Exceeding
	// them closes the session with [CloseRateLimited]. Defaults: 50 and
	// 300.
	CommandRate  float64
	CommandBurst int
	// CatchUpBytes bounds what a session's subscribes owe it and it has not
	// read yet: the history replayed to a resuming subscription and the
	// snapshots, in bytes of payload plus 64 per message. A session that
	// subscribes to more than it reads is closed with [CloseSlowConsumer].
	// One subscribe's catch-up is always admitted when nothing else is
	// owed, so a topic whose state exceeds the budget can still be resumed;
	// unsubscribing drops what the topic still owed. Default: 16 MiB.
	CatchUpBytes int
	// MaxPayload bounds the data of one published message, in bytes.
	// Default: 64 KiB.
	MaxPayload int
	// WriteTimeout bounds every write to a client, on every transport: a
	// client that takes nothing for that long is closed with
	// [CloseSlowConsumer] and dropped. A transport may set its own (see
	// [ConnOptions]). Default: 10s.
	WriteTimeout time.Duration
	// MaxKeyLength bounds a published message's key, in bytes. Default:
	// 256.
	MaxKeyLength int
	// MaxHeaders bounds the entries of a published message's header,
	// counting the one [WithFinal] adds. Default: 16.
	MaxHeaders int
	// MaxHeaderBytes bounds the names and values of a published message's
	// header, all together, in bytes. Default: 4 KiB.
	MaxHeaderBytes int
}

func (o *HubOptions) setDefaults() {
	if o.BackplaneTimeout <= 0 {
		o.BackplaneTimeout = 2 * time.Second
	}
	if o.QueueMessages <= 0 {
		o.QueueMessages = 4096
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 4 << 20
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = 256
	}
	if o.CommandRate <= 0 {
		o.CommandRate = 50
	}
	if o.CommandBurst <= 0 {
		o.CommandBurst = 300
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 64 << 10
	}
	if o.CatchUpBytes <= 0 {
		o.CatchUpBytes = 16 << 20
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxKeyLength <= 0 {
		o.MaxKeyLength = 256
	}
	if o.MaxHeaders <= 0 {
		o.MaxHeaders = 16
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 4 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MaxPresence <= 0 {
		o.MaxPresence = 1000
	}
	if o.Authorize == nil {
		o.Authorize = func(_ context.Context, _ Principal, _ string, a Action) error {
			if a == ActionSubscribe {
				return nil
			}
			return errors.New("publishing is not enabled")
		}
	}
}

const numShards = 64

// Hub owns the topics and sessions of one node and connects them to the
// backplane. All its methods are safe for concurrent use.
type Hub struct {
	opts HubOptions
	bp   Backplane

	userAuthorize Authorizer  // HubOptions.Authorize as given
	pres          presenceHub // presence and join/leave (presence.go)

	shards [numShards]shard

	sessMu   sync.Mutex // guards sessions and the closing flags
	sessions map[*Session]struct{}
	nextID   uint64
	draining bool          // Shutdown started: no new sessions
	gone     chan struct{} // closed when the last session leaves during Shutdown

	// byPrincipal indexes sessions by their principal's ID (see
	// control.go); a principal leaves it with its last session. Guarded
	// by sessMu.
	byPrincipal map[string]map[*Session]struct{}

	done    chan struct{}  // closed by Close: stops the hub's goroutines
	wg      sync.WaitGroup // the hub's goroutines (gap recovery)
	goMu    sync.Mutex     // guards stopped and writersStopped, and orders Add before Wait
	stopped bool
	// writers counts the sessions' writer goroutines (see Session.Attach).
	writers        sync.WaitGroup
	writersStopped bool

	closed atomic.Bool // Close started
	bpDown atomic.Bool // the last backplane call that said so found it unavailable

	closeOnce sync.Once
	closeErr  error

	// Control messages (see control.go); ctl is nil when the backplane
	// carries none.
	ctl      ControlBackplane
	ctlQueue chan controlMsg
	nodeID   string
}

type shard struct {
	mu     sync.RWMutex // guards topics and peak
	topics map[string]*topic
	peak   int // the most entries topics held since it was last made
}

// NewHub creates a hub and opens its backplane.
func NewHub(opts *HubOptions) (*Hub, error) {
	h := &Hub{sessions: make(map[*Session]struct{}), done: make(chan struct{})}
	if opts != nil {
		h.opts = *opts
	}
	h.userAuthorize = h.opts.Authorize
	h.opts.setDefaults()
	for i := range h.shards {
		h.shards[i].topics = make(map[string]*topic)
	}
	bp := h.opts.Backplane
	if bp == nil {
		bp = NewMemoryBroker(nil).Node()
	}
	h.initPresence(bp)
	h.bp = observedBackplane{Backplane: bp, h: h}
	if err := h.bp.Open(receiver{h}); err != nil {
		return nil, fmt.Errorf("fanout: open backplane: %w", err)
	}
	h.bp = boundedBackplane{h.bp, h.opts.BackplaneTimeout}
	h.openControl(bp)
	return h, nil
}

// PublishOption configures one [Hub.Publish].
type PublishOption func(*publishConfig)

type publishConfig struct {
	key, idem string
	header    map[string]string
	final     bool
}

// WithKey makes the message the topic's current state for key: snapshots
// keep the latest message per key.
func WithKey(key string) PublishOption { return func(c *publishConfig) { c.key = key } }

// WithIdempotencyKey makes a retried publish with the same key, to the same
// topic, within the backplane's idempotency window, return the first
// publication's position instead of publishing again.
func WithIdempotencyKey(key string) PublishOption {
	return func(c *publishConfig) { c.idem = key }
}

// HeaderFinal is the message header that [WithFinal] sets to "true".
const HeaderFinal = "fanout-final"

// WithFinal marks the message as its topic's last, as when a saga reaches
// its final state: a stream of fixed topics (SSE, gRPC Subscribe) ends once
// each of its topics has delivered its final message, whether live, from
// history or in a snapshot, and clients stop following the topic. The mark
// travels as the header [HeaderFinal]; see [Message.Final].
func WithFinal() PublishOption { return func(c *publishConfig) { c.final = true } }

// Final reports whether the message was published [WithFinal].
func (m *Message) Final() bool { return m.Header[HeaderFinal] == "true" }

// WithHeader attaches small metadata, such as trace context, to the message.
func WithHeader(h map[string]string) PublishOption {
	return func(c *publishConfig) { c.header = h }
}

// Publish publishes data to topic and returns the message's position. The
// hub copies data. It fails with [ErrInvalidTopic], [ErrTooLarge] (data
// over [HubOptions.MaxPayload], a key over [HubOptions.MaxKeyLength], a
// header over [HubOptions.MaxHeaders] or [HubOptions.MaxHeaderBytes]),
// [ErrBadRequest] (a key or header that is not valid UTF-8, a header with an
// empty name, an idempotency key over [MaxIdempotencyKeyLength]),
// [ErrClosed] once Close has started, or the backplane's error. Every
// transport publishes through it, so these limits hold on every path.
func (h *Hub) Publish(ctx context.Context, topic string, data []byte, opts ...PublishOption) (Position, error) {
	return h.publishAs(ctx, "", topic, data, opts)
}

// publishAs is Publish on behalf of a transport's client, which transport
// names in a failure's event.
func (h *Hub) publishAs(ctx context.Context, transport, topic string, data []byte, opts []PublishOption) (Position, error) {
	m, idem, err := h.newMessage(topic, data, opts)
	if err != nil {
		if errors.Is(err, ErrInvalidTopic) {
			topic = "" // not a topic: whatever the publisher sent
		}
		h.observe(Event{Type: EventPublishFailed, Topic: topic, Transport: transport, Err: err})
		return Position{}, err
	}
	return h.publish(ctx, m, idem, transport)
}

// newMessage checks a publish against the hub's limits and makes its
// message; it returns the idempotency key too.
func (h *Hub) newMessage(topic string, data []byte, opts []PublishOption) (*Message, string, error) {
	var c publishConfig
	for _, o := range opts {
		o(&c)
	}
	if err := ValidateTopic(topic); err != nil {
		return nil, "", fmt.Errorf("publish: %w", err)
	}
	if len(data) > h.opts.MaxPayload {
		return nil, "", fmt.Errorf("publish %q: %w: %d bytes, limit %d", topic, ErrTooLarge, len(data), h.opts.MaxPayload)
	}
	if c.final {
		h := make(map[string]string, len(c.header)+1)
		maps.Copy(h, c.header)
		h[HeaderFinal] = "true"
		c.header = h
	}
	if len(c.idem) > MaxIdempotencyKeyLength {
		// As the HTTP publish endpoint has always answered: a malformed
		// request rather than too much data.
		return nil, "", fmt.Errorf("publish %q: %w: idempotency key of %d bytes, limit %d", topic, ErrBadRequest, len(c.idem), MaxIdempotencyKeyLength)
	}
	if err := h.checkMessage(c.key, c.header); err != nil {
		return nil, "", fmt.Errorf("publish %q: %w", topic, err)
	}
	to := h.topicOptions(topic)
	m := &Message{Topic: topic, Key: c.key, Data: slices.Clone(data), Time: time.Now(), Header: c.header, limits: to.limits()}
	if m.Data == nil {
		m.Data = []byte{}
	}
	return m, c.idem, nil
}

// publish hands a checked message to the backplane; transport names who
// published it, for a failure's event.
func (h *Hub) publish(ctx context.Context, m *Message, idem, transport string) (Position, error) {
	if h.isClosed() {
		err := fmt.Errorf("publish %q: %w", m.Topic, ErrClosed)
		h.observe(Event{Type: EventPublishFailed, Topic: m.Topic, Transport: transport, Err: err})
		return Position{}, err
	}
	end := h.startTrace(ctx, m)
	pos, err := h.bp.Publish(ctx, m, idem)
	if end != nil {
		end(err)
	}
	if err != nil {
		err = fmt.Errorf("publish %q: %w", m.Topic, err)
		h.observe(Event{Type: EventPublishFailed, Topic: m.Topic, Transport: transport, Err: err})
		return Position{}, err
	}
	h.observe(Event{Type: EventPublish, Topic: m.Topic, N: len(m.Data)})
	return pos, nil
}

// checkMessage enforces the limits of a message's key and header, whoever
// publishes it. Both travel as JSON strings, and as protobuf strings over
// gRPC, so they must be valid UTF-8: two invalid keys would otherwise reach
// clients as the same key.
func (h *Hub) checkMessage(key string, header map[string]string) error {
	o := &h.opts
	if len(key) > o.MaxKeyLength {
		return fmt.Errorf("%w: key of %d bytes, limit %d", ErrTooLarge, len(key), o.MaxKeyLength)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: key is not valid UTF-8", ErrBadRequest)
	}
	if len(header) > o.MaxHeaders {
		return fmt.Errorf("%w: %d header entries, limit %d", ErrTooLarge, len(header), o.MaxHeaders)
	}
	size := 0
	for k, v := range header {
		size += len(k) + len(v)
		if k == "" {
			return fmt.Errorf("%w: header with an empty name", ErrBadRequest)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: header is not valid UTF-8", ErrBadRequest)
		}
	}
	if size > o.MaxHeaderBytes {
		return fmt.Errorf("%w: header of %d bytes, limit %d", ErrTooLarge, size, o.MaxHeaderBytes)
	}
	return nil
}

// DeleteTopic removes the topic's stored state on the backplane at once:
// history, snapshot, position and idempotency keys, as when a saga has been
// archived. Sessions subscribed to it stay subscribed; the next publish
// starts a new epoch, so a client resuming from an older position gets
// recovered=false and the new (empty) snapshot, never a reused position.
func (h *Hub) DeleteTopic(ctx context.Context, topic string) error {
	if err := ValidateTopic(topic); err != nil {
		return fmt.Errorf("delete topic: %w", err)
	}
	if h.isClosed() {
		return fmt.Errorf("delete topic %q: %w", topic, ErrClosed)
	}
	if err := h.bp.Delete(ctx, topic); err != nil {
		return fmt.Errorf("delete topic %q: %w", topic, err)
	}
	return nil
}

func (h *Hub) isClosed() bool { return h.closed.Load() }

// Authenticate judges credentials with the hub's authenticator. Transports
// call it before [Hub.NewSession]. The error matches [ErrUnauthenticated],
// also when the principal's ExpiresAt has passed.
func (h *Hub) Authenticate(ctx context.Context, c *Credentials) (Principal, error) {
	if h.opts.Authenticate == nil {
		return Principal{}, nil
	}
	p, err := h.opts.Authenticate(ctx, c)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	if expired(p, time.Now()) {
		return Principal{}, errExpired
	}
	return p, nil
}

// Authorize asks the hub's authorizer whether p may do a with topic. The
// error matches [ErrForbidden].
func (h *Hub) Authorize(ctx context.Context, p Principal, topic string, a Action) error {
	if err := h.authorize(ctx, p, topic, a); err != nil {
		return fmt.Errorf("%w: %s %q: %w", ErrForbidden, a, topic, err)
	}
	return nil
}

// Logger returns the hub's logger, for transports.
func (h *Hub) Logger() *slog.Logger { return h.opts.Logger }

// Shutdown drains the hub: it refuses new sessions, closes every session with
// [CloseShutdown] (which tells clients to reconnect, elsewhere) after its
// queue is written, waits for the sessions to end, then closes the hub.
// If ctx ends first, Shutdown closes the hub at once and returns ctx's error.
// Shutdown and Close are idempotent and safe to call concurrently.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.sessMu.Lock()
	h.draining = true
	if h.gone == nil {
		h.gone = make(chan struct{})
		if len(h.sessions) == 0 {
			close(h.gone)
		}
	}
	gone := h.gone
	sessions := h.sessionList()
	h.sessMu.Unlock()
	for _, s := range sessions {
		s.close(CloseShutdown, "server shutting down", true)
	}
	select {
	case <-gone:
	case <-ctx.Done():
		h.Close()
		return ctx.Err()
	}
	return h.Close()
}

// Close closes the hub at once: every session is closed with
// [CloseShutdown] without writing what is queued, the backplane is closed,
// and Close returns after the hub's own goroutines have ended. Afterwards
// publishing and new sessions fail with [ErrClosed].
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		h.sessMu.Lock()
		h.draining = true
		h.closed.Store(true)
		sessions := h.sessionList()
		h.sessMu.Unlock()
		for _, s := range sessions {
			s.close(CloseShutdown, "server shutting down", false)
		}
		h.goMu.Lock()
		h.stopped = true
		h.writersStopped = true
		h.goMu.Unlock()
		// Connections are dropped now: a writer blocked on a client that
		// does not read returns, and no writer starts again.
		for _, s := range sessions {
			s.abort()
		}
		close(h.done)
		h.wg.Wait()
		h.writers.Wait()
		h.closeErr = h.bp.Close()
	})
	return h.closeErr
}

// sessionList must be called with sessMu held.
func (h *Hub) sessionList() []*Session {
	l := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		l = append(l, s)
	}
	return l
}

func (h *Hub) shard(name string) *shard {
	return &h.shards[xxhash.Sum64String(name)%numShards]
}

// acquire adds sub to the topic's subscribers, subscribing the topic on the
// backplane when it is new. Concurrent acquires of a new topic wait for its
// backplane subscription.
func (h *Hub) acquire(ctx context.Context, sub *subscription) (*topic, error) {
	sh := h.shard(sub.topicName)
	for {
		sh.mu.Lock()
		t := sh.topics[sub.topicName]
		if t != nil && t.leaving != nil {
			leaving := t.leaving
			sh.mu.Unlock()
			select {
			case <-leaving:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		fresh := t == nil
		if fresh {
			t = newTopic(sub.topicName)
			sh.topics[sub.topicName] = t
			sh.peak = max(sh.peak, len(sh.topics))
		}
		t.refs++
		sh.mu.Unlock()

		t.mu.Lock()
		t.addSub(sub)
		t.mu.Unlock()

		if fresh {
			t.readyErr = h.bp.Subscribe(ctx, t.name)
			close(t.ready)
		} else {
			select {
			case <-t.ready:
			case <-ctx.Done():
				h.release(t, sub)
				return nil, ctx.Err()
			}
		}
		if t.readyErr != nil {
			h.release(t, sub)
			return nil, t.readyErr
		}
		return t, nil
	}
}

// release removes sub from t, and unsubscribes the topic on the backplane
// after its last subscriber.
func (h *Hub) release(t *topic, sub *subscription) {
	t.mu.Lock()
	t.removeSub(sub)
	t.mu.Unlock()
	sh := h.shard(t.name)
	sh.mu.Lock()
	t.refs--
	if t.refs > 0 {
		sh.mu.Unlock()
		return
	}
	leaving := make(chan struct{})
	t.leaving = leaving
	sh.mu.Unlock()

	<-t.ready
	if t.readyErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := h.bp.Unsubscribe(ctx, t.name); err != nil && !errors.Is(err, ErrClosed) {
			h.backgroundError(t.name, "unsubscribe", err)
		}
		cancel()
	}
	sh.mu.Lock()
	delete(sh.topics, t.name)
	if sh.peak > 64 && len(sh.topics) < sh.peak/4 {
		// Go maps do not shrink: once a crowd of topics has gone, make the
		// map anew so that it does not keep their room.
		m := make(map[string]*topic, len(sh.topics))
		for k, v := range sh.topics {
			m[k] = v
		}
		sh.topics, sh.peak = m, len(m)
	}
	sh.mu.Unlock()
	close(leaving)
}

func (h *Hub) lookup(name string) *topic {
	sh := h.shard(name)
	sh.mu.RLock()
	t := sh.topics[name]
	sh.mu.RUnlock()
	return t
}

// receiver is the hub's side of the backplane.
type receiver struct{ h *Hub }

func (r receiver) Deliver(m *Message) {
	t := r.h.lookup(m.Topic)
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.recovering {
		t.backlog = append(t.backlog, m)
		t.mu.Unlock()
		return
	}
	p := m.Position
	if t.known && p.Epoch == t.epoch && p.Seq <= t.last {
		t.mu.Unlock() // already delivered
		return
	}
	if t.known && (p.Seq != t.last+1 || (p.Epoch != t.epoch && t.last != 0)) {
		t.recovering = true
		t.backlog = append(t.backlog, m)
		t.mu.Unlock()
		r.h.recover(t)
		return
	}
	n := t.deliverLocked(m)
	t.mu.Unlock()
	r.h.observe(Event{Type: EventDeliver, Topic: m.Topic, N: n})
	if tr := r.h.opts.Tracer; tr != nil {
		tr.Delivered(m, n)
	}
}

func (r receiver) Resync(topic string) {
	t := r.h.lookup(topic)
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.recovering {
		t.mu.Unlock()
		return
	}
	if !t.known {
		// Nothing was delivered yet: recover from the oldest position a
		// subscription has reached.
		var ok bool
		if t.epoch, t.last, ok = t.oldestSubPosition(); !ok {
			t.mu.Unlock()
			return
		}
		t.known = true
	}
	t.recovering = true
	t.mu.Unlock()
	r.h.recover(t)
}

// oldestSubPosition returns the lowest position of the topic's live
// subscriptions; t.mu must be held.
func (t *topic) oldestSubPosition() (epoch string, last uint64, ok bool) {
	for _, sub := range t.subs {
		s := sub.sess
		s.mu.Lock()
		if !sub.buffering && s.closing == nil && (!ok || sub.last < last) {
			epoch, last, ok = sub.epoch, sub.last, true
		}
		s.mu.Unlock()
	}
	return epoch, last, ok
}

// deliverLocked hands m to every subscription; t.mu must be held.
func (t *topic) deliverLocked(m *Message) int {
	t.epoch, t.last, t.known = m.Position.Epoch, m.Position.Seq, true
	subs := t.subs
	for _, s := range subs {
		s.deliver(m)
	}
	return len(subs)
}

// recover fills the gap after t's last delivered message from history, then
// delivers the backlog, in a goroutine the hub owns.
func (h *Hub) recover(t *topic) {
	h.goMu.Lock()
	defer h.goMu.Unlock()
	if h.stopped {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		backoff := 50 * time.Millisecond
		for {
			t.mu.Lock()
			after := Position{Epoch: t.epoch, Seq: t.last}
			t.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			hist, err := h.bp.History(ctx, t.name, after)
			cancel()
			if err == nil {
				if h.finishRecovery(t, hist) {
					return
				}
				continue // the backlog had another gap
			}
			h.backgroundError(t.name, "resync", err)
			select {
			case <-h.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
}

// finishRecovery delivers hist and then the backlog. It reports false when
// the backlog still has a gap, so that recovery must read history again.
func (h *Hub) finishRecovery(t *topic, hist History) bool {
	t.mu.Lock()
	done, ev := t.finishRecoveryLocked(hist)
	t.mu.Unlock()
	if ev.Type != 0 {
		h.observe(ev)
	}
	return done
}

func (t *topic) finishRecoveryLocked(hist History) (bool, Event) {
	recovered := 0
	ev := Event{Type: EventResync, Topic: t.name}
	if !hist.Complete {
		// History no longer reaches back: every subscriber must resume by
		// itself, and learn that it lost messages.
		for _, s := range t.subs {
			s.sess.close(CloseResync, "history lost for topic "+t.name, false)
		}
		ev.Type = EventResyncFailed
		t.epoch, t.last = hist.Position.Epoch, hist.Position.Seq
	} else {
		for _, m := range hist.Messages {
			if m.Position.Seq == t.last+1 && (m.Position.Epoch == t.epoch || t.last == 0) {
				t.deliverLocked(m)
				recovered++
			}
		}
	}
	backlog := t.backlog
	t.backlog = nil
	for i, m := range backlog {
		if m.Position.Epoch == t.epoch && m.Position.Seq <= t.last {
			continue
		}
		if m.Position.Epoch != t.epoch || m.Position.Seq != t.last+1 {
			t.backlog = backlog[i:]
			return false, Event{}
		}
		t.deliverLocked(m)
	}
	t.recovering = false
	ev.N = recovered
	return true, ev
}
