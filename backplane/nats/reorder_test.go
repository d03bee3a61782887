package nats

import (
	"slices"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

func TestReorder(t *testing.T) {
	msg := func(epoch string, seq uint64) *fanout.Message {
		return &fanout.Message{Topic: "t", Position: fanout.Position{Epoch: epoch, Seq: seq}}
	}
	seqs := func(ms []*fanout.Message) []uint64 {
		var s []uint64
		for _, m := range ms {
			s = append(s, m.Position.Seq)
		}
		return s
	}
	t0 := time.Unix(1700000000, 0)
	var o reorder
	steps := []struct {
		in   *fanout.Message
		want []uint64
	}{
		{msg("e", 5), []uint64{5}},       // the first message sets the order
		{msg("e", 6), []uint64{6}},       // in order
		{msg("e", 8), nil},               // after a gap: held
		{msg("e", 9), nil},               // held too
		{msg("e", 8), nil},               // a repeat of a held one
		{msg("e", 7), []uint64{7, 8, 9}}, // the gap fills
		{msg("e", 4), []uint64{4}},       // an old one passes (the hub drops it)
		{msg("e", 12), nil},              // another gap
		{msg("f", 1), []uint64{12, 1}},   // a new epoch releases what is held
	}
	for i, s := range steps {
		got := seqs(o.add(nil, s.in, t0))
		if !slices.Equal(got, s.want) {
			t.Fatalf("step %d: add Seq %d: got %v, want %v", i, s.in.Position.Seq, got, s.want)
		}
	}
	if _, held := o.deadline(); held {
		t.Fatal("messages held after the new epoch")
	}

	// A gap that does not fill: held until the deadline, then flushed.
	o.add(nil, msg("f", 3), t0)
	o.add(nil, msg("f", 4), t0.Add(time.Millisecond))
	d, held := o.deadline()
	if !held || !d.Equal(t0.Add(reorderWait)) {
		t.Fatalf("deadline: got %v, %v; want %v, true", d, held, t0.Add(reorderWait))
	}
	if got := seqs(o.flush(nil)); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("flush: got %v, want [3 4]", got)
	}
	if got := seqs(o.add(nil, msg("f", 5), t0)); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("after the flush: got %v, want [5]", got)
	}

	// Started on a topic without messages: the first two can come swapped.
	var fresh reorder
	fresh.start(fanout.Position{})
	if got := seqs(fresh.add(nil, msg("g", 2), t0)); got != nil {
		t.Fatalf("fresh topic, Seq 2 first: got %v, want it held", got)
	}
	if got := seqs(fresh.add(nil, msg("g", 1), t0)); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("fresh topic, then Seq 1: got %v, want [1 2]", got)
	}
	// Started after Seq 10: 12 waits for 11; 9 was stored before.
	var later reorder
	later.start(fanout.Position{Epoch: "h", Seq: 10})
	for _, step := range []struct {
		seq  uint64
		want []uint64
	}{{12, nil}, {9, []uint64{9}}, {11, []uint64{11, 12}}} {
		if got := seqs(later.add(nil, msg("h", step.seq), t0)); !slices.Equal(got, step.want) {
			t.Fatalf("started after Seq 10, add %d: got %v, want %v", step.seq, got, step.want)
		}
	}

	// Too many held: given up on at once.
	var out []*fanout.Message
	for seq := uint64(7); seq < 7+maxHeld+1; seq++ {
		out = o.add(out, msg("f", seq), t0)
	}
	if len(out) != maxHeld+1 || out[0].Position.Seq != 7 {
		t.Fatalf("got %d messages from Seq %v, want %d from Seq 7", len(out), seqs(out[:min(1, len(out))]), maxHeld+1)
	}
}
