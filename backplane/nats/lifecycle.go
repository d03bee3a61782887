package nats

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A topic's stored state ends in one of three ways (see the package
// documentation): the history stream's MaxAge drops history after
// HistoryAge; marks in the stream S_EXPIRE, a work queue, make the nodes
// purge a topic IdleTTL after its last use or FinalTTL after its final
// message; Delete purges it at once.
//
// S_EXPIRE keeps one mark per topic and kind, the latest. Every node pulls
// the marks of each kind through one durable consumer per kind, so each
// mark is handled by one node at a time; a mark that is not due yet is
// handed back with a delay (a NAK with delay) until it is. Marks of one
// kind all wait as long, so each consumer meets them in the order they
// come due.

const (
	// sweepConsumer starts the names of the durable consumers of
	// S_EXPIRE, one per kind of mark.
	sweepConsumer = "sweep_"
	// sweepAckWait is how long a node may take to handle a mark before
	// the server hands it to another node.
	sweepAckWait = 30 * time.Second
	// sweepPull bounds one pull request of the sweeper.
	sweepPull = 5 * time.Second
	// sweepBatch is how many marks the sweeper asks for at once.
	sweepBatch = 16
	// markEvery divides IdleTTL into the interval at which a node marks
	// a topic it uses: it marks a topic at most once per IdleTTL/markEvery,
	// and a topic expires IdleTTL + IdleTTL/markEvery after its last mark.
	markEvery = 8
)

// Kinds of marks, the subject token after P.x.
const (
	kindFinal = "f" // data: the history stream sequence of the final message
	kindIdle  = "i" // data: empty
)

// markFinal records that the message at streamSeq in the history stream
// was the topic's final one. Best effort: without the mark, the topic
// expires when idle.
func (b *Backplane) markFinal(ctx context.Context, topic string, streamSeq uint64) {
	msg := &nats.Msg{Subject: b.subj.mark(kindFinal, topic), Data: strconv.AppendUint(nil, streamSeq, 10)}
	b.js.PublishMsg(ctx, msg, jetstream.WithRetryAttempts(0))
}

// used records a use of the topic (a publish, or a read that found it):
// unless this node did so less than IdleTTL/markEvery ago, it leaves a
// mark that expires the topic IdleTTL later if no later mark follows. Best
// effort: a mark that fails is written at the topic's next use.
func (b *Backplane) used(ctx context.Context, topic string) {
	now := time.Now()
	b.mu.Lock()
	last, ok := b.marked[topic]
	b.mu.Unlock()
	if ok && now.Sub(last) < b.opts.IdleTTL/markEvery {
		return
	}
	msg := &nats.Msg{Subject: b.subj.mark(kindIdle, topic)}
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithRetryAttempts(0)); err != nil {
		return
	}
	b.mu.Lock()
	if len(b.marked) >= maxCached {
		clear(b.marked) // costs only marks written again
	}
	b.marked[topic] = now
	b.mu.Unlock()
}

// sweep runs until ctx ends: it takes the marks of one kind from S_EXPIRE
// and purges each topic whose mark is due. It starts pulling once this
// node has made the streams.
func (b *Backplane) sweep(ctx context.Context, kind string) {
	defer b.wg.Done()
	var cons jetstream.Consumer
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ss := b.streams.Load()
		if ss == nil {
			select {
			case <-ctx.Done():
			case <-b.made[kind]:
			}
			continue
		}
		err := func() error {
			if cons == nil {
				c, err := b.sweepConsumer(ctx, kind)
				if err != nil {
					return err
				}
				cons = c
			}
			return b.sweepOnce(ctx, ss, cons)
		}()
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		cons = nil // made again after the stream or consumer was lost
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, sweepPull)
	}
}

func (b *Backplane) sweepConsumer(ctx context.Context, kind string) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	return b.js.CreateOrUpdateConsumer(ctx, b.opts.Stream+"_EXPIRE", jetstream.ConsumerConfig{
		Durable:       sweepConsumer + kind,
		Description:   "fanout: purges topics that ended or went idle",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       sweepAckWait,
		MaxDeliver:    -1,
		FilterSubject: b.subj.marks(kind),
	})
}

// sweepOnce pulls the marks that are due and handles them.
func (b *Backplane) sweepOnce(ctx context.Context, ss *streamSet, cons jetstream.Consumer) error {
	pctx, cancel := context.WithTimeout(ctx, sweepPull)
	defer cancel()
	batch, err := cons.Fetch(sweepBatch, jetstream.FetchContext(pctx))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		b.handleMark(ctx, ss, msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
		return err
	}
	return nil
}

// handleMark purges the topic of a mark that is due, and asks for it again
// when it is not.
func (b *Backplane) handleMark(ctx context.Context, ss *streamSet, msg jetstream.Msg) {
	kind, tok, _ := strings.Cut(strings.TrimPrefix(msg.Subject(), b.subj.prefix+".x."), ".")
	topic, err := unescapeTopic(tok)
	md, merr := msg.Metadata()
	if err != nil || merr != nil || (kind != kindFinal && kind != kindIdle) {
		msg.Term() // not a mark this backplane wrote
		return
	}
	wait := b.opts.FinalTTL
	if kind == kindIdle {
		wait = b.opts.IdleTTL + b.opts.IdleTTL/markEvery
	}
	if wait = time.Until(md.Timestamp.Add(wait)); wait > 0 {
		msg.NakWithDelay(wait)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	if kind == kindFinal {
		seq, perr := strconv.ParseUint(string(msg.Data()), 10, 64)
		if perr != nil {
			msg.Term()
			return
		}
		err = b.expireFinal(pctx, ss, topic, seq)
	} else {
		err = b.expireIdle(pctx, ss, msg.Subject(), md.Sequence.Stream, topic)
	}
	if err != nil {
		msg.NakWithDelay(time.Second)
		return
	}
	msg.Ack()
}

// expireFinal purges the topic whose final message is at finalSeq in the
// history stream, unless the topic was published to since.
func (b *Backplane) expireFinal(ctx context.Context, ss *streamSet, topic string, finalSeq uint64) error {
	// What is purged is what was written before the check that the
	// topic is still final.
	bounds, err := b.lastSeqs(ctx, ss)
	if err != nil {
		return err
	}
	last, err := b.lastStored(ctx, ss.hist, b.subj.history(topic), topic)
	if err != nil {
		return err
	}
	if last != nil && last.streamSeq > finalSeq {
		return nil // published again after its final message: live again
	}
	bounds[0] = finalSeq
	return b.purge(ctx, ss, topic, bounds)
}

// expireIdle purges the topic of the idle mark at markSeq, unless a later
// mark replaced it: the topic was used since.
func (b *Backplane) expireIdle(ctx context.Context, ss *streamSet, subject string, markSeq uint64, topic string) error {
	bounds, err := b.lastSeqs(ctx, ss)
	if err != nil {
		return err
	}
	latest, err := ss.expire.GetLastMsgForSubject(ctx, subject)
	if msgNotFound(err) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if latest.Sequence > markSeq {
		return nil // used since: the later mark decides
	}
	return b.purge(ctx, ss, topic, bounds)
}

// lastSeqs returns the last stream sequence of the history, snapshot and
// idempotency streams.
func (b *Backplane) lastSeqs(ctx context.Context, ss *streamSet) ([3]uint64, error) {
	var out [3]uint64
	for i, s := range []jetstream.Stream{ss.hist, ss.keys, ss.idem} {
		info, err := s.Info(ctx)
		if err != nil {
			return out, err
		}
		out[i] = info.State.LastSeq
	}
	return out, nil
}

// purge removes the topic's history, snapshot and idempotency records up
// to the stream sequences in bounds, and forgets what the node knew of it.
// The history goes first: once it is gone, the next publish starts a new
// epoch, and what it writes comes after the bounds and stays.
func (b *Backplane) purge(ctx context.Context, ss *streamSet, topic string, bounds [3]uint64) error {
	if err := ss.hist.Purge(ctx, jetstream.WithPurgeSubject(b.subj.history(topic)), jetstream.WithPurgeSequence(bounds[0]+1)); err != nil {
		return err
	}
	b.dropTopic(topic)
	if err := ss.keys.Purge(ctx, jetstream.WithPurgeSubject(b.subj.keys(topic)), jetstream.WithPurgeSequence(bounds[1]+1)); err != nil {
		return err
	}
	return ss.idem.Purge(ctx, jetstream.WithPurgeSubject(b.subj.idems(topic)), jetstream.WithPurgeSequence(bounds[2]+1))
}

// dropTopic forgets what the node remembers about the topic's stored
// messages.
func (b *Backplane) dropTopic(topic string) {
	b.mu.Lock()
	delete(b.heads, topic)
	delete(b.absorbed, topic)
	delete(b.floors, topic)
	b.mu.Unlock()
}

// Delete implements [fanout.Backplane]. JetStream has no transaction over
// several streams: Delete purges the topic's history first, so that the
// next publish starts a new epoch, then its snapshot and idempotency
// records and its marks. A publish that runs concurrently with Delete may
// leave its snapshot item behind.
func (b *Backplane) Delete(ctx context.Context, topic string) error {
	o, err := b.begin(ctx, "delete")
	if err != nil {
		return err
	}
	defer o.end()
	if err := b.delete(o.ctx, topic); err != nil {
		if streamMissing(err) {
			b.lost() // nothing stored: nothing to delete
			return nil
		}
		return o.fail(err)
	}
	return nil
}

func (b *Backplane) delete(ctx context.Context, topic string) error {
	ss, err := b.ensureStreams(ctx)
	if err != nil {
		return err
	}
	bounds, err := b.lastSeqs(ctx, ss)
	if err != nil {
		return err
	}
	if err := b.purge(ctx, ss, topic, bounds); err != nil {
		return err
	}
	return ss.expire.Purge(ctx, jetstream.WithPurgeSubject(b.subj.marksOf(topic)))
}
