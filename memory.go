package fanout

import (
	"cmp"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryOptions configures a [MemoryBroker]. The zero value is valid: every
// field documents its default. NewMemoryBroker copies the options.
type MemoryOptions struct {
	// HistorySize is how many messages each topic keeps. Default: 1024.
	HistorySize int
	// HistoryAge is how long a message stays in history; older messages
	// are dropped at that age whether or not the topic is used again.
	// Default: 10m.
	HistoryAge time.Duration
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered, at most as long as the topic's stored state. Default: 5m.
	IdempotencyWindow time.Duration
	// IdleTTL is how long a topic's stored state (position, history,
	// snapshot, idempotency keys) lives without a publish, a History or a
	// Snapshot. Then it is forgotten: the topic starts again at Seq 0, and
	// its next publish starts a new epoch. Default: 24h, long enough that
	// a topic used every day (a product page, a saga a client follows for
	// hours) keeps its state, short enough that topics used once (one per
	// saga) cost memory for a day, not forever.
	IdleTTL time.Duration
	// FinalTTL replaces IdleTTL for a topic whose last message was
	// published [WithFinal]: its state is forgotten FinalTTL after that
	// message, however often it is read, which leaves clients that
	// follow it time to read the end. Default: 10m.
	FinalTTL time.Duration
}

// Defaults of MemoryOptions.
const (
	defaultHistorySize       = 1024
	defaultHistoryAge        = 10 * time.Minute
	defaultIdempotencyWindow = 5 * time.Minute
	defaultIdleTTL           = 24 * time.Hour
	defaultFinalTTL          = 10 * time.Minute
)

// MemoryBroker is the in-process backplane: the hubs of one process whose
// backplanes are nodes of one broker act as one cluster. A hub created
// without a backplane uses a private broker with the default options.
//
// History and snapshots live in the process's memory and are lost with it;
// each topic's epoch is random, so a client that resumes against a new
// process learns that its position no longer counts.
//
// # Topic lifecycle
//
// A topic exists in the broker while a node is subscribed to it or it has
// stored state. Its state is created by its first publish and expires after
// [MemoryOptions.IdleTTL] without a publish or read, or
// [MemoryOptions.FinalTTL] after a final message; history older than
// [MemoryOptions.HistoryAge] is dropped at that age. Expiry runs on one
// timer per broker, set for the earliest deadline, and only while the
// broker has nodes that are not closed: no goroutine outlives them.
//
// A MemoryBroker is safe for concurrent use.
type MemoryBroker struct {
	opts MemoryOptions

	// Lock order: a topic's mu before mu.
	mu       sync.RWMutex // guards the fields below
	topics   map[string]*memTopic
	peak     int         // the most entries topics held since it was last made
	queue    expiryQueue // topics with a deadline, earliest first
	nodes    int         // nodes made and not yet closed
	timer    *time.Timer // set for queue's earliest deadline; nil when not set
	timerAt  time.Time
	fired    chan struct{} // closed when the callback of the last timer set returns
	sweeping bool          // a timer callback is running: it sets the next timer

	ctl  memControl  // the nodes that opened control (see control.go)
	pres memPresence // memory_presence.go
}

// memTopic is a topic of the broker.
type memTopic struct {
	name string

	mu sync.Mutex // guards the fields below; held while delivering
	// dead is set when the topic is removed from the broker's map: whoever
	// finds it then must look the name up again.
	dead bool
	// The stored state, all zero while seq is 0. epoch is chosen at the
	// first publish, so that a topic whose state expired or was deleted
	// never hands out a position it handed out before.
	epoch   string
	seq     uint64
	ring    []*Message // history, oldest first from head; grows to HistorySize
	head    int
	n       int
	snap    map[string]*Message
	idem    map[string]idemEntry
	idemQ   []idemRef // insertion order, for expiry
	touched time.Time // the last publish or read
	final   bool      // the last message was final: the state ends at finalAt
	finalAt time.Time
	nodes   []*memNode  // subscribed
	sched   time.Time   // the deadline the topic is queued with; zero when not queued
	lim     TopicLimits // of the last publish (Message.TopicLimits)

	// Guarded by the broker's mu.
	qi   int // index in the broker's queue; -1 when not queued
	qdue time.Time
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
	b *MemoryBroker

	mu     sync.RWMutex // guards recv and closed
	recv   Receiver
	closed bool
}

// NewMemoryBroker returns a broker without topics.
func NewMemoryBroker(opts *MemoryOptions) *MemoryBroker {
	var o MemoryOptions
	if opts != nil {
		o = *opts
	}
	if o.HistorySize <= 0 {
		o.HistorySize = defaultHistorySize
	}
	if o.HistoryAge <= 0 {
		o.HistoryAge = defaultHistoryAge
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = defaultIdempotencyWindow
	}
	if o.IdleTTL <= 0 {
		o.IdleTTL = defaultIdleTTL
	}
	if o.FinalTTL <= 0 {
		o.FinalTTL = defaultFinalTTL
	}
	return &MemoryBroker{opts: o, topics: make(map[string]*memTopic)}
}

// Node returns a new node of the broker, for one hub's
// [HubOptions.Backplane]. The hub closes it.
func (b *MemoryBroker) Node() Backplane {
	b.mu.Lock()
	b.nodes++
	b.armLocked()
	b.mu.Unlock()
	return &memNode{b: b}
}

// newEpoch returns a random epoch name.
func newEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// lockTopic returns the topic named name, locked, creating it when create
// is set; nil when it does not exist and create is not set.
func (b *MemoryBroker) lockTopic(name string, create bool) *memTopic {
	for {
		b.mu.RLock()
		t := b.topics[name]
		b.mu.RUnlock()
		if t == nil {
			if !create {
				return nil
			}
			b.mu.Lock()
			if t = b.topics[name]; t == nil {
				t = &memTopic{name: name, qi: -1}
				b.topics[name] = t
				b.peak = max(b.peak, len(b.topics))
			}
			b.mu.Unlock()
		}
		t.mu.Lock()
		if !t.dead {
			return t
		}
		t.mu.Unlock()
	}
}

// release frees t when nothing holds it: no node subscribed, no stored
// state. t.mu must be held.
func (b *MemoryBroker) release(t *memTopic) {
	if t.seq != 0 || len(t.nodes) != 0 {
		return
	}
	t.dead = true
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.qi >= 0 {
		heap.Remove(&b.queue, t.qi)
	}
	delete(b.topics, t.name)
	if b.peak > 1024 && len(b.topics) < b.peak/4 {
		// Go maps do not shrink: after a crowd of topics has gone, make
		// the map anew so that it does not keep their room.
		m := make(map[string]*memTopic, len(b.topics))
		for k, v := range b.topics {
			m[k] = v
		}
		b.topics, b.peak = m, len(m)
	}
	if c := cap(b.queue); c > 1024 && len(b.queue) < c/4 {
		b.queue = slices.Clip(slices.Clone(b.queue))
	}
}

// reset forgets t's stored state. t.mu must be held.
func (t *memTopic) reset() {
	t.epoch, t.seq = "", 0
	t.ring, t.head, t.n = nil, 0, 0
	t.snap, t.idem, t.idemQ = nil, nil, nil
	t.final = false
	t.touched, t.finalAt = time.Time{}, time.Time{}
	t.lim = TopicLimits{}
}

// stateDeadline is when t's stored state expires. t.mu must be held and
// t.seq must not be 0.
func (t *memTopic) stateDeadline(o *MemoryOptions) time.Time {
	if t.final {
		return t.finalAt
	}
	return t.touched.Add(t.idleTTL(o))
}

// historySize, historyAge and idleTTL are the topic's limits: those of
// its last publish where set and smaller than the broker's, else the
// broker's. t.mu must be held.
func (t *memTopic) historySize(o *MemoryOptions) int {
	if l := t.lim.HistorySize; l > 0 && l < o.HistorySize {
		return l
	}
	return o.HistorySize
}

func (t *memTopic) historyAge(o *MemoryOptions) time.Duration {
	if l := t.lim.HistoryAge; l > 0 && l < o.HistoryAge {
		return l
	}
	return o.HistoryAge
}

func (t *memTopic) idleTTL(o *MemoryOptions) time.Duration {
	if l := t.lim.IdleTTL; l > 0 {
		return l
	}
	return o.IdleTTL
}

// nextDue is t's earliest deadline: its state's expiry, its oldest
// message's age limit or its oldest idempotency key's expiry; zero when it
// has none. t.mu must be held.
func (t *memTopic) nextDue(o *MemoryOptions) time.Time {
	if t.seq == 0 {
		return time.Time{}
	}
	due := t.stateDeadline(o)
	if t.n > 0 {
		if d := t.ring[t.head].Time.Add(t.historyAge(o)); d.Before(due) {
			due = d
		}
	}
	if len(t.idemQ) > 0 && t.idemQ[0].expires.Before(due) {
		due = t.idemQ[0].expires
	}
	return due
}

// schedule makes sure t is looked at by its deadline due. A topic queued
// with an earlier deadline stays as it is: when it comes up, the sweep
// finds its actual deadline and queues it again. t.mu must be held.
func (b *MemoryBroker) schedule(t *memTopic, due time.Time) {
	if due.IsZero() || (!t.sched.IsZero() && !due.Before(t.sched)) {
		return
	}
	t.sched = due
	b.mu.Lock()
	defer b.mu.Unlock()
	t.qdue = due
	if t.qi >= 0 {
		heap.Fix(&b.queue, t.qi)
	} else {
		heap.Push(&b.queue, t)
	}
	b.armLocked()
}

// armLocked sets the timer for the queue's earliest deadline. b.mu must be
// held.
func (b *MemoryBroker) armLocked() {
	if b.nodes == 0 || b.sweeping || len(b.queue) == 0 {
		return
	}
	due := b.queue[0].qdue
	if b.timer != nil {
		if !due.Before(b.timerAt) {
			return
		}
		if !b.timer.Stop() {
			return // it fired: its callback sets the next timer
		}
		b.timer.Reset(time.Until(due))
		b.timerAt = due
		return
	}
	fired := make(chan struct{})
	b.fired, b.timerAt = fired, due
	b.timer = time.AfterFunc(time.Until(due), func() { b.sweep(fired) })
}

// sweep expires what is due, then sets the timer for what comes next.
func (b *MemoryBroker) sweep(fired chan struct{}) {
	defer close(fired)
	b.mu.Lock()
	b.timer = nil
	b.sweeping = true
	b.mu.Unlock()
	batch := make([]*memTopic, 0, 256)
	for {
		now := time.Now()
		batch = batch[:0]
		b.mu.Lock()
		for b.nodes > 0 && len(b.queue) > 0 && len(batch) < cap(batch) && !b.queue[0].qdue.After(now) {
			batch = append(batch, heap.Pop(&b.queue).(*memTopic))
		}
		if len(batch) == 0 {
			b.sweeping = false
			b.armLocked()
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		for _, t := range batch {
			b.expire(t, now)
		}
	}
}

// expire drops what of t is past its time at now.
func (b *MemoryBroker) expire(t *memTopic, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead {
		return
	}
	b.mu.RLock()
	if t.qi < 0 {
		t.sched = time.Time{}
	}
	b.mu.RUnlock()
	if t.seq != 0 && !now.Before(t.stateDeadline(&b.opts)) {
		t.reset()
	} else {
		t.trimAge(now.Add(-t.historyAge(&b.opts)))
		t.expireIdem(now)
	}
	b.release(t)
	if !t.dead {
		b.schedule(t, t.nextDue(&b.opts))
	}
}

func (n *memNode) check() error {
	if n.closed {
		return ErrClosed
	}
	return nil
}

// open reports ErrClosed, wrapped for op, once the node is closed.
func (n *memNode) open(op string) error {
	n.mu.RLock()
	err := n.check()
	n.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("memory backplane: %s: %w", op, err)
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
	if err := n.open("publish"); err != nil {
		return Position{}, err
	}
	b := n.b
	t := b.lockTopic(m.Topic, true)
	defer t.mu.Unlock()
	now := time.Now()
	if idempotencyKey != "" {
		t.expireIdem(now)
		if e, ok := t.idem[idempotencyKey]; ok {
			return e.pos, nil
		}
	}
	if t.seq == 0 {
		t.epoch = newEpoch()
	}
	t.seq++
	m.Position = Position{Epoch: t.epoch, Seq: t.seq}
	t.lim = m.TopicLimits()
	t.trimAge(now.Add(-t.historyAge(&b.opts)))
	t.trimSize(t.historySize(&b.opts))
	t.append(m, t.historySize(&b.opts))
	if m.Key != "" {
		if t.snap == nil {
			t.snap = make(map[string]*Message)
		}
		t.snap[m.Key] = m
	}
	if idempotencyKey != "" {
		exp := now.Add(b.opts.IdempotencyWindow)
		if t.idem == nil {
			t.idem = make(map[string]idemEntry)
		}
		t.idem[idempotencyKey] = idemEntry{pos: m.Position, expires: exp}
		t.idemQ = append(t.idemQ, idemRef{key: idempotencyKey, expires: exp})
	}
	t.touched = now
	t.final = m.Final()
	if t.final {
		t.finalAt = now.Add(b.opts.FinalTTL)
	}
	b.schedule(t, t.nextDue(&b.opts))
	for _, node := range t.nodes {
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

// trimSize drops the oldest messages beyond limit, for a topic whose
// limit shrank.
func (t *memTopic) trimSize(limit int) {
	if t.n <= limit-1 {
		return
	}
	size := len(t.ring)
	for t.n > limit-1 && t.n > 0 {
		t.ring[t.head] = nil
		t.head = (t.head + 1) % size
		t.n--
	}
	if t.n == 0 {
		t.ring, t.head = nil, 0
	}
}

// trimAge drops history from cutoff back: a message expires at its Time
// plus HistoryAge, as nextDue has it. The topic's position stays in t.seq,
// and t.n keeps counting exactly the retained messages, which History's Seq
// arithmetic relies on.
func (t *memTopic) trimAge(cutoff time.Time) {
	size := len(t.ring)
	for t.n > 0 && !t.ring[t.head].Time.After(cutoff) {
		t.ring[t.head] = nil
		t.head = (t.head + 1) % size
		t.n--
	}
	if t.n == 0 {
		t.ring, t.head = nil, 0 // a topic that fell silent keeps no ring
	}
}

func (t *memTopic) expireIdem(now time.Time) {
	i := 0
	for ; i < len(t.idemQ) && !t.idemQ[i].expires.After(now); i++ {
		if e, ok := t.idem[t.idemQ[i].key]; ok && !e.expires.After(now) {
			delete(t.idem, t.idemQ[i].key)
		}
	}
	t.idemQ = t.idemQ[i:]
	if len(t.idemQ) == 0 {
		t.idem, t.idemQ = nil, nil
	}
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
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.open("subscribe"); err != nil {
		return err
	}
	t := n.b.lockTopic(topic, true)
	defer t.mu.Unlock()
	if !slices.Contains(t.nodes, n) {
		t.nodes = append(t.nodes, n)
	}
	return nil
}

func (n *memNode) Unsubscribe(ctx context.Context, topic string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.open("unsubscribe"); err != nil {
		return err
	}
	if t := n.b.lockTopic(topic, false); t != nil {
		t.removeNode(n)
		n.b.release(t)
		t.mu.Unlock()
	}
	return nil
}

// removeNode removes n from t's nodes. t.mu must be held.
func (t *memTopic) removeNode(n *memNode) {
	if i := slices.Index(t.nodes, n); i >= 0 {
		t.nodes = slices.Delete(t.nodes, i, i+1)
		if len(t.nodes) == 0 {
			t.nodes = nil
		}
	}
}

func (n *memNode) History(ctx context.Context, topic string, after Position) (History, error) {
	if err := ctx.Err(); err != nil {
		return History{}, err
	}
	if err := n.open("history"); err != nil {
		return History{}, err
	}
	t := n.b.lockTopic(topic, false)
	if t == nil {
		return History{Complete: after.Seq == 0}, nil
	}
	defer t.mu.Unlock()
	if t.seq == 0 {
		return History{Complete: after.Seq == 0}, nil
	}
	now := time.Now()
	t.touched = now
	t.trimAge(now.Add(-t.historyAge(&n.b.opts)))
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

func (n *memNode) Snapshot(ctx context.Context, topic string) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	if err := n.open("snapshot"); err != nil {
		return Snapshot{}, err
	}
	t := n.b.lockTopic(topic, false)
	if t == nil {
		return Snapshot{}, nil
	}
	defer t.mu.Unlock()
	if t.seq == 0 {
		return Snapshot{}, nil
	}
	t.touched = time.Now()
	s := Snapshot{Position: Position{Epoch: t.epoch, Seq: t.seq}, Items: make([]*Message, 0, len(t.snap))}
	for _, m := range t.snap {
		s.Items = append(s.Items, m)
	}
	sortBySeq(s.Items)
	return s, nil
}

// Delete forgets the topic's stored state. Subscribed nodes stay
// subscribed; the next publish starts a new epoch.
func (n *memNode) Delete(ctx context.Context, topic string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.open("delete"); err != nil {
		return err
	}
	if t := n.b.lockTopic(topic, false); t != nil {
		t.reset()
		n.b.release(t)
		t.mu.Unlock()
	}
	return nil
}

// Close ends the node's subscriptions. When it is the broker's last node,
// it stops the expiry timer and waits for a running sweep.
func (n *memNode) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.recv = nil
	n.mu.Unlock()
	n.closeControl()
	n.dropPresence()
	b := n.b
	b.mu.RLock()
	topics := make([]*memTopic, 0, len(b.topics))
	for _, t := range b.topics {
		topics = append(topics, t)
	}
	b.mu.RUnlock()
	for _, t := range topics {
		t.mu.Lock()
		if !t.dead {
			t.removeNode(n)
			b.release(t)
		}
		t.mu.Unlock()
	}
	var wait chan struct{}
	b.mu.Lock()
	b.nodes--
	if b.nodes == 0 {
		switch {
		case b.timer != nil && b.timer.Stop():
			b.timer = nil
		case b.timer != nil || b.sweeping:
			wait = b.fired
		}
	}
	b.mu.Unlock()
	if wait != nil {
		<-wait
	}
	return nil
}

func sortBySeq(ms []*Message) {
	slices.SortFunc(ms, func(a, b *Message) int { return cmp.Compare(a.Position.Seq, b.Position.Seq) })
}

// expiryQueue is a min-heap of topics by deadline (container/heap).
type expiryQueue []*memTopic

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].qdue.Before(q[j].qdue) }
func (q expiryQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].qi, q[j].qi = i, j
}

func (q *expiryQueue) Push(x any) {
	t := x.(*memTopic)
	t.qi = len(*q)
	*q = append(*q, t)
}

func (q *expiryQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.qi = -1
	*q = old[:len(old)-1]
	return t
}
