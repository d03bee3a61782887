package fanout

import (
	"fmt"
	"sync"
)

// MaxTopicLength is the longest topic name, in bytes.
const MaxTopicLength = 200

// ValidateTopic reports whether name is a valid topic name: 1 to
// [MaxTopicLength] bytes of ASCII letters, digits and the characters
// "-", "_", ".", ":", "/", "@", "=" and "+", not starting or ending with ".".
// Every entry point (publish, subscribe, every transport) enforces these
// rules, so a topic name is always safe in a URL query, a Redis key and,
// escaped, a NATS subject. The error matches [ErrInvalidTopic].
func ValidateTopic(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("%w: empty name", ErrInvalidTopic)
	}
	if len(name) > MaxTopicLength {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidTopic, MaxTopicLength)
	}
	if name[0] == '.' || name[len(name)-1] == '.' {
		return fmt.Errorf("%w: %q starts or ends with a dot", ErrInvalidTopic, name)
	}
	for i := 0; i < len(name); i++ {
		if !topicChar[name[i]] {
			return fmt.Errorf("%w: %q has a forbidden character at byte %d", ErrInvalidTopic, name, i)
		}
	}
	return nil
}

var topicChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.:/@=+" {
		t[c] = true
	}
	return t
}()

// topic is the hub's local state for one topic that has local subscribers.
type topic struct {
	name string

	// ready is closed once the backplane subscription is made; readyErr is
	// its outcome, set before ready is closed.
	ready    chan struct{}
	readyErr error

	// Guarded by the shard's mu.
	refs    int
	leaving chan struct{} // non-nil while the backplane unsubscribe runs

	mu sync.Mutex // guards the fields below
	// subs are the local subscriptions, in no order; each knows its
	// index, so that adding and removing one costs O(1) however many
	// sessions watch the topic.
	subs []*subscription
	// epoch and last are the position of the last message delivered, once
	// known is set.
	known bool
	epoch string
	last  uint64
	// recovering is set while a gap is filled from history; live messages
	// wait in backlog meanwhile.
	recovering bool
	backlog    []*Message
}

func newTopic(name string) *topic {
	return &topic{name: name, ready: make(chan struct{})}
}

// addSub and removeSub must be called with t.mu held.
func (t *topic) addSub(s *subscription) {
	s.index = len(t.subs)
	t.subs = append(t.subs, s)
}

func (t *topic) removeSub(s *subscription) {
	i := s.index
	if i >= len(t.subs) || t.subs[i] != s {
		return
	}
	last := len(t.subs) - 1
	t.subs[i] = t.subs[last]
	t.subs[i].index = i
	t.subs[last] = nil
	t.subs = t.subs[:last]
	if c := cap(t.subs); c > 64 && len(t.subs) < c/4 {
		// Give back what a crowd that has left used.
		t.subs = append(make([]*subscription, 0, 2*len(t.subs)), t.subs...)
	}
}

// Topic describes a topic that has subscribers on this hub.
// It marshals to JSON as {"topic","subscribers","position"}.
type Topic struct {
	Name string `json:"topic"`
	// Subscribers is the number of local sessions subscribed.
	Subscribers int `json:"subscribers"`
	// Position is that of the last message this hub delivered; zero before
	// the first.
	Position Position `json:"position"`
}

// Topics lists the topics that have subscribers on this hub, in no
// particular order; an idle hub's list is empty, not nil, so that it
// encodes as [] in JSON.
func (h *Hub) Topics() []Topic {
	l := []Topic{}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		ts := make([]*topic, 0, len(sh.topics))
		for _, t := range sh.topics {
			ts = append(ts, t)
		}
		sh.mu.RUnlock()
		for _, t := range ts {
			t.mu.Lock()
			l = append(l, Topic{Name: t.name, Subscribers: len(t.subs), Position: Position{Epoch: t.epoch, Seq: t.last}})
			t.mu.Unlock()
		}
	}
	return l
}
