package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/periodic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Presence
//
// Presence entries live in the stream S_PRES, one subject per entry,
//
//	P.p.<topic>.<session>  the entry, as JSON (last one per subject)
//
// kept in memory with MaxAge PresenceTTL: the server drops an entry that
// its node has not written again for that long. Each node keeps the entries
// of its sessions and writes them again every PresenceTTL/3, so the
// entries of a node that dies without closing (killed, cut off) leave
// within PresenceTTL; a node that closes purges its entries. A count or a
// read creates a short-lived consumer filtered on the topic's entries: its
// pending count is the count, and a read fetches up to the limit.
//
// Join and leave events are core NATS messages on the topic's live subject
// with the header Fanout-Presence ("join" or "leave") and the entry as
// payload. A node's delivery goroutine hands them over between the
// messages around them, in the order the server delivers them.

// defaultPresenceTTL is the default of Options.PresenceTTL.
const defaultPresenceTTL = 30 * time.Second

// hdrPresence marks a join or leave event on a live subject.
const hdrPresence = "Fanout-Presence"

// presenceState is a node's presence.
type presenceState struct {
	mu      sync.Mutex
	stream  jetstream.Stream             // S_PRES, once made
	topics  map[string]map[string][]byte // topic -> session -> entry
	closed  bool
	refresh periodic.Loop // rewrites the node's entries
}

func (b *Backplane) presenceTTL() time.Duration {
	if b.opts.PresenceTTL > 0 {
		return b.opts.PresenceTTL
	}
	return defaultPresenceTTL
}

func (s subjects) presence(topic, session string) string {
	return s.prefix + ".p." + escapeTopic(topic) + "." + escapeTopic(session)
}
func (s subjects) presenceOf(topic string) string {
	return s.prefix + ".p." + escapeTopic(topic) + ".*"
}

// presenceStream returns S_PRES, making it on first use.
func (b *Backplane) presenceStream(ctx context.Context) (jetstream.Stream, error) {
	p := &b.pres
	p.mu.Lock()
	s := p.stream
	p.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := b.makeStream(ctx, jetstream.StreamConfig{
		Name:              b.opts.Stream + "_PRES",
		Description:       "fanout: presence entries",
		Subjects:          []string{b.opts.Prefix + ".p.*.*"},
		MaxMsgsPerSubject: 1,
		MaxAge:            b.presenceTTL(),
		Storage:           jetstream.MemoryStorage,
		Replicas:          b.opts.Replicas,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.stream = s
	p.mu.Unlock()
	return s, nil
}

// AddPresence implements [fanout.PresenceBackplane].
func (b *Backplane) AddPresence(ctx context.Context, topic string, c fanout.ClientInfo) error {
	o, err := b.begin(ctx, "add presence")
	if err != nil {
		return err
	}
	defer o.end()
	enc, err := json.Marshal(c)
	if err != nil {
		return o.fail(err)
	}
	p := &b.pres
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("nats backplane: add presence: %w", fanout.ErrClosed)
	}
	if p.topics == nil {
		p.topics = make(map[string]map[string][]byte)
	}
	m := p.topics[topic]
	if m == nil {
		m = make(map[string][]byte)
		p.topics[topic] = m
	}
	m[c.Session] = enc
	b.startRefreshLocked()
	p.mu.Unlock()
	if _, err := b.presenceStream(o.ctx); err != nil {
		return o.fail(err)
	}
	if _, err := b.js.Publish(o.ctx, b.subj.presence(topic, c.Session), enc); err != nil {
		return o.fail(err)
	}
	return nil
}

// RemovePresence implements [fanout.PresenceBackplane].
func (b *Backplane) RemovePresence(ctx context.Context, topic, session string) error {
	p := &b.pres
	p.mu.Lock()
	if m := p.topics[topic]; m != nil {
		delete(m, session)
		if len(m) == 0 {
			delete(p.topics, topic)
		}
	}
	p.mu.Unlock()
	o, err := b.begin(ctx, "remove presence")
	if err != nil {
		return err
	}
	defer o.end()
	s, err := b.presenceStream(o.ctx)
	if err != nil {
		return o.fail(err)
	}
	if err := s.Purge(o.ctx, jetstream.WithPurgeSubject(b.subj.presence(topic, session))); err != nil {
		return o.fail(err)
	}
	return nil
}

// presenceConsumer makes a consumer of the topic's entries, which the
// caller deletes with the returned function.
func (b *Backplane) presenceConsumer(ctx context.Context, topic string) (jetstream.Consumer, func(), error) {
	s, err := b.presenceStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     b.subj.presenceOf(topic),
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 10 * time.Second,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, nil, err
	}
	name := c.CachedInfo().Name
	return c, func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
		defer cancel()
		s.DeleteConsumer(ctx, name) // else it goes when inactive
	}, nil
}

// Presence implements [fanout.PresenceBackplane].
func (b *Backplane) Presence(ctx context.Context, topic string, limit int) ([]fanout.ClientInfo, error) {
	o, err := b.begin(ctx, "presence")
	if err != nil {
		return nil, err
	}
	defer o.end()
	c, drop, err := b.presenceConsumer(o.ctx, topic)
	if err != nil {
		return nil, o.fail(err)
	}
	defer drop()
	n := min(int(c.CachedInfo().NumPending), limit)
	l := make([]fanout.ClientInfo, 0, n)
	for len(l) < n {
		batch, err := c.FetchNoWait(n - len(l))
		if err != nil {
			return nil, o.fail(err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			var ci fanout.ClientInfo
			if err := json.Unmarshal(msg.Data(), &ci); err == nil {
				l = append(l, ci)
			}
		}
		if err := batch.Error(); err != nil {
			return nil, o.fail(err)
		}
		if got == 0 {
			break // entries expired since the count
		}
	}
	return l, nil
}

// PresenceCount implements [fanout.PresenceBackplane].
func (b *Backplane) PresenceCount(ctx context.Context, topic string) (int, error) {
	o, err := b.begin(ctx, "presence count")
	if err != nil {
		return 0, err
	}
	defer o.end()
	c, drop, err := b.presenceConsumer(o.ctx, topic)
	if err != nil {
		return 0, o.fail(err)
	}
	defer drop()
	return int(c.CachedInfo().NumPending), nil
}

// PublishPresence implements [fanout.PresenceBackplane]: a core NATS
// message on the topic's live subject.
func (b *Backplane) PublishPresence(ctx context.Context, e *fanout.PresenceEvent) error {
	o, err := b.begin(ctx, "publish presence")
	if err != nil {
		return err
	}
	defer o.end()
	enc, err := json.Marshal(e.Client)
	if err != nil {
		return o.fail(err)
	}
	kind := "join"
	if e.Leave {
		kind = "leave"
	}
	msg := &nats.Msg{Subject: b.subj.live(e.Topic), Header: nats.Header{hdrPresence: []string{kind}}, Data: enc}
	if err := b.nc.PublishMsg(msg); err != nil {
		return o.fail(err)
	}
	// Once the server answers the flush, it has handed the event to the
	// subscribed nodes' connections: what the caller publishes next is
	// stored, and republished to them, after it.
	if err := b.nc.FlushWithContext(o.ctx); err != nil {
		return o.fail(err)
	}
	return nil
}

// livePresence hands a join or leave event from a live subject to r; it
// reports false when msg is not one.
func livePresence(topic string, msg *nats.Msg, r fanout.Receiver) bool {
	kind := msg.Header.Get(hdrPresence)
	if kind == "" {
		return false
	}
	pr, ok := r.(fanout.PresenceReceiver)
	if !ok || (kind != "join" && kind != "leave") {
		return true
	}
	e := &fanout.PresenceEvent{Topic: topic, Leave: kind == "leave"}
	if json.Unmarshal(msg.Data, &e.Client) == nil {
		pr.DeliverPresence(e)
	}
	return true
}

// startRefreshLocked starts the goroutine that writes the node's entries
// again, once. b.pres.mu must be held.
func (b *Backplane) startRefreshLocked() {
	b.pres.refresh.Start(b.presenceTTL()/3, b.refreshPresence)
}

// refreshPresence writes the node's entries again.
func (b *Backplane) refreshPresence(stop <-chan struct{}) {
	type entry struct {
		subj string
		enc  []byte
	}
	p := &b.pres
	p.mu.Lock()
	var l []entry
	for topic, m := range p.topics {
		for s, enc := range m {
			l = append(l, entry{b.subj.presence(topic, s), enc})
		}
	}
	p.mu.Unlock()
	for _, e := range l {
		select {
		case <-stop:
			return
		default:
		}
		if _, err := b.js.PublishAsync(e.subj, e.enc); err != nil {
			return
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-stop:
	case <-time.After(b.presenceTTL() / 3):
	}
}

// closePresence stops the refresh and purges the node's entries.
func (b *Backplane) closePresence() {
	p := &b.pres
	p.mu.Lock()
	p.closed = true
	topics := p.topics
	p.topics = nil
	wait := p.refresh.Stop()
	s := p.stream
	p.mu.Unlock()
	wait()
	if s == nil || len(topics) == 0 || b.nc.Status() != nats.CONNECTED {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for topic, m := range topics {
		for session := range m {
			err := s.Purge(ctx, jetstream.WithPurgeSubject(b.subj.presence(topic, session)))
			if errors.Is(err, context.DeadlineExceeded) {
				return
			}
		}
	}
}
