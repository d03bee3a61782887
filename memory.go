package fanout

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gofanout/fanout/internal/bridge"
)

// Defaults of the in-memory backplane (backplane/memory documents them).
const (
	defaultHistorySize       = 1024
	defaultHistoryAge        = 10 * time.Minute
	defaultIdempotencyWindow = 5 * time.Minute
)

func init() {
	bridge.NewMemoryBroker = func(o bridge.MemoryOptions) func() any {
		b := newMemoryBroker(o)
		return func() any { return b.node() }
	}
}

// memoryBroker is the in-process backplane: every node of one broker shares
// its topics. It is the hub's default, and backplane/memory exports it.
type memoryBroker struct {
	opts bridge.MemoryOptions

	mu     sync.RWMutex // guards topics
	topics map[string]*memTopic
}

type memTopic struct {
	// epoch is the topic's own, so that a topic that is ever dropped and
	// made anew can never be mistaken for the old one.
	epoch string

	mu    sync.Mutex // guards everything below; held while delivering
	seq   uint64
	ring  []*Message // history, oldest first from head; grows to HistorySize
	head  int
	n     int
	snap  map[string]*Message
	nodes map[*memNode]struct{}
	idem  map[string]idemEntry
	idemQ []idemRef // insertion order, for expiry
}

type idemEntry struct {
	pos     Position
	expires time.Time
}

type idemRef struct {
	key     string
	expires time.Time
}

type memNode struct {
	b *memoryBroker

	mu     sync.RWMutex // guards recv and closed
	recv   Receiver
	closed bool
}

func newMemoryBroker(o bridge.MemoryOptions) *memoryBroker {
	if o.HistorySize <= 0 {
		o.HistorySize = defaultHistorySize
	}
	if o.HistoryAge <= 0 {
		o.HistoryAge = defaultHistoryAge
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = defaultIdempotencyWindow
	}
	return &memoryBroker{opts: o, topics: make(map[string]*memTopic)}
}

// newEpoch returns a random epoch name.
func newEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (b *memoryBroker) node() *memNode { return &memNode{b: b} }

func (b *memoryBroker) topic(name string, create bool) *memTopic {
	b.mu.RLock()
	t := b.topics[name]
	b.mu.RUnlock()
	if t != nil || !create {
		return t
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t = b.topics[name]; t == nil {
		t = &memTopic{
			epoch: newEpoch(),
			snap:  make(map[string]*Message),
			nodes: make(map[*memNode]struct{}),
		}
		b.topics[name] = t
	}
	return t
}

func (n *memNode) check() error {
	if n.closed {
		return ErrClosed
	}
	return nil
}

func (n *memNode) Open(r Receiver) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.check(); err != nil {
		return err
	}
	n.recv = r
	return nil
}

func (n *memNode) Publish(ctx context.Context, m *Message, idempotencyKey string) (Position, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, err
	}
	n.mu.RLock()
	err := n.check()
	n.mu.RUnlock()
	if err != nil {
		return Position{}, fmt.Errorf("memory backplane: publish: %w", err)
	}
	t := n.b.topic(m.Topic, true)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if idempotencyKey != "" {
		t.expireIdem(now)
		if e, ok := t.idem[idempotencyKey]; ok {
			return e.pos, nil
		}
	}
	t.seq++
	m.Position = Position{Epoch: t.epoch, Seq: t.seq}
	t.trimAge(now.Add(-n.b.opts.HistoryAge))
	t.append(m, n.b.opts.HistorySize)
	if m.Key != "" {
		t.snap[m.Key] = m
	}
	if idempotencyKey != "" {
		exp := now.Add(n.b.opts.IdempotencyWindow)
		if t.idem == nil {
			t.idem = make(map[string]idemEntry)
		}
		t.idem[idempotencyKey] = idemEntry{pos: m.Position, expires: exp}
		t.idemQ = append(t.idemQ, idemRef{key: idempotencyKey, expires: exp})
	}
	for node := range t.nodes {
		node.deliver(m)
	}
	return m.Position, nil
}

// append adds m to the history ring, growing it up to limit entries and
// then overwriting the oldest.
func (t *memTopic) append(m *Message, limit int) {
	if t.n == len(t.ring) && t.n < limit {
		nr := make([]*Message, min(limit, max(8, 2*len(t.ring))))
		for i := 0; i < t.n; i++ {
			nr[i] = t.ring[(t.head+i)%len(t.ring)]
		}
		t.ring, t.head = nr, 0
	}
	size := len(t.ring)
	if t.n == size {
		t.ring[t.head] = nil
		t.head = (t.head + 1) % size
		t.n--
	}
	t.ring[(t.head+t.n)%size] = m
	t.n++
}

func (t *memTopic) expireIdem(now time.Time) {
	i := 0
	for ; i < len(t.idemQ) && !t.idemQ[i].expires.After(now); i++ {
		if e, ok := t.idem[t.idemQ[i].key]; ok && !e.expires.After(now) {
			delete(t.idem, t.idemQ[i].key)
		}
	}
	t.idemQ = t.idemQ[i:]
}

func (n *memNode) deliver(m *Message) {
	n.mu.RLock()
	r := n.recv
	closed := n.closed
	n.mu.RUnlock()
	if r != nil && !closed {
		r.Deliver(m)
	}
}

func (n *memNode) Subscribe(ctx context.Context, topic string) error {
	return n.setInterest(ctx, topic, true)
}

func (n *memNode) Unsubscribe(ctx context.Context, topic string) error {
	return n.setInterest(ctx, topic, false)
}

func (n *memNode) setInterest(ctx context.Context, topic string, on bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.RLock()
	err := n.check()
	n.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("memory backplane: subscribe: %w", err)
	}
	t := n.b.topic(topic, true)
	t.mu.Lock()
	defer t.mu.Unlock()
	if on {
		t.nodes[n] = struct{}{}
	} else {
		delete(t.nodes, n)
	}
	return nil
}

func (n *memNode) History(ctx context.Context, topic string, after Position) (History, error) {
	if err := ctx.Err(); err != nil {
		return History{}, err
	}
	n.mu.RLock()
	err := n.check()
	n.mu.RUnlock()
	if err != nil {
		return History{}, fmt.Errorf("memory backplane: history: %w", err)
	}
	t := n.b.topic(topic, false)
	if t == nil {
		return History{Complete: after.Seq == 0}, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trimAge(time.Now().Add(-n.b.opts.HistoryAge))
	h := History{Position: Position{Epoch: t.epoch, Seq: t.seq}}
	if after.Seq > t.seq || (after.Epoch != t.epoch && after.Seq != 0) {
		return h, nil // from another lineage
	}
	oldest := t.seq - uint64(t.n) + 1 // first retained Seq
	if after.Seq+1 < oldest {
		return h, nil
	}
	h.Complete = true
	size := len(t.ring)
	for s := after.Seq + 1; s <= t.seq; s++ {
		h.Messages = append(h.Messages, t.ring[(t.head+int(s-oldest))%size])
	}
	return h, nil
}

// trimAge drops history older than cutoff. The topic's position stays in
// t.seq, and t.n keeps counting exactly the retained messages, which
// History's Seq arithmetic relies on.
func (t *memTopic) trimAge(cutoff time.Time) {
	size := len(t.ring)
	for t.n > 0 && t.ring[t.head].Time.Before(cutoff) {
		t.ring[t.head] = nil
		t.head = (t.head + 1) % size
		t.n--
	}
}

func (n *memNode) Snapshot(ctx context.Context, topic string) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	n.mu.RLock()
	err := n.check()
	n.mu.RUnlock()
	if err != nil {
		return Snapshot{}, fmt.Errorf("memory backplane: snapshot: %w", err)
	}
	t := n.b.topic(topic, false)
	if t == nil {
		return Snapshot{}, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Snapshot{Position: Position{Epoch: t.epoch, Seq: t.seq}, Items: make([]*Message, 0, len(t.snap))}
	for _, m := range t.snap {
		s.Items = append(s.Items, m)
	}
	sortBySeq(s.Items)
	return s, nil
}

func (n *memNode) Delete(ctx context.Context, topic string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.RLock()
	err := n.check()
	n.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("memory backplane: delete: %w", err)
	}
	n.b.mu.Lock()
	t := n.b.topics[topic]
	delete(n.b.topics, topic)
	n.b.mu.Unlock()
	if t != nil {
		// Subscribed nodes stay subscribed: they move to the new topic.
		t.mu.Lock()
		nodes := t.nodes
		t.mu.Unlock()
		nt := n.b.topic(topic, true)
		nt.mu.Lock()
		for node := range nodes {
			nt.nodes[node] = struct{}{}
		}
		nt.mu.Unlock()
	}
	return nil
}

func (n *memNode) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.recv = nil
	n.mu.Unlock()
	n.b.mu.Lock()
	topics := make([]*memTopic, 0, len(n.b.topics))
	for _, t := range n.b.topics {
		topics = append(topics, t)
	}
	n.b.mu.Unlock()
	for _, t := range topics {
		t.mu.Lock()
		delete(t.nodes, n)
		t.mu.Unlock()
	}
	return nil
}

func bridgeDefaults() bridge.MemoryOptions { return bridge.MemoryOptions{} }

func sortBySeq(ms []*Message) {
	slices.SortFunc(ms, func(a, b *Message) int { return cmp.Compare(a.Position.Seq, b.Position.Seq) })
}
