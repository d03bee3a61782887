package fanout

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// Server control: what server code does to the sessions of a principal,
// on every node. A call acts on this node's sessions at once, then sends a
// control message through the backplane (see [ControlBackplane]) that
// every other node applies to its own sessions of that principal.

// Frames of server-side subscriptions. Both carry a [Reply] without ID.
const (
	// FrameSubscribed starts a subscription that server code made with
	// [Hub.Subscribe]: Reply has the Topic and the Position live delivery
	// continues after, and Snapshot when a snapshot frame follows. The
	// client treats it as the ok reply to a subscribe it did not send.
	FrameSubscribed FrameType = 16
	// FrameUnsubscribed ends a subscription from the server's side
	// ([Hub.Unsubscribe]): Reply has the Topic. No message of the topic
	// follows it.
	FrameUnsubscribed FrameType = 17
)

// MaxControlBytes bounds one control message, encoded: the principal ID,
// topic and reason it carries must fit in it. Longer calls fail with
// [ErrTooLarge], and a node drops a longer message it receives.
const MaxControlBytes = 4096

// MaxCloseReason bounds the reason of [Hub.Disconnect], in bytes: what a
// WebSocket close frame can carry.
const MaxCloseReason = 123

// controlQueue bounds the control messages a node has received and not
// applied yet; further ones are dropped and logged.
const controlQueue = 1024

// ControlBackplane is a [Backplane] that also carries control messages
// from any node to every node, for [Hub.Disconnect], [Hub.Subscribe] and
// [Hub.Unsubscribe]. It is optional: with a backplane that does not
// implement it, those calls act on the local node only and say so with an
// error matching [errors.ErrUnsupported]. The memory, Redis and NATS
// backplanes implement it.
//
// Control messages are delivered at most once, in the order one node sent
// them: a node that is not connected to the backplane's server when one is
// sent misses it (a session it serves then has lost its connection too,
// or soon will).
type ControlBackplane interface {
	Backplane
	// OpenControl makes the node hand every control message, its own
	// included, to r. The hub calls it once, after Open. It returns once
	// the node receives the messages sent from then on, or with an error
	// when that could not be confirmed before ctx ended; the node then
	// keeps trying. r.Control is safe for concurrent use and does not
	// block. Close stops the delivery.
	OpenControl(ctx context.Context, r ControlReceiver) error
	// PublishControl sends msg, at most [MaxControlBytes], to every node
	// that opened control. It fails with [ErrTooLarge] for a longer
	// message.
	PublishControl(ctx context.Context, msg []byte) error
}

// ControlReceiver is what a hub gives its backplane in OpenControl.
type ControlReceiver interface {
	// Control hands over one control message. The receiver owns msg.
	Control(msg []byte)
}

// SessionInfo describes one session of this node (see [Hub.Sessions]).
type SessionInfo struct {
	// ID is the session's id, unique within its hub.
	ID uint64
	// Principal is who the session acts as.
	Principal Principal
	// Transport names the session's transport ("websocket", "sse",
	// "grpc"), empty until it is attached.
	Transport string
	// Topics are the topics the session is subscribed to, sorted.
	Topics []string
	// Connected is when the session was created.
	Connected time.Time
}

// Sessions lists this node's sessions, by ID.
func (h *Hub) Sessions() []SessionInfo {
	h.sessMu.Lock()
	l := h.sessionList()
	h.sessMu.Unlock()
	return sessionInfos(l)
}

// PrincipalSessions lists this node's sessions of the principal whose ID
// is id, by ID; none for the anonymous principal (an empty id). It costs
// the principal's sessions, not the node's.
func (h *Hub) PrincipalSessions(id string) []SessionInfo {
	return sessionInfos(h.principalSessions(id))
}

func sessionInfos(l []*Session) []SessionInfo {
	out := make([]SessionInfo, 0, len(l))
	for _, s := range l {
		out = append(out, s.info())
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (s *Session) info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := SessionInfo{ID: s.id, Principal: s.principal, Transport: s.transport, Connected: s.created,
		Topics: make([]string, 0, len(s.subs))}
	for t := range s.subs {
		in.Topics = append(in.Topics, t)
	}
	slices.Sort(in.Topics)
	return in
}

// principalSessions returns the local sessions of principal id.
func (h *Hub) principalSessions(id string) []*Session {
	if id == "" {
		return nil
	}
	h.sessMu.Lock()
	defer h.sessMu.Unlock()
	set := h.byPrincipal[id]
	l := make([]*Session, 0, len(set))
	for s := range set {
		l = append(l, s)
	}
	return l
}

// indexSession adds s to the index by principal; sessMu must be held.
func (h *Hub) indexSession(s *Session, id string) {
	s.indexedID = id
	if id == "" {
		return
	}
	if h.byPrincipal == nil {
		h.byPrincipal = make(map[string]map[*Session]struct{})
	}
	set := h.byPrincipal[id]
	if set == nil {
		set = make(map[*Session]struct{}, 1)
		h.byPrincipal[id] = set
	}
	set[s] = struct{}{}
}

// unindexSession removes s from the index by principal, and the
// principal with its last session; sessMu must be held.
func (h *Hub) unindexSession(s *Session) {
	id := s.indexedID
	s.indexedID = ""
	set := h.byPrincipal[id]
	if set == nil {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(h.byPrincipal, id)
	}
}

// History reads the topic's messages after the position after, as a
// resuming client would get them, for server code (rendering a page's
// first state, say). The call is bounded by [HubOptions.BackplaneTimeout]
// unless ctx ends earlier. It fails with [ErrInvalidTopic], [ErrClosed] or
// the backplane's error.
func (h *Hub) History(ctx context.Context, topic string, after Position) (History, error) {
	if err := h.serverRead(topic); err != nil {
		return History{}, fmt.Errorf("history: %w", err)
	}
	hist, err := h.bp.History(ctx, topic, after)
	if err != nil {
		return History{}, fmt.Errorf("history %q: %w", topic, err)
	}
	return hist, nil
}

// Snapshot reads the topic's current state, its latest message per key,
// for server code; bounded and failing as [Hub.History].
func (h *Hub) Snapshot(ctx context.Context, topic string) (Snapshot, error) {
	if err := h.serverRead(topic); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot: %w", err)
	}
	snap, err := h.bp.Snapshot(ctx, topic)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", topic, err)
	}
	return snap, nil
}

func (h *Hub) serverRead(topic string) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if h.isClosed() {
		return ErrClosed
	}
	return nil
}

// Control operations.
const (
	opDisconnect  = "disconnect"
	opSubscribe   = "subscribe"
	opUnsubscribe = "unsubscribe"
)

// controlMsg is one control message as the backplane carries it, in JSON.
type controlMsg struct {
	Op        string    `json:"op"`
	Origin    string    `json:"origin"` // the sending hub, which applied it already
	Principal string    `json:"principal"`
	Code      CloseCode `json:"code,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Topic     string    `json:"topic,omitempty"`
	Snapshot  bool      `json:"snapshot,omitempty"`
}

// encodeControl encodes m, or fails with ErrTooLarge past MaxControlBytes.
func encodeControl(m controlMsg) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxControlBytes {
		return nil, fmt.Errorf("%w: control message of %d bytes, limit %d", ErrTooLarge, len(b), MaxControlBytes)
	}
	return b, nil
}

// parseControl decodes and checks a control message from the backplane.
func parseControl(b []byte) (controlMsg, error) {
	var m controlMsg
	if len(b) > MaxControlBytes {
		return m, fmt.Errorf("%w: control message of %d bytes, limit %d", ErrTooLarge, len(b), MaxControlBytes)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return controlMsg{}, fmt.Errorf("%w: control message: %v", ErrBadRequest, err)
	}
	if d.More() {
		return controlMsg{}, fmt.Errorf("%w: control message: data after the object", ErrBadRequest)
	}
	if err := m.check(); err != nil {
		return controlMsg{}, err
	}
	return m, nil
}

// check enforces what every control message must be, sent or received.
func (m *controlMsg) check() error {
	if m.Principal == "" {
		return fmt.Errorf("%w: control message without a principal", ErrBadRequest)
	}
	if !utf8.ValidString(m.Principal) {
		return fmt.Errorf("%w: principal ID is not valid UTF-8", ErrBadRequest)
	}
	switch m.Op {
	case opDisconnect:
		if err := checkDisconnectCode(m.Code); err != nil {
			return err
		}
		if len(m.Reason) > MaxCloseReason {
			return fmt.Errorf("%w: reason of %d bytes, limit %d", ErrTooLarge, len(m.Reason), MaxCloseReason)
		}
		if !utf8.ValidString(m.Reason) {
			return fmt.Errorf("%w: reason is not valid UTF-8", ErrBadRequest)
		}
		if m.Topic != "" || m.Snapshot {
			return fmt.Errorf("%w: disconnect takes no topic", ErrBadRequest)
		}
	case opSubscribe, opUnsubscribe:
		if err := ValidateTopic(m.Topic); err != nil {
			return err
		}
		if m.Code != 0 || m.Reason != "" || (m.Op == opUnsubscribe && m.Snapshot) {
			return fmt.Errorf("%w: misplaced field in %s", ErrBadRequest, m.Op)
		}
	default:
		return fmt.Errorf("%w: unknown control operation %q", ErrBadRequest, m.Op)
	}
	return nil
}

// checkDisconnectCode accepts the codes that [Hub.Disconnect] may use.
func checkDisconnectCode(c CloseCode) error {
	switch {
	case c == CloseDisconnected, c == CloseShutdown, c == CloseUnauthorized,
		c >= CloseAppMin && c <= CloseAppMax:
		return nil
	}
	return fmt.Errorf("%w: close code %d: use %d, %d, %d or %d to %d", ErrBadRequest, c,
		CloseDisconnected, CloseShutdown, CloseUnauthorized, CloseAppMin, CloseAppMax)
}

// DisconnectOptions configures one [Hub.Disconnect].
type DisconnectOptions struct {
	// Code is the close code the sessions are closed with: one of
	// [CloseDisconnected] (the client does not reconnect),
	// [CloseShutdown] (it reconnects at once, elsewhere),
	// [CloseUnauthorized] (it gets new credentials first), or an
	// application's own from [CloseAppMin] to [CloseAppMax] (4100 to 4499:
	// the client reconnects after a backoff; 4500 to 4999: it does not).
	// Default: CloseDisconnected.
	Code CloseCode
	// Reason is the close frame's reason, at most [MaxCloseReason] bytes
	// of UTF-8. Default: "disconnected by the server".
	Reason string
}

// Disconnect closes every session of the principal whose ID is
// principalID, on every node: this node's at once, the other nodes' when
// the control message reaches them. A session is closed as when it breaks
// a limit: what it has queued is dropped, its last frame is the close
// frame. A principal with no session anywhere is no error. Disconnect
// fails with [ErrBadRequest] (an empty principal ID, a code or reason out
// of range), [ErrTooLarge] (a principal ID or reason that makes the
// message exceed [MaxControlBytes]), [ErrClosed] once Close has started,
// the backplane's error when the message could not be sent (this node's
// sessions are closed anyway), or one matching [errors.ErrUnsupported]
// when the backplane carries no control messages.
//
// A session that connects after the call is not affected: to keep a user
// out, refuse their credentials in the authenticator too.
func (h *Hub) Disconnect(ctx context.Context, principalID string, opts *DisconnectOptions) error {
	m := controlMsg{Op: opDisconnect, Principal: principalID, Code: CloseDisconnected, Reason: "disconnected by the server"}
	if opts != nil {
		if opts.Code != 0 {
			m.Code = opts.Code
		}
		if opts.Reason != "" {
			m.Reason = opts.Reason
		}
	}
	return h.control(ctx, m)
}

// ServerSubscribeOptions configures one [Hub.Subscribe].
type ServerSubscribeOptions struct {
	// Snapshot sends the topic's current state (a snapshot frame) right
	// after the subscribed frame, as a client's subscribe with snapshot
	// does.
	Snapshot bool
}

// Subscribe subscribes every session of the principal whose ID is
// principalID to topic, on every node: a server-side subscription. Each
// session receives a subscribed frame (the reply to a subscribe it did not
// send), the snapshot when opts asks for it, then the topic's messages,
// exactly as if the client had subscribed; the client may unsubscribe as
// usual, and resumes the topic after a reconnect as it resumes its own
// subscriptions, by a subscribe of its own, which the authorizer judges.
//
// Server code decides: the authorizer is not asked. Only sessions whose
// transport can carry the frames are subscribed (WebSocket and gRPC
// Connect; not SSE and gRPC Subscribe, whose streams have fixed topics). A session already subscribed to
// the topic keeps its subscription and gets no frame. A session at its
// [HubOptions.MaxSubscriptions] is not subscribed: the failure, as that of
// a session whose backplane read fails, is reported to the Observer as
// [EventSubscribeFailed] and logged, on the node of the session.
// Only sessions connected when the message reaches their node are
// subscribed.
//
// Subscribe returns once this node's sessions are subscribed and the
// control message is sent; it fails as [Hub.Disconnect] does, and with
// [ErrInvalidTopic].
func (h *Hub) Subscribe(ctx context.Context, principalID, topic string, opts *ServerSubscribeOptions) error {
	m := controlMsg{Op: opSubscribe, Principal: principalID, Topic: topic}
	if opts != nil {
		m.Snapshot = opts.Snapshot
	}
	return h.control(ctx, m)
}

// Unsubscribe ends the subscriptions of every session of the principal
// whose ID is principalID to topic, on every node, whoever made them: each
// receives an unsubscribed frame, after which no message of the topic
// comes. Sessions whose transport cannot carry the frame (SSE, gRPC
// Subscribe) are not touched: [Hub.Disconnect] ends those. It fails as
// [Hub.Subscribe].
func (h *Hub) Unsubscribe(ctx context.Context, principalID, topic string) error {
	return h.control(ctx, controlMsg{Op: opUnsubscribe, Principal: principalID, Topic: topic})
}

// control applies m to this node's sessions and sends it to the others.
func (h *Hub) control(ctx context.Context, m controlMsg) error {
	if err := m.check(); err != nil {
		return fmt.Errorf("%s: %w", m.Op, err)
	}
	m.Origin = h.nodeID
	b, err := encodeControl(m)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Op, err)
	}
	if h.isClosed() {
		return fmt.Errorf("%s: %w", m.Op, ErrClosed)
	}
	h.applyControl(ctx, m)
	if h.ctl == nil {
		return fmt.Errorf("%s: %w: the backplane carries no control messages; applied on this node only", m.Op, errors.ErrUnsupported)
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.BackplaneTimeout)
	defer cancel()
	if err := h.ctl.PublishControl(ctx, b); err != nil {
		err = fmt.Errorf("%s: %w", m.Op, err)
		h.observe(Event{Type: EventError, Op: "control", Err: err})
		return err
	}
	return nil
}

// applyControl applies m to this node's sessions of its principal.
func (h *Hub) applyControl(ctx context.Context, m controlMsg) {
	for _, s := range h.principalSessions(m.Principal) {
		switch m.Op {
		case opDisconnect:
			s.close(m.Code, m.Reason, false)
		case opSubscribe:
			s.serverSubscribe(ctx, m.Topic, m.Snapshot)
		case opUnsubscribe:
			s.serverUnsubscribe(m.Topic)
		}
	}
}

// serverSubscriptions reports whether the session's transport carries
// the frames of server-side subscriptions.
func (s *Session) serverSubscriptions() bool {
	w := s.writer.Load()
	return w != nil && w.opts.ServerSubscriptions
}

// serverSubscribe subscribes the session for [Hub.Subscribe].
func (s *Session) serverSubscribe(ctx context.Context, topic string, snapshot bool) {
	if !s.serverSubscriptions() {
		return
	}
	err := s.subscribe(ctx, SubscribeRequest{Topic: topic, Snapshot: snapshot, server: true})
	switch {
	case err == nil:
		s.hub.observe(Event{Type: EventSubscribe, Topic: topic, Session: s.id})
	case errors.Is(err, ErrAlreadySubscribed), errors.Is(err, ErrClosed):
	default:
		s.observeFailure(EventSubscribeFailed, topic, err)
		s.hub.opts.Logger.Info("fanout: server-side subscribe failed", "session", s.id,
			"principal", s.principal.ID, "topic", topic, "err", err)
	}
}

// serverUnsubscribe ends the session's subscription for [Hub.Unsubscribe].
func (s *Session) serverUnsubscribe(topic string) {
	if !s.serverSubscriptions() {
		return
	}
	s.mu.Lock()
	sub := s.subs[topic]
	s.mu.Unlock()
	if sub == nil {
		return
	}
	s.removeSub(sub)
	s.hub.observe(Event{Type: EventUnsubscribe, Topic: topic, Session: s.id})
	s.mu.Lock()
	s.pushLocked(Frame{Type: FrameUnsubscribed, Reply: &Reply{Topic: topic}})
	s.mu.Unlock()
	s.signal()
}

// controlReceiver is the hub's side of a ControlBackplane.
type controlReceiver struct{ h *Hub }

// Control queues a message of another node for the hub's control
// goroutine, when this node has sessions of its principal.
func (r controlReceiver) Control(b []byte) {
	h := r.h
	m, err := parseControl(b)
	if err != nil {
		h.opts.Logger.Warn("fanout: control message dropped", "err", err)
		h.observe(Event{Type: EventError, Op: "control", Err: err})
		return
	}
	if m.Origin == h.nodeID {
		return // applied when sent
	}
	h.sessMu.Lock()
	local := len(h.byPrincipal[m.Principal]) > 0
	h.sessMu.Unlock()
	if !local {
		return
	}
	select {
	case h.ctlQueue <- m:
	default:
		err := fmt.Errorf("control %s: %d messages waiting, limit %d: dropped", m.Op, controlQueue, controlQueue)
		h.opts.Logger.Error("fanout: control queue full", "op", m.Op, "principal", m.Principal)
		h.observe(Event{Type: EventError, Op: "control", Err: err})
	}
}

// openControl starts the control goroutine and opens the backplane's
// control delivery, when it has one.
func (h *Hub) openControl(bp Backplane) {
	cb, ok := bp.(ControlBackplane)
	if !ok {
		return
	}
	var id [8]byte
	rand.Read(id[:])
	h.nodeID = hex.EncodeToString(id[:])
	h.ctl = cb
	h.ctlQueue = make(chan controlMsg, controlQueue)
	h.wg.Add(1)
	go h.runControl()
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.BackplaneTimeout)
	defer cancel()
	if err := cb.OpenControl(ctx, controlReceiver{h}); err != nil {
		h.opts.Logger.Warn("fanout: control messages not confirmed yet; still trying", "err", err)
		h.observe(Event{Type: EventError, Op: "control", Err: fmt.Errorf("open control: %w", err)})
	}
}

// runControl applies the other nodes' control messages, one at a time.
func (h *Hub) runControl() {
	defer h.wg.Done()
	for {
		select {
		case m := <-h.ctlQueue:
			// Each backplane call is bounded by BackplaneTimeout.
			h.applyControl(context.Background(), m)
		case <-h.done:
			return
		}
	}
}

// memControl is a MemoryBroker's control delivery: the nodes that opened
// it, each with its own ordered queue.
type memControl struct {
	mu    sync.Mutex
	nodes map[*memNode]ControlReceiver
}

// OpenControl implements [ControlBackplane].
func (n *memNode) OpenControl(ctx context.Context, r ControlReceiver) error {
	if err := n.open("open control"); err != nil {
		return err
	}
	c := &n.b.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes == nil {
		c.nodes = make(map[*memNode]ControlReceiver)
	}
	c.nodes[n] = r
	return nil
}

// PublishControl implements [ControlBackplane]: it hands msg to every
// node's receiver before it returns.
func (n *memNode) PublishControl(ctx context.Context, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.open("publish control"); err != nil {
		return err
	}
	if len(msg) > MaxControlBytes {
		return fmt.Errorf("memory backplane: publish control: %w: %d bytes, limit %d", ErrTooLarge, len(msg), MaxControlBytes)
	}
	c := &n.b.ctl
	c.mu.Lock()
	rs := make([]ControlReceiver, 0, len(c.nodes))
	for _, r := range c.nodes {
		rs = append(rs, r)
	}
	c.mu.Unlock()
	for _, r := range rs {
		r.Control(slices.Clone(msg))
	}
	return nil
}

// closeControl stops control delivery to n.
func (n *memNode) closeControl() {
	c := &n.b.ctl
	c.mu.Lock()
	delete(c.nodes, n)
	c.mu.Unlock()
}
