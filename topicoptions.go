package fanout

import (
	"context"
	"errors"
	"time"
)

// TopicOptions are the options of one topic, which [HubOptions.TopicOptions]
// returns for a topic name: a host sets them by prefix, as Centrifugo does
// with namespaces ("chat:" rooms keep 100 messages and report presence,
// "saga:" topics keep everything for an hour). The zero value keeps the
// hub's and the backplane's behaviour: the backplane's history size, age
// and idle time, no presence, no join/leave, the hub's default
// permissions.
type TopicOptions struct {
	// HistorySize bounds how many messages the topic's history keeps.
	// Zero keeps the backplane's. A size larger than the backplane's is
	// capped by the backplane's (NATS keeps one per-subject maximum for
	// every topic; the hub trims the history it reads to this size).
	HistorySize int
	// HistoryAge bounds how long a message stays in the topic's history.
	// Zero keeps the backplane's; a larger age is capped by the
	// backplane's. The hub also drops older messages from what it reads,
	// so that a backplane that cannot expire them per topic (NATS) still
	// honours it.
	HistoryAge time.Duration
	// IdleTTL is how long the topic's stored state outlives its last
	// publish or read (see [MemoryOptions.IdleTTL]). Zero keeps the
	// backplane's. The memory and Redis backplanes honour it; on NATS the
	// stream-wide idle time applies.
	IdleTTL time.Duration

	// Presence records who is subscribed to the topic, on every node, for
	// [Hub.Presence] and the presence command. It costs one backplane call
	// per subscribe and per unsubscribe.
	Presence bool
	// JoinLeave delivers a join frame to the topic's subscribers when a
	// session subscribes and a leave frame when it unsubscribes or
	// disconnects, from every node (see [PresenceEvent]). It costs one
	// backplane publish per subscribe and unsubscribe and one frame per
	// subscriber.
	JoinLeave bool

	// Subscribe, Publish and PresenceRead say who may subscribe, publish
	// and read presence. When [HubOptions.Authorize] is nil they decide,
	// and PermitDefault means: everyone may subscribe and read presence,
	// no client may publish. When Authorize is set, a permission other
	// than PermitDefault is checked first: what it denies is denied
	// without asking the authorizer, what it allows is then asked of the
	// authorizer; PermitDefault leaves the decision to the authorizer.
	Subscribe    Permit
	Publish      Permit
	PresenceRead Permit
}

// TopicLimits are the history limits of a topic that differ from the
// backplane's options; a zero field keeps the backplane's. A backplane
// reads them from the message it publishes, with [Message.TopicLimits].
type TopicLimits struct {
	HistorySize int
	HistoryAge  time.Duration
	IdleTTL     time.Duration
}

// Permit says who may do an action on a topic (see [TopicOptions]).
type Permit uint8

// Permits.
const (
	// PermitDefault keeps the hub's rule: the authorizer's, or without
	// one, subscribing and reading presence for everyone, publishing for
	// no client.
	PermitDefault Permit = iota
	// PermitAll allows everyone, anonymous principals too.
	PermitAll
	// PermitAuthenticated allows principals with a non-empty ID.
	PermitAuthenticated
	// PermitNone allows no client.
	PermitNone
)

// topicOptions returns the options of topic.
func (h *Hub) topicOptions(topic string) TopicOptions {
	if h.opts.TopicOptions == nil {
		return TopicOptions{}
	}
	return h.opts.TopicOptions(topic)
}

// limits returns the history limits of o, nil when it has none.
func (o *TopicOptions) limits() *TopicLimits {
	if o.HistorySize <= 0 && o.HistoryAge <= 0 && o.IdleTTL <= 0 {
		return nil
	}
	return &TopicLimits{HistorySize: max(0, o.HistorySize), HistoryAge: max(0, o.HistoryAge), IdleTTL: max(0, o.IdleTTL)}
}

// TopicLimits returns the history limits of the message's topic that
// differ from the backplane's options, as [HubOptions.TopicOptions] set
// them when the message was published.
func (m *Message) TopicLimits() TopicLimits {
	if m.limits == nil {
		return TopicLimits{}
	}
	return *m.limits
}

var (
	errPermitAuthenticated = errors.New("only authenticated clients may")
	errPermitNone          = errors.New("not allowed on this topic")
	errNoClientPublish     = errors.New("publishing is not enabled")
)

// authorize applies the topic's permission for a, then the authorizer.
func (h *Hub) authorize(ctx context.Context, p Principal, topic string, a Action) error {
	var pm Permit
	if topic != "" {
		o := h.topicOptions(topic)
		switch a {
		case ActionSubscribe:
			pm = o.Subscribe
		case ActionPublish:
			pm = o.Publish
		case ActionPresence:
			pm = o.PresenceRead
		}
	}
	switch pm {
	case PermitNone:
		return errPermitNone
	case PermitAuthenticated:
		if p.ID == "" {
			return errPermitAuthenticated
		}
	}
	if h.userAuthorize != nil {
		return h.userAuthorize(ctx, p, topic, a)
	}
	if pm != PermitDefault {
		return nil
	}
	switch a {
	case ActionSubscribe, ActionPresence:
		return nil
	}
	return errNoClientPublish
}

// trimHistory applies the topic's limits to history read for a resume: a
// message older than its age, or more messages than its size, mean that
// history no longer reaches back to the resumed position.
func trimHistory(hist History, l *TopicLimits, now time.Time) History {
	if l == nil || !hist.Complete {
		return hist
	}
	n := len(hist.Messages)
	if l.HistorySize > 0 && n > l.HistorySize {
		return History{Position: hist.Position}
	}
	if l.HistoryAge > 0 && n > 0 && hist.Messages[0].Time.Before(now.Add(-l.HistoryAge)) {
		return History{Position: hist.Position}
	}
	return hist
}
