package nats

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofanout/fanout"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// History implements [fanout.Backplane].
func (b *Backplane) History(ctx context.Context, topic string, after fanout.Position) (fanout.History, error) {
	o, err := b.begin(ctx, "history")
	if err != nil {
		return fanout.History{}, err
	}
	defer o.end()
	ss, last, err := b.readHead(o.ctx, topic)
	if err != nil {
		return fanout.History{}, o.fail(err)
	}
	h, err := b.historyFrom(o.ctx, ss, topic, after, last)
	if err != nil {
		return fanout.History{}, o.fail(err)
	}
	if last != nil && !last.msg.Final() {
		b.used(o.ctx, topic) // a read of a final topic does not extend it
	}
	return h, nil
}

// readHead returns the streams and the topic's last stored message, or nil
// when it has none.
func (b *Backplane) readHead(ctx context.Context, topic string) (*streamSet, *stored, error) {
	ss, err := b.ensureStreams(ctx)
	if err != nil {
		return nil, nil, err
	}
	last, err := b.lastStored(ctx, ss.hist, b.subj.history(topic), topic)
	if err != nil {
		if !streamMissing(err) {
			return nil, nil, err
		}
		b.lost()
		last = nil
	}
	return ss, last, nil
}

func (b *Backplane) history(ctx context.Context, topic string, after fanout.Position) (fanout.History, error) {
	ss, last, err := b.readHead(ctx, topic)
	if err != nil {
		return fanout.History{}, err
	}
	return b.historyFrom(ctx, ss, topic, after, last)
}

// historyFrom reads the history after a position, up to the topic's last
// message last (nil: none).
func (b *Backplane) historyFrom(ctx context.Context, ss *streamSet, topic string, after fanout.Position, last *stored) (fanout.History, error) {
	subj := b.subj.history(topic)
	var err error
	if last == nil {
		return fanout.History{Complete: after.Seq == 0}, nil
	}
	pos := last.msg.Position
	h := fanout.History{Position: pos}
	switch {
	case after.Seq > pos.Seq || (after.Seq != 0 && after.Epoch != pos.Epoch):
		return h, nil // from another lineage
	case after.Seq == pos.Seq:
		h.Complete = true
		return h, nil
	case pos.Seq-after.Seq > uint64(b.opts.HistorySize):
		return h, nil
	}
	cutoff := time.Now().Add(-b.opts.HistoryAge)
	if last.at.Before(cutoff) {
		return h, nil
	}
	start, ok := b.streamSeqHint(topic, after)
	if !ok {
		if start, ok, err = b.findStart(ctx, ss.hist, subj, topic, last, after); err != nil || !ok {
			return h, err
		}
	}
	msgs, err := b.read(ctx, b.opts.Stream, subj, topic, readStart{seq: start}, last.streamSeq)
	if err != nil {
		if streamMissing(err) {
			b.lost()
			return fanout.History{}, nil
		}
		return fanout.History{}, err
	}
	next := after.Seq + 1
	out := make([]*fanout.Message, 0, pos.Seq-after.Seq)
	for _, s := range msgs {
		p := s.msg.Position
		if s.streamSeq > last.streamSeq || p.Epoch != pos.Epoch || p.Seq < next || s.at.Before(cutoff) {
			continue
		}
		if p.Seq != next {
			return h, nil // history does not reach back to after
		}
		out = append(out, s.msg)
		next++
	}
	if next != pos.Seq+1 {
		return h, nil
	}
	h.Messages, h.Complete = out, true
	return h, nil
}

// findStart returns a stream sequence from which reading subj yields the
// message after after first (perhaps after a few earlier ones), or false
// when the history on subj does not reach back to it. It probes backwards
// from last with growing steps: each probe asks for the first message on
// subj at or after a stream sequence, which the server finds without
// reading the messages of other subjects.
func (b *Backplane) findStart(ctx context.Context, s jetstream.Stream, subj, topic string, last *stored, after fanout.Position) (uint64, bool, error) {
	need := after.Seq + 1
	behind := last.msg.Position.Seq - after.Seq // messages to read, at least 1
	if behind == 1 {
		return last.streamSeq, true, nil
	}
	// Other topics' messages sit between this one's: estimate how many.
	spread := max(1, last.streamSeq/last.msg.Position.Seq)
	step := behind * spread
	for {
		q := uint64(1)
		if step < last.streamSeq {
			q = last.streamSeq - step
		}
		raw, err := s.GetMsg(ctx, q, jetstream.WithGetMsgSubject(subj))
		if err != nil {
			if msgNotFound(err) {
				return 0, false, nil
			}
			return 0, false, err
		}
		m, err := decode(topic, raw.Header, raw.Data)
		if err != nil {
			return 0, false, err
		}
		if m.Position.Seq <= need && m.Position.Epoch == last.msg.Position.Epoch {
			return raw.Sequence, true, nil
		}
		if q == 1 {
			return 0, false, nil // the oldest retained message is later than need
		}
		step *= 2
	}
}

// Snapshot implements [fanout.Backplane].
//
// The snapshot stream holds every keyed message of a topic but possibly the
// topic's last one (see the package documentation), so a snapshot is the
// snapshot stream's items, brought up to date with the history that
// follows the topic's last message as read before them.
func (b *Backplane) Snapshot(ctx context.Context, topic string) (fanout.Snapshot, error) {
	o, err := b.begin(ctx, "snapshot")
	if err != nil {
		return fanout.Snapshot{}, err
	}
	defer o.end()
	for range 5 {
		s, ok, err := b.snapshot(o.ctx, topic)
		if err != nil {
			return fanout.Snapshot{}, o.fail(err)
		}
		if ok {
			return s, nil
		}
	}
	return fanout.Snapshot{}, o.fail(errors.New("the topic changed too fast to read its snapshot"))
}

// snapshot reports false when history moved on too far while it read.
func (b *Backplane) snapshot(ctx context.Context, topic string) (fanout.Snapshot, bool, error) {
	ss, err := b.ensureStreams(ctx)
	if err != nil {
		return fanout.Snapshot{}, false, err
	}
	last, err := b.lastStored(ctx, ss.hist, b.subj.history(topic), topic)
	if err != nil && !streamMissing(err) {
		return fanout.Snapshot{}, false, err
	}
	items, err := b.read(ctx, b.opts.Stream+"_KEYS", b.subj.keys(topic), topic, readStart{}, 0)
	if err != nil && !streamMissing(err) {
		return fanout.Snapshot{}, false, err
	}
	var after fanout.Position
	if last != nil {
		after = last.msg.Position
	}
	h, err := b.history(ctx, topic, after)
	if err != nil {
		return fanout.Snapshot{}, false, err
	}
	if !h.Complete {
		return fanout.Snapshot{}, false, nil
	}
	byKey := make(map[string]*fanout.Message, len(items)+1)
	newer := func(m *fanout.Message) {
		cur := byKey[m.Key]
		if cur == nil || cur.Position.Epoch != m.Position.Epoch || cur.Position.Seq < m.Position.Seq {
			byKey[m.Key] = m
		}
	}
	for _, s := range items {
		newer(s.msg)
	}
	if last != nil && last.msg.Key != "" {
		newer(last.msg)
	}
	for _, m := range h.Messages {
		if m.Key != "" {
			newer(m)
		}
	}
	s := fanout.Snapshot{Position: h.Position, Items: make([]*fanout.Message, 0, len(byKey))}
	for _, m := range byKey {
		s.Items = append(s.Items, m)
	}
	// Items of an older epoch (kept across a loss of history) come first.
	epoch := h.Position.Epoch
	slices.SortFunc(s.Items, func(x, y *fanout.Message) int {
		if xc, yc := x.Position.Epoch == epoch, y.Position.Epoch == epoch; xc != yc {
			if xc {
				return 1
			}
			return -1
		}
		return cmp.Compare(x.Position.Seq, y.Position.Seq)
	})
	if last != nil && !last.msg.Final() || last == nil && len(s.Items) > 0 {
		b.used(ctx, topic) // a read of a final topic does not extend it
	}
	return s, true, nil
}

// readStart says where read starts: at a stream sequence, else at a time,
// else at the beginning.
type readStart struct {
	seq  uint64
	time time.Time
}

// read returns the messages of stream on filter from start, in stream
// order, until the stream sequence end (when not zero) or the last message
// there was when it started. It uses an ephemeral push consumer that it
// deletes afterwards.
func (b *Backplane) read(ctx context.Context, stream, filter, topic string, start readStart, end uint64) ([]*stored, error) {
	inbox := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	// What the consumer sends is bounded by the topic's history or keys.
	sub.SetPendingLimits(-1, -1)
	cfg := jetstream.ConsumerConfig{
		DeliverSubject:    inbox,
		FilterSubject:     filter,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute, // in case deleting it fails
	}
	switch {
	case start.seq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start.seq
	case !start.time.IsZero():
		t := start.time
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cons, err := b.js.CreatePushConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	info := cons.CachedInfo()
	defer b.deleteConsumer(stream, info.Name)
	want := info.NumPending
	var out []*stored
	for uint64(len(out)) < want {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, err
		}
		md, ok := parseAckReply(msg.Reply)
		if !ok {
			continue // not a message: a heartbeat or flow control
		}
		m, err := decode(topic, msg.Header, msg.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, &stored{msg: m, streamSeq: md.streamSeq, at: md.at})
		if md.pending == 0 || (end > 0 && md.streamSeq >= end) {
			break
		}
	}
	return out, nil
}

// deleteConsumer deletes a consumer that read made, unless the connection
// is down (the server then removes it after its inactivity threshold).
func (b *Backplane) deleteConsumer(stream, name string) {
	if b.nc.Status() != nats.CONNECTED {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(b.opts.Timeout, 2*time.Second))
	defer cancel()
	b.js.DeleteConsumer(ctx, stream, name)
}

// ackMeta is what a JetStream delivery's reply subject says about it.
type ackMeta struct {
	streamSeq uint64
	pending   uint64
	at        time.Time
}

// parseAckReply parses "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.
// <cseq>.<nanos>.<pending>", or its longer form with a domain and an
// account hash after "$JS.ACK" and a random token at the end.
func parseAckReply(reply string) (ackMeta, bool) {
	if !strings.HasPrefix(reply, "$JS.ACK.") {
		return ackMeta{}, false
	}
	t := strings.Split(reply, ".")
	var base int
	switch {
	case len(t) == 9:
		base = 4 // after $JS, ACK, stream, consumer
	case len(t) >= 11:
		base = 6 // after $JS, ACK, domain, account hash, stream, consumer
	default:
		return ackMeta{}, false
	}
	sseq, err1 := strconv.ParseUint(t[base+1], 10, 64)
	nanos, err2 := strconv.ParseInt(t[base+3], 10, 64)
	pending, err3 := strconv.ParseUint(t[base+4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return ackMeta{}, false
	}
	return ackMeta{streamSeq: sseq, pending: pending, at: time.Unix(0, nanos)}, true
}
