package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gofanout/fanout"
	"github.com/nats-io/nats.go/jetstream"
)

// pubSlot serialises this node's publishes to one topic, so that they do
// not race each other for the topic's next Seq (publishes from other nodes
// still may; the stream's compare-and-set settles those).
type pubSlot struct {
	token chan struct{} // capacity 1: whoever has put a value in holds the slot
	refs  int           // guarded by Backplane.mu
}

func (b *Backplane) acquireSlot(ctx context.Context, topic string) (*pubSlot, error) {
	b.mu.Lock()
	s := b.slots[topic]
	if s == nil {
		s = &pubSlot{token: make(chan struct{}, 1)}
		b.slots[topic] = s
	}
	s.refs++
	b.mu.Unlock()
	select {
	case s.token <- struct{}{}:
		return s, nil
	case <-ctx.Done():
		b.dropSlot(topic, s)
		return nil, ctx.Err()
	}
}

func (b *Backplane) releaseSlot(topic string, s *pubSlot) {
	<-s.token
	b.dropSlot(topic, s)
}

func (b *Backplane) dropSlot(topic string, s *pubSlot) {
	b.mu.Lock()
	s.refs--
	if s.refs == 0 {
		delete(b.slots, topic)
	}
	b.mu.Unlock()
}

// maxCached bounds what the node remembers per topic (heads, absorbed).
const maxCached = 4096

// head returns the last message of topic that the node knows to be stored,
// or nil.
func (b *Backplane) head(topic string) *stored {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.heads[topic]
}

// noteHead records that st is stored, when it is newer than what the node
// knew of its topic.
func (b *Backplane) noteHead(st *stored) {
	topic, p := st.msg.Topic, st.msg.Position
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.heads[topic]; h != nil && h.msg.Position.Epoch == p.Epoch && h.msg.Position.Seq >= p.Seq {
		return
	}
	if len(b.heads) >= maxCached {
		clear(b.heads)
	}
	b.heads[topic] = st
	if f, ok := b.floors[topic]; !ok || f.Epoch != p.Epoch || f.Seq < p.Seq {
		if len(b.floors) >= maxCached {
			clear(b.floors)
		}
		b.floors[topic] = p
	}
}

// rolledBack reports whether the topic's last stored message, at p, is
// older than a message of the same epoch that the node saw stored: the
// stream came back with older data (restored from a backup, or from
// files an OS crash left unsynced), and p.Seq+1 may already name a message
// that clients have.
func (b *Backplane) rolledBack(topic string, p fanout.Position) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.floors[topic]
	return ok && f.Epoch == p.Epoch && f.Seq > p.Seq
}

func (b *Backplane) dropHead(topic string) {
	b.mu.Lock()
	delete(b.heads, topic)
	b.mu.Unlock()
}

// isAbsorbed reports whether the keyed message at p is known to be in the
// snapshot stream.
func (b *Backplane) isAbsorbed(topic string, p fanout.Position) bool {
	b.mu.Lock()
	a, ok := b.absorbed[topic]
	b.mu.Unlock()
	return ok && a.Epoch == p.Epoch && a.Seq >= p.Seq
}

func (b *Backplane) setAbsorbed(topic string, p fanout.Position) {
	b.mu.Lock()
	if len(b.absorbed) >= maxCached {
		clear(b.absorbed)
	}
	if a, ok := b.absorbed[topic]; !ok || a.Epoch != p.Epoch || a.Seq < p.Seq {
		b.absorbed[topic] = p
	}
	b.mu.Unlock()
}

// Publish implements [fanout.Backplane]. It appends m after the topic's
// last message with the next Seq, on condition that the topic's last
// message is still that one; when another node got there first, it reads
// the topic's last message and retries. The node remembers the last
// message of each topic it published or received, so that it reads only
// after a conflict.
func (b *Backplane) Publish(ctx context.Context, m *fanout.Message, idempotencyKey string) (fanout.Position, error) {
	o, err := b.begin(ctx, "publish")
	if err != nil {
		return fanout.Position{}, err
	}
	defer o.end()
	slot, err := b.acquireSlot(o.ctx, m.Topic)
	if err != nil {
		return fanout.Position{}, o.fail(err)
	}
	defer b.releaseSlot(m.Topic, slot)
	missing := 0
	for {
		pos, err := b.publishOnce(o.ctx, m, idempotencyKey)
		switch {
		case err == nil:
			return pos, nil
		case errors.Is(err, errConflict):
			// Another node published first: try the next Seq.
		case streamMissing(err) && missing < 3:
			missing++
			b.lost()
		default:
			return fanout.Position{}, o.fail(err)
		}
		if err := o.ctx.Err(); err != nil {
			return fanout.Position{}, o.fail(err)
		}
	}
}

// errConflict says that the topic's last message changed between reading
// it and appending after it.
var errConflict = errors.New("nats backplane: concurrent publish")

func (b *Backplane) publishOnce(ctx context.Context, m *fanout.Message, idem string) (fanout.Position, error) {
	ss, err := b.ensureStreams(ctx)
	if err != nil {
		return fanout.Position{}, err
	}
	inc, err := b.incarnation(ctx, ss)
	if err != nil {
		return fanout.Position{}, err
	}
	subj := b.subj.history(m.Topic)
	last := b.head(m.Topic)
	if last == nil {
		if last, err = b.lastStored(ctx, ss.hist, subj, m.Topic); err != nil {
			return fanout.Position{}, err
		}
	}
	pos := fanout.Position{Epoch: newEpoch(), Seq: 1}
	var expect uint64
	if last != nil {
		lp := last.msg.Position
		// Before a message goes after a keyed one, the keyed one must be in
		// the snapshot stream: so every keyed message but the topic's last
		// is always there (see the package documentation on snapshots).
		if last.msg.Key != "" && !b.isAbsorbed(m.Topic, lp) {
			if err := b.absorb(ctx, ss, last); err != nil {
				return fanout.Position{}, err
			}
			b.setAbsorbed(m.Topic, lp)
		}
		pos = fanout.Position{Epoch: lp.Epoch, Seq: lp.Seq + 1}
		if last.inc != inc || b.rolledBack(m.Topic, lp) {
			// The storage restarted since the topic's last message
			// (and may have come back older), or came back older
			// than what this node saw: a new epoch, continuing the
			// numbering, so that clients that saw lost messages are
			// told that they lost them.
			pos.Epoch = newEpoch()
		}
		expect = last.streamSeq
	}
	msg, err := encode(subj, m, pos)
	if err != nil {
		return fanout.Position{}, err
	}
	msg.Header.Set(hdrIncarnation, inc)
	opts := []jetstream.PublishOpt{
		jetstream.WithExpectLastSequencePerSubject(expect),
		jetstream.WithRetryAttempts(0),
	}
	if idem != "" {
		opts = append(opts, jetstream.WithMsgID(msgID(m.Topic, pos.Epoch, idem)))
	}
	ack, err := b.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		if wrongLast(err) {
			b.dropHead(m.Topic)
			return fanout.Position{}, errConflict
		}
		return fanout.Position{}, err
	}
	if ack.Duplicate {
		return b.duplicate(ctx, ss, m.Topic, idem, ack.Sequence)
	}
	m.Position = pos
	st := &stored{msg: m, streamSeq: ack.Sequence, inc: inc}
	b.noteHead(st)
	b.noteStreamSeq(m.Topic, st)
	if m.Key != "" {
		// When this fails, the next publish to the topic does it, and
		// snapshots read the topic's last message from history anyway.
		if b.absorb(ctx, ss, st) == nil {
			b.setAbsorbed(m.Topic, pos)
		}
	}
	if idem != "" {
		// Best effort: needed only if the first publication leaves history
		// (HistorySize newer messages) within the idempotency window.
		b.recordIdem(ctx, ss, m.Topic, idem, pos)
	}
	if m.Final() {
		b.markFinal(ctx, m.Topic, ack.Sequence)
	} else {
		b.used(ctx, m.Topic)
	}
	return pos, nil
}

// absorb makes sure the snapshot stream holds the keyed message st, or a
// later message with the same key, with a compare-and-set per key so that
// it never goes back.
func (b *Backplane) absorb(ctx context.Context, ss *streamSet, st *stored) error {
	m := st.msg
	subj := b.subj.key(m.Topic, m.Key)
	for {
		cur, err := b.lastStored(ctx, ss.keys, subj, m.Topic)
		if err != nil {
			return err
		}
		var expect uint64
		if cur != nil {
			cp := cur.msg.Position
			if cp.Epoch == m.Position.Epoch && cp.Seq >= m.Position.Seq {
				return nil
			}
			expect = cur.streamSeq
		}
		msg, err := encode(subj, m, m.Position)
		if err != nil {
			return err
		}
		_, err = b.js.PublishMsg(ctx, msg,
			jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithRetryAttempts(0))
		if err == nil || !wrongLast(err) {
			return err
		}
	}
}

// recordIdem keeps the position of a publish with an idempotency key for
// the idempotency window.
func (b *Backplane) recordIdem(ctx context.Context, ss *streamSet, topic, key string, pos fanout.Position) {
	msg, err := encode(b.subj.idem(topic, key), &fanout.Message{Time: time.Now()}, pos)
	if err != nil {
		return
	}
	b.js.PublishMsg(ctx, msg, jetstream.WithRetryAttempts(0))
}

// duplicate returns the position of the first publication of an
// idempotency key, which JetStream found at streamSeq.
func (b *Backplane) duplicate(ctx context.Context, ss *streamSet, topic, key string, streamSeq uint64) (fanout.Position, error) {
	raw, err := ss.hist.GetMsg(ctx, streamSeq)
	switch {
	case err == nil && raw.Subject == b.subj.history(topic):
		m, err := decode(topic, raw.Header, raw.Data)
		if err != nil {
			return fanout.Position{}, err
		}
		if m.Key != "" {
			// The first attempt may have stopped before this.
			b.absorb(ctx, ss, &stored{msg: m, streamSeq: streamSeq})
		}
		return m.Position, nil
	case err != nil && !msgNotFound(err):
		return fanout.Position{}, err
	}
	rec, err := b.lastStored(ctx, ss.idem, b.subj.idem(topic, key), topic)
	if err != nil {
		return fanout.Position{}, err
	}
	if rec == nil {
		return fanout.Position{}, fmt.Errorf("nats backplane: duplicate publish, but the first one's position is no longer known")
	}
	return rec.msg.Position, nil
}

// lastStored returns the last message on subj in stream, or nil when there
// is none.
func (b *Backplane) lastStored(ctx context.Context, s jetstream.Stream, subj, topic string) (*stored, error) {
	raw, err := s.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		if msgNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	m, err := decode(topic, raw.Header, raw.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s sequence %d", err, subj, raw.Sequence)
	}
	return &stored{msg: m, streamSeq: raw.Sequence, at: raw.Time, inc: raw.Header.Get(hdrIncarnation)}, nil
}

func msgNotFound(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrMsgNotFound) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound
}

func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
