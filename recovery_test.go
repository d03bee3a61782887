package fanout_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/gofanout/fanout"
)

// lossyBackplane is the real memory backplane with a switch that makes it
// lose live deliveries, as a dropped connection would.
type lossyBackplane struct {
	fanout.Backplane
	drop atomic.Bool
	recv fanout.Receiver
}

func (l *lossyBackplane) Open(r fanout.Receiver) error {
	l.recv = r
	return l.Backplane.Open(lossyReceiver{l})
}

type lossyReceiver struct{ l *lossyBackplane }

func (r lossyReceiver) Deliver(m *fanout.Message) {
	if !r.l.drop.Load() {
		r.l.recv.Deliver(m)
	}
}

func (r lossyReceiver) Resync(topic string) { r.l.recv.Resync(topic) }

func TestGapIsFilledFromHistory(t *testing.T) {
	t.Parallel()
	bp := &lossyBackplane{Backplane: fanout.NewMemoryBroker(nil).Node()}
	h := newHub(t, &fanout.HubOptions{Backplane: bp})
	s := newSession(t, h)
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	next(t, s, &buf) // reply
	want := uint64(0)
	expect := func(n int) {
		t.Helper()
		for range n {
			want++
			f := next(t, s, &buf)
			if f.Message == nil || f.Message.Position.Seq != want {
				t.Fatalf("got %+v, want message seq %d", f, want)
			}
		}
	}
	publish(t, h, "t", "1")
	expect(1)

	// Lost deliveries are recovered when the next message shows the gap.
	bp.drop.Store(true)
	publish(t, h, "t", "2")
	publish(t, h, "t", "3")
	bp.drop.Store(false)
	publish(t, h, "t", "4")
	expect(3)

	// And when the backplane says it may have missed some.
	bp.drop.Store(true)
	publish(t, h, "t", "5")
	bp.drop.Store(false)
	bp.recv.Resync("t")
	expect(1)
	publish(t, h, "t", "6")
	expect(1)
}

func TestGapBeyondHistoryClosesWithResync(t *testing.T) {
	t.Parallel()
	bp := &lossyBackplane{Backplane: fanout.NewMemoryBroker(&fanout.MemoryOptions{HistorySize: 2}).Node()}
	h := newHub(t, &fanout.HubOptions{Backplane: bp})
	s := newSession(t, h)
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	next(t, s, &buf) // reply
	publish(t, h, "t", "1")
	if f := next(t, s, &buf); f.Message == nil {
		t.Fatalf("got %+v, want message", f)
	}
	bp.drop.Store(true)
	for range 5 {
		publish(t, h, "t", "lost")
	}
	bp.drop.Store(false)
	publish(t, h, "t", "7")
	if f := next(t, s, &buf); f.Close == nil || f.Close.Code != fanout.CloseResync || !f.Close.Reconnect {
		t.Fatalf("got %+v, want close %d with reconnect", f, fanout.CloseResync)
	}
}
