package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/gofanout/fanout"
	"github.com/nats-io/nats.go"
)

// liveTopic is a topic subscribed on this node: a core NATS subscription to
// the topic's live subject and the goroutine that delivers from it.
type liveTopic struct {
	topic  string
	sub    *nats.Subscription
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the delivery goroutine ends

	order reorder // used by the delivery goroutine only

	mu    sync.Mutex // guards hints and next
	hints [64]hint   // stream sequences of recent messages, for History
	next  int
}

// hint says where a message of the topic sits in the history stream.
type hint struct {
	pos       fanout.Position
	streamSeq uint64
}

func (lt *liveTopic) note(p fanout.Position, streamSeq uint64) {
	lt.mu.Lock()
	lt.hints[lt.next%len(lt.hints)] = hint{pos: p, streamSeq: streamSeq}
	lt.next++
	lt.mu.Unlock()
}

func (lt *liveTopic) stop() {
	lt.cancel()
	lt.sub.Unsubscribe()
}

// Subscribe implements [fanout.Backplane]. Live messages come from a core
// NATS subscription to the subject on which the history stream republishes
// what it stores, so only nodes with subscribers receive a topic's messages,
// each once; the node hands them over in Seq order from the topic's latest
// stored position, which it reads as it subscribes. Subscribe returns once
// the server has the subscription.
func (b *Backplane) Subscribe(ctx context.Context, topic string) error {
	o, err := b.begin(ctx, "subscribe")
	if err != nil {
		return err
	}
	defer o.end()
	b.mu.Lock()
	exists := b.topics[topic] != nil
	b.mu.Unlock()
	if exists {
		return nil
	}
	sub, err := b.nc.SubscribeSync(b.subj.live(topic))
	if err != nil {
		return o.fail(err)
	}
	sub.SetPendingLimits(b.opts.LiveBuffer, 64<<20)
	if err := b.nc.FlushWithContext(o.ctx); err != nil {
		sub.Unsubscribe()
		return o.fail(err)
	}
	lt := &liveTopic{topic: topic, sub: sub, done: make(chan struct{})}
	// Live messages are put in order from the topic's latest stored one
	// on; without it, from the first that arrives.
	if last, err := b.latest(o.ctx, topic); err == nil {
		lt.order.start(last)
	}
	lt.ctx, lt.cancel = context.WithCancel(context.Background())
	b.mu.Lock()
	if b.closed || b.topics[topic] != nil {
		closed := b.closed
		b.mu.Unlock()
		lt.stop()
		if closed {
			return fmt.Errorf("nats backplane: subscribe: %w", fanout.ErrClosed)
		}
		return nil
	}
	b.topics[topic] = lt
	r := b.recv
	b.wg.Add(1)
	b.mu.Unlock()
	go b.deliver(lt, r)
	return nil
}

// deliver hands the topic's live messages to r, in Seq order, and asks for
// a resync when the subscription dropped messages or a gap did not fill.
func (b *Backplane) deliver(lt *liveTopic, r fanout.Receiver) {
	defer b.wg.Done()
	defer close(lt.done)
	dropped := 0
	order := &lt.order
	var due []*fanout.Message
	for {
		msg, err := b.nextLive(lt, order)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			// The gap did not fill: the hub fills it from history.
			if r != nil {
				r.Resync(lt.topic)
			}
			due = order.flush(due[:0])
		case errors.Is(err, nats.ErrSlowConsumer):
			if r != nil {
				r.Resync(lt.topic)
			}
			continue
		case err != nil:
			return // unsubscribed, closed, or the connection closed
		default:
			if livePresence(lt.topic, msg, r) {
				continue
			}
			m, err := decode(lt.topic, msg.Header, msg.Data)
			if err != nil {
				continue
			}
			if seq, err := strconv.ParseUint(msg.Header.Get("Nats-Sequence"), 10, 64); err == nil {
				lt.note(m.Position, seq)
				b.noteHead(&stored{msg: m, streamSeq: seq, inc: msg.Header.Get(hdrIncarnation)})
			}
			due = order.add(due[:0], m, time.Now())
		}
		if r == nil {
			continue
		}
		for _, m := range due {
			r.Deliver(m)
		}
		clear(due)
		if d, _ := lt.sub.Dropped(); d != dropped {
			dropped = d
			r.Resync(lt.topic)
		}
	}
}

// nextLive waits for the topic's next live message; while order holds
// messages after a gap, only until it gives up on the gap, and then it
// returns context.DeadlineExceeded.
func (b *Backplane) nextLive(lt *liveTopic, order *reorder) (*nats.Msg, error) {
	d, held := order.deadline()
	if !held {
		return lt.sub.NextMsgWithContext(lt.ctx)
	}
	ctx, cancel := context.WithDeadline(lt.ctx, d)
	defer cancel()
	msg, err := lt.sub.NextMsgWithContext(ctx)
	if err != nil && lt.ctx.Err() == nil && ctx.Err() != nil {
		return nil, context.DeadlineExceeded
	}
	return msg, err
}

// latest returns the position of the topic's latest stored message, or the
// zero position when it has none.
func (b *Backplane) latest(ctx context.Context, topic string) (fanout.Position, error) {
	ss, err := b.ensureStreams(ctx)
	if err != nil {
		return fanout.Position{}, err
	}
	st, err := b.lastStored(ctx, ss.hist, b.subj.history(topic), topic)
	if err != nil || st == nil {
		return fanout.Position{}, err
	}
	return st.msg.Position, nil
}

// Unsubscribe implements [fanout.Backplane]. It returns after delivery for
// the topic has stopped.
func (b *Backplane) Unsubscribe(ctx context.Context, topic string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("nats backplane: unsubscribe: %w", fanout.ErrClosed)
	}
	lt := b.topics[topic]
	delete(b.topics, topic)
	b.mu.Unlock()
	if lt != nil {
		lt.stop()
		<-lt.done
	}
	return nil
}

// noteStreamSeq remembers where a message this node published sits in the
// history stream, when the topic is subscribed here.
func (b *Backplane) noteStreamSeq(topic string, st *stored) {
	b.mu.Lock()
	lt := b.topics[topic]
	b.mu.Unlock()
	if lt != nil {
		lt.note(st.msg.Position, st.streamSeq)
	}
}

// streamSeqHint returns the stream sequence after a recent message of
// topic at or before after, from which History can start reading.
func (b *Backplane) streamSeqHint(topic string, after fanout.Position) (uint64, bool) {
	b.mu.Lock()
	lt := b.topics[topic]
	b.mu.Unlock()
	if lt == nil || after.Seq == 0 {
		return 0, false
	}
	lt.mu.Lock()
	defer lt.mu.Unlock()
	var best hint
	for _, h := range lt.hints {
		if h.pos.Epoch == after.Epoch && h.pos.Seq <= after.Seq && h.pos.Seq > best.pos.Seq {
			best = h
		}
	}
	return best.streamSeq + 1, best.streamSeq != 0
}
