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
// documentation): the streams' MaxAge drops history after HistoryAge and
// snapshot items after IdleTTL; a final publish leaves a mark in the
// stream S_FINAL, a work queue from which the nodes take each mark once it
// is FinalTTL old and purge the topic; Delete purges the topic at once.

const (
	// sweepConsumer is the durable consumer of S_FINAL that every node
	// pulls from, so that each mark is handled by one node at a time.
	sweepConsumer = "sweep"
	// sweepAckWait is how long a node may take to handle a mark before
	// the server hands it to another node.
	sweepAckWait = 30 * time.Second
	// sweepPull bounds one pull request of the sweeper.
	sweepPull = 5 * time.Second
	// sweepBatch is how many marks the sweeper asks for at once.
	sweepBatch = 16
)

// markFinal records that the message at streamSeq in the history stream
// was the topic's final one. Best effort: without the mark, the topic's
// snapshot lives until IdleTTL, and its history until HistoryAge.
func (b *Backplane) markFinal(ctx context.Context, topic string, streamSeq uint64) {
	msg := &nats.Msg{Subject: b.subj.final(topic), Data: strconv.AppendUint(nil, streamSeq, 10)}
	b.js.PublishMsg(ctx, msg, jetstream.WithRetryAttempts(0))
}

// sweep runs until ctx ends: it takes the marks of final topics from
// S_FINAL and purges each topic once its mark is FinalTTL old. It starts
// pulling once this node has made the streams.
func (b *Backplane) sweep(ctx context.Context) {
	defer b.wg.Done()
	var cons jetstream.Consumer
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ss := b.streams.Load()
		if ss == nil {
			select {
			case <-ctx.Done():
			case <-b.made:
			}
			continue
		}
		err := func() error {
			if cons == nil {
				c, err := b.sweepConsumer(ctx)
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

func (b *Backplane) sweepConsumer(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	return b.js.CreateOrUpdateConsumer(ctx, b.opts.Stream+"_FINAL", jetstream.ConsumerConfig{
		Durable:       sweepConsumer,
		Description:   "fanout: purges final topics",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       sweepAckWait,
		MaxDeliver:    -1,
		FilterSubject: b.subj.finals(),
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

// handleMark purges the topic of a mark that is FinalTTL old, and asks for
// it again when it is younger.
func (b *Backplane) handleMark(ctx context.Context, ss *streamSet, msg jetstream.Msg) {
	topic, err := unescapeTopic(strings.TrimPrefix(msg.Subject(), b.subj.prefix+".f."))
	seq, perr := strconv.ParseUint(string(msg.Data()), 10, 64)
	if err != nil || perr != nil {
		msg.Term() // not a mark this backplane wrote
		return
	}
	md, err := msg.Metadata()
	if err != nil {
		msg.Term()
		return
	}
	if wait := time.Until(md.Timestamp.Add(b.opts.FinalTTL)); wait > 0 {
		msg.NakWithDelay(wait)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	if err := b.expireFinal(pctx, ss, topic, seq); err != nil {
		msg.NakWithDelay(time.Second)
		return
	}
	msg.Ack()
}

// expireFinal purges the topic whose final message is at finalSeq in the
// history stream, unless the topic was published to since.
func (b *Backplane) expireFinal(ctx context.Context, ss *streamSet, topic string, finalSeq uint64) error {
	// The snapshot and idempotency records to purge are those written
	// before the check that the topic is still final.
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
	return b.purge(ctx, ss, topic, finalSeq+1, bounds)
}

// lastSeqs returns the last stream sequence of the snapshot and
// idempotency streams.
func (b *Backplane) lastSeqs(ctx context.Context, ss *streamSet) ([2]uint64, error) {
	var out [2]uint64
	for i, s := range []jetstream.Stream{ss.keys, ss.idem} {
		info, err := s.Info(ctx)
		if err != nil {
			return out, err
		}
		out[i] = info.State.LastSeq
	}
	return out, nil
}

// purge removes the topic's history before the stream sequence histEnd
// (0: all of it), and its snapshot and idempotency records up to the
// stream sequences in bounds, and forgets what the node knew of it. The
// history goes first: once it is gone, the next publish starts a new
// epoch, whose records come after the bounds and stay.
func (b *Backplane) purge(ctx context.Context, ss *streamSet, topic string, histEnd uint64, bounds [2]uint64) error {
	opts := []jetstream.StreamPurgeOpt{jetstream.WithPurgeSubject(b.subj.history(topic))}
	if histEnd > 0 {
		opts = append(opts, jetstream.WithPurgeSequence(histEnd))
	}
	if err := ss.hist.Purge(ctx, opts...); err != nil {
		return err
	}
	b.dropTopic(topic)
	if err := ss.keys.Purge(ctx, jetstream.WithPurgeSubject(b.subj.keys(topic)), jetstream.WithPurgeSequence(bounds[0]+1)); err != nil {
		return err
	}
	return ss.idem.Purge(ctx, jetstream.WithPurgeSubject(b.subj.idems(topic)), jetstream.WithPurgeSequence(bounds[1]+1))
}

// dropTopic forgets what the node remembers about the topic's stored
// messages.
func (b *Backplane) dropTopic(topic string) {
	b.mu.Lock()
	delete(b.heads, topic)
	delete(b.absorbed, topic)
	b.mu.Unlock()
}

// Delete implements [fanout.Backplane]. JetStream has no transaction over
// several streams: Delete purges the topic's history first, so that the
// next publish starts a new epoch, then its snapshot and idempotency
// records and its final mark. A publish that runs concurrently with Delete
// may leave its snapshot item behind.
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
	if err := b.purge(ctx, ss, topic, 0, bounds); err != nil {
		return err
	}
	return ss.final.Purge(ctx, jetstream.WithPurgeSubject(b.subj.final(topic)))
}
