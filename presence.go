package fanout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MaxClientInfo bounds [Principal.Info], in bytes: a longer one is left out
// of presence and of join and leave frames.
const MaxClientInfo = 1024

// ClientInfo is one subscriber of a topic, as presence lists it and join
// and leave frames carry it. It marshals to JSON as
// {"principal","session","info"}, without info when it is empty.
type ClientInfo struct {
	// Principal is the subscriber's principal ID; empty for anonymous.
	Principal string `json:"principal"`
	// Session identifies the session across the cluster: the hub's node
	// name, a colon and the session's [Session.ID].
	Session string `json:"session"`
	// Info is the principal's [Principal.Info], when it is valid JSON of
	// at most [MaxClientInfo] bytes.
	Info json.RawMessage `json:"info,omitempty"`
}

// PresenceEvent is a join or a leave of a topic whose options enable
// [TopicOptions.JoinLeave]. It takes no position and is not kept in
// history: a subscriber receives the events that happen while it is
// subscribed, between the messages it receives around them.
type PresenceEvent struct {
	Topic string
	// Leave is false for a join.
	Leave  bool
	Client ClientInfo
}

// size is what the event costs in a session's queue, in bytes.
func (e *PresenceEvent) size() int {
	return 64 + len(e.Topic) + len(e.Client.Principal) + len(e.Client.Session) + len(e.Client.Info)
}

// PresenceBackplane is implemented by backplanes that keep presence and
// carry join and leave events; the memory, Redis and NATS backplanes do.
// It is separate from [Backplane] so that a backplane written for an
// earlier version still works: with one that lacks it, presence is empty
// and join/leave frames are not sent.
//
// Entries are keyed by [ClientInfo.Session]. A backplane keeps the entries
// of its node alive while the node runs (refreshing them when its store
// expires them), removes them when the node closes, and lets the entries
// of a node that died without closing expire within a documented time.
type PresenceBackplane interface {
	// AddPresence records c as subscribed to topic.
	AddPresence(ctx context.Context, topic string, c ClientInfo) error
	// RemovePresence forgets the entry of the session.
	RemovePresence(ctx context.Context, topic, session string) error
	// Presence returns at most limit entries of topic, in no order.
	Presence(ctx context.Context, topic string, limit int) ([]ClientInfo, error)
	// PresenceCount returns how many entries topic has.
	PresenceCount(ctx context.Context, topic string) (int, error)
	// PublishPresence delivers e to every node subscribed to its topic,
	// through the path of the topic's messages, so that each node hands
	// it over in order with them, to [PresenceReceiver.DeliverPresence].
	PublishPresence(ctx context.Context, e *PresenceEvent) error
}

// PresenceReceiver is implemented by the [Receiver] that a hub gives its
// backplane: a [PresenceBackplane] hands it join and leave events.
type PresenceReceiver interface {
	// DeliverPresence hands over an event of a subscribed topic. Like
	// Deliver, it never blocks and is not called concurrently with
	// Deliver for the same topic.
	DeliverPresence(e *PresenceEvent)
}

// presenceHub is the hub's presence state.
type presenceHub struct {
	bp   PresenceBackplane // nil when the backplane has no presence
	node string            // random name of this hub, in ClientInfo.Session
}

func (h *Hub) initPresence(bp Backplane) {
	h.pres.bp, _ = bp.(PresenceBackplane)
	var b [6]byte
	rand.Read(b[:])
	h.pres.node = hex.EncodeToString(b[:])
}

// errNoPresence is returned for presence on a backplane that has none.
var errNoPresence = errors.New("the backplane keeps no presence")

// Presence returns who is subscribed to topic on every node, at most
// [HubOptions.MaxPresence] entries, in no order. Only topics whose
// [TopicOptions.Presence] is set have entries. It fails with
// [ErrInvalidTopic], [ErrClosed] or the backplane's error.
func (h *Hub) Presence(ctx context.Context, topic string) ([]ClientInfo, error) {
	if err := h.presenceCheck(topic); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	ctx, cancel := h.boundCtx(ctx)
	defer cancel()
	l, err := h.pres.bp.Presence(ctx, topic, h.opts.MaxPresence)
	if err != nil {
		return nil, fmt.Errorf("presence %q: %w", topic, h.boundErr(ctx, err))
	}
	if len(l) > h.opts.MaxPresence {
		l = l[:h.opts.MaxPresence]
	}
	return l, nil
}

// PresenceCount returns how many sessions are subscribed to topic on every
// node, for topics whose [TopicOptions.Presence] is set; it reads no
// entries.
func (h *Hub) PresenceCount(ctx context.Context, topic string) (int, error) {
	if err := h.presenceCheck(topic); err != nil {
		return 0, fmt.Errorf("presence count: %w", err)
	}
	ctx, cancel := h.boundCtx(ctx)
	defer cancel()
	n, err := h.pres.bp.PresenceCount(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("presence count %q: %w", topic, h.boundErr(ctx, err))
	}
	return n, nil
}

func (h *Hub) presenceCheck(topic string) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if h.isClosed() {
		return ErrClosed
	}
	if h.pres.bp == nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, errNoPresence)
	}
	return nil
}

func (h *Hub) boundCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return boundedBackplane{timeout: h.opts.BackplaneTimeout}.bound(ctx)
}

func (h *Hub) boundErr(ctx context.Context, err error) error {
	return boundedBackplane{timeout: h.opts.BackplaneTimeout}.check(ctx, err)
}

// clientInfo is what presence shows of the session.
func (s *Session) clientInfo() ClientInfo {
	c := ClientInfo{Principal: s.principal.ID, Session: s.hub.pres.node + ":" + strconv.FormatUint(s.id, 10)}
	if n := len(s.principal.Info); n > 0 && n <= MaxClientInfo && json.Valid(s.principal.Info) {
		c.Info = s.principal.Info
	}
	return c
}

// Presence flags of a subscription.
const (
	subPresent   = 1 << iota // recorded in presence: remove it when leaving
	subJoinLeave             // send leave when leaving
)

// presenceJoin records sub in presence when its topic's options ask for
// it, before its subscribe reply, so that a client that has its reply is
// in presence. It returns the flags to keep on the subscription.
func (s *Session) presenceJoin(ctx context.Context, o *TopicOptions, topic string) (uint8, error) {
	h := s.hub
	if h.pres.bp == nil {
		return 0, nil
	}
	var flags uint8
	if o.Presence {
		ctx, cancel := h.boundCtx(ctx)
		err := h.pres.bp.AddPresence(ctx, topic, s.clientInfo())
		err = h.boundErr(ctx, err)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("add presence: %w", err)
		}
		flags |= subPresent
	}
	if o.JoinLeave {
		flags |= subJoinLeave
	}
	return flags, nil
}

// presenceEvent publishes a join or a leave of the session, logging a
// failure: the subscription stands without it.
func (s *Session) presenceEvent(topic string, leave bool) {
	h := s.hub
	ctx, cancel := h.boundCtx(context.Background())
	defer cancel()
	err := h.pres.bp.PublishPresence(ctx, &PresenceEvent{Topic: topic, Leave: leave, Client: s.clientInfo()})
	if err = h.boundErr(ctx, err); err != nil && !errors.Is(err, ErrClosed) {
		h.backgroundError(topic, "publish join/leave", err)
	}
}

// presenceLeave undoes what presenceJoin recorded.
func (s *Session) presenceLeave(topic string, flags uint8) {
	h := s.hub
	if flags&subPresent != 0 {
		ctx, cancel := h.boundCtx(context.Background())
		err := h.pres.bp.RemovePresence(ctx, topic, s.clientInfo().Session)
		err = h.boundErr(ctx, err)
		cancel()
		if err != nil && !errors.Is(err, ErrClosed) {
			h.backgroundError(topic, "remove presence", err)
		}
	}
	if flags&subJoinLeave != 0 {
		s.presenceEvent(topic, true)
	}
}

// PresenceRequest is a presence or presence_count command.
type PresenceRequest struct {
	// ID is echoed in the reply.
	ID    string
	Topic string
	// Count asks for the number of entries only.
	Count bool
}

// Presence answers a presence command, if the authorizer allows
// [ActionPresence] on the topic: it queues a reply with the topic's
// entries, or their count. On failure it queues nothing and returns the
// error, which matches [ErrInvalidTopic], [ErrForbidden], [ErrUnavailable]
// or the backplane's error.
func (s *Session) Presence(ctx context.Context, req PresenceRequest) error {
	if err := ValidateTopic(req.Topic); err != nil {
		return err
	}
	if err := s.hub.Authorize(ctx, s.principal, req.Topic, ActionPresence); err != nil {
		return err
	}
	r := Reply{ID: req.ID, Topic: req.Topic}
	if req.Count {
		n, err := s.hub.PresenceCount(ctx, req.Topic)
		if err != nil {
			return err
		}
		r.Count = &n
	} else {
		l, err := s.hub.Presence(ctx, req.Topic)
		if err != nil {
			return err
		}
		if l == nil {
			l = []ClientInfo{}
		}
		r.Presence = l
	}
	s.Reply(r)
	return nil
}

// DeliverPresence implements [PresenceReceiver].
func (r receiver) DeliverPresence(e *PresenceEvent) {
	t := r.h.lookup(e.Topic)
	if t == nil {
		return
	}
	t.mu.Lock()
	for _, sub := range t.subs {
		sub.deliverEvent(e)
	}
	t.mu.Unlock()
}

// deliverEvent queues a join or leave frame for the subscription, unless it
// is still reading what its subscribe asked for.
func (sub *subscription) deliverEvent(e *PresenceEvent) {
	s := sub.sess
	typ := FrameJoin
	if e.Leave {
		typ = FrameLeave
	}
	s.mu.Lock()
	if s.closing != nil || sub.buffering {
		s.mu.Unlock()
		return
	}
	wake := s.queue.n == 0
	if size := e.size(); s.admitLocked(size, false) {
		s.queue.push(Frame{Type: typ, Event: e}, size, false)
	}
	s.mu.Unlock()
	if wake {
		s.signal()
	}
}
