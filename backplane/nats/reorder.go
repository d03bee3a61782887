package nats

import (
	"cmp"
	"slices"
	"time"

	"github.com/gofanout/fanout"
)

// reorderWait is how long a topic's live delivery holds messages that
// arrived after a gap, waiting for the missing ones.
const reorderWait = 100 * time.Millisecond

// maxHeld bounds the messages held after a gap.
const maxHeld = 1024

// reorder puts a topic's live messages back in Seq order. The server
// republishes each message the history stream stores, but when publishers
// on several connections race on one topic, two republished messages can
// arrive swapped: Seq 146 before 145. A message after a gap is held until
// the gap fills, for at most reorderWait; then the hub is told to resync,
// and fills the gap from history.
type reorder struct {
	epoch string // "" with next 1: the topic had no message yet
	next  uint64 // the Seq expected next; 0 when unknown
	held  []*fanout.Message
	since time.Time // when the oldest held message arrived
}

// start expects the message after last, the topic's latest stored
// position (zero when the topic has none), as the node subscribes.
func (o *reorder) start(last fanout.Position) {
	o.epoch, o.next = last.Epoch, last.Seq+1
}

// add takes a message that arrived at now and appends to out the messages
// now due, in order.
func (o *reorder) add(out []*fanout.Message, m *fanout.Message, now time.Time) []*fanout.Message {
	p := m.Position
	switch {
	case o.next == 1 && o.epoch == "" && p.Epoch != "":
		// The topic had no message when the node subscribed: its first
		// message names the epoch.
		o.epoch = p.Epoch
		return o.add(out, m, now)
	case o.next == 0 || p.Epoch != o.epoch:
		// The first message, or history was lost: no order to keep
		// with what came before.
		out = o.release(out)
		o.epoch, o.next = p.Epoch, p.Seq+1
		return append(out, m)
	case p.Seq < o.next:
		return append(out, m) // a repeat: the hub drops it
	case p.Seq > o.next:
		i, found := slices.BinarySearchFunc(o.held, p.Seq, func(h *fanout.Message, seq uint64) int {
			return cmp.Compare(h.Position.Seq, seq)
		})
		if found {
			return out
		}
		if len(o.held) == 0 {
			o.since = now
		}
		o.held = slices.Insert(o.held, i, m)
		if len(o.held) > maxHeld {
			return o.flush(out)
		}
		return out
	}
	out = append(out, m)
	o.next++
	n := 0
	for n < len(o.held) && o.held[n].Position.Seq == o.next {
		out = append(out, o.held[n])
		o.next++
		n++
	}
	o.held = slices.Delete(o.held, 0, n)
	if len(o.held) > 0 {
		o.since = now
	}
	return out
}

// deadline returns when the held messages are to be given up on, and
// whether any are held.
func (o *reorder) deadline() (time.Time, bool) {
	return o.since.Add(reorderWait), len(o.held) > 0
}

// flush gives up on the gap: it appends the held messages to out, in
// order, and expects the Seq after the last.
func (o *reorder) flush(out []*fanout.Message) []*fanout.Message {
	if len(o.held) > 0 {
		o.next = o.held[len(o.held)-1].Position.Seq + 1
	}
	return o.release(out)
}

// release appends the held messages to out and holds none.
func (o *reorder) release(out []*fanout.Message) []*fanout.Message {
	out = append(out, o.held...)
	clear(o.held)
	o.held = o.held[:0]
	return out
}
