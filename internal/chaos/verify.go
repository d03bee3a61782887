package chaos

import (
	"fmt"
	"time"

	"github.com/gofanout/fanout"
)

// Published is one publish of the publisher: its data, and the position
// the server returned, or the error.
type Published struct {
	Topic string
	Data  string
	Pos   fanout.Position
	Err   error
	At    time.Time // when Publish returned
}

// EventKind is what a client saw.
type EventKind uint8

// Kinds of [Event].
const (
	Message EventKind = iota + 1
	Snapshot
	Reset
)

// Event is one event a client's subscription delivered, as the client
// library reported it.
type Event struct {
	Kind EventKind
	Pos  fanout.Position
	// Data is the message's (Message) or the snapshot's items (Snapshot).
	Data  string
	Items []Item
	At    time.Time // when the client delivered it
}

// Item is a snapshot's item.
type Item struct {
	Pos  fanout.Position
	Data string
}

// Stream is what one client's subscription to one topic delivered, in
// order.
type Stream struct {
	Client string
	Topic  string
	Events []Event
}

// Report is the verifier's judgement of one run.
type Report struct {
	Published int // publishes the server acknowledged
	Failed    int // publishes that returned an error
	Delivered int // messages delivered, over every subscription
	Resets    int // resets delivered: clients told they missed messages
	// Violations counts the broken promises; Examples lists the first
	// ones.
	Violations int
	Examples   []string
}

// maxViolations bounds the violations a report lists; the rest are
// counted.
const maxViolations = 20

// Verify checks every subscription's stream against the publisher's log:
//
//   - order: within an epoch each message follows the last message or
//     snapshot by exactly one Seq (a topic at Seq 0 has no epoch yet); anything else (a gap, a duplicate, a
//     message out of order) is a violation, since the client library
//     must turn every gap into a reset;
//   - positions: one position names one message, whoever saw it (the
//     publisher's acknowledgement, any client, any snapshot); two
//     messages at one position are a reused position, which hides a
//     loss from resuming clients;
//   - silent loss: at the end each subscription has the last message that
//     was acknowledged on its topic, live or in a snapshot (every message
//     is published with one key, so a snapshot holds the latest);
//   - data: a client delivers only what the publisher sent.
func Verify(log []Published, streams []Stream) Report {
	var r Report
	type key struct {
		topic string
		pos   fanout.Position
	}
	at := make(map[key]string)    // the message at each position
	sent := make(map[string]bool) // everything the publisher tried to send
	last := make(map[string]Item) // the last acknowledged message per topic
	violation := func(format string, args ...any) {
		r.Violations++
		if len(r.Examples) < maxViolations {
			r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
		}
	}
	claim := func(who, topic string, pos fanout.Position, data string) {
		k := key{topic, pos}
		if prev, ok := at[k]; ok && prev != data {
			violation("%s: %s at %v is %q, but %q was there before: position reused", who, topic, pos, data, prev)
			return
		}
		at[k] = data
	}
	for _, p := range log {
		sent[p.Topic+"\x00"+p.Data] = true
		if p.Err != nil {
			r.Failed++
			continue
		}
		r.Published++
		claim("publisher", p.Topic, p.Pos, p.Data)
		last[p.Topic] = Item{Pos: p.Pos, Data: p.Data}
	}
	for _, s := range streams {
		who := s.Client + "/" + s.Topic
		var (
			cur   fanout.Position
			valid bool // cur is where the stream stands
			has   = make(map[string]bool)
		)
		for _, e := range s.Events {
			switch e.Kind {
			case Reset:
				r.Resets++
				valid = false
			case Snapshot:
				for _, it := range e.Items {
					claim(who+" snapshot", s.Topic, it.Pos, it.Data)
					has[it.Data] = true
				}
				cur, valid = e.Pos, true
			case Message:
				r.Delivered++
				if !sent[s.Topic+"\x00"+e.Data] {
					violation("%s: message %q at %v was never published", who, e.Data, e.Pos)
				}
				claim(who, s.Topic, e.Pos, e.Data)
				has[e.Data] = true
				follows := e.Pos.Seq == cur.Seq+1 && (e.Pos.Epoch == cur.Epoch || cur.Seq == 0)
				if valid && !follows {
					violation("%s: message at %v after %v: gap, duplicate or reorder without a reset", who, e.Pos, cur)
				}
				cur, valid = e.Pos, true
			}
		}
		if l, ok := last[s.Topic]; ok && !has[l.Data] {
			violation("%s: never got the last acknowledged message %q at %v, and no reset says so", who, l.Data, l.Pos)
		}
	}
	return r
}

// CatchUp returns how long after end every subscription delivered a
// message published after end, live or in a snapshot: the time clients
// took to be current again after a fault. It is zero when nothing was
// published after end.
func CatchUp(log []Published, streams []Stream, end time.Time) time.Duration {
	first := make(map[string]string) // per topic, the first message acknowledged after end
	for _, p := range log {
		if p.Err == nil && p.At.After(end) {
			if _, ok := first[p.Topic]; !ok {
				first[p.Topic] = p.Data
			}
		}
	}
	after := make(map[string]bool) // every message published after end
	for _, p := range log {
		if p.At.After(end) {
			after[p.Topic+"\x00"+p.Data] = true
		}
	}
	var worst time.Duration
	for _, s := range streams {
		if _, ok := first[s.Topic]; !ok {
			continue
		}
		for _, e := range s.Events {
			got := e.Kind == Message && after[s.Topic+"\x00"+e.Data]
			for _, it := range e.Items {
				got = got || after[s.Topic+"\x00"+it.Data]
			}
			if got {
				worst = max(worst, e.At.Sub(end))
				break
			}
		}
	}
	return worst
}
