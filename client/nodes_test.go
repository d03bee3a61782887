package client_test

import (
	"strconv"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
)

// TestMovesToAnotherNode: two nodes of one cluster; the client's node
// stops answering, and the client moves to the other one, resuming its
// subscription there with nothing lost; when that one goes too, it comes
// back to the first.
func TestMovesToAnotherNode(t *testing.T) {
	t.Parallel()
	broker := fanout.NewMemoryBroker(nil)
	a := newServer(t, &fanout.HubOptions{Backplane: broker.Node()})
	b := newServer(t, &fanout.HubOptions{Backplane: broker.Node()})
	pa, pb := testenv.NewProxy(t, a.addr), testenv.NewProxy(t, b.addr)
	st := newStatuses()
	o := options(t, st)
	o.URLs = []string{wsURL(pb)}
	c := dial(t, wsURL(pa), o)
	s := subscribe(t, c, "stock", nil)
	seq := 0
	expect := func(n int) {
		t.Helper()
		for range n {
			seq++
			ev := next(t, s)
			if ev.Kind != client.EventMessage || ev.Position.Seq != uint64(seq) || string(ev.Message.Data) != strconv.Itoa(seq) {
				t.Fatalf("got %v at %v %q, want message %d", ev.Kind, ev.Position, ev.Message.Data, seq)
			}
		}
	}
	publish := func(n int) {
		for i := range n {
			a.publish(t, "stock", strconv.Itoa(seq+i+1))
		}
	}
	publish(3)
	expect(3)

	for _, down := range []*testenv.Proxy{pa, pb} {
		down.Refuse()
		down.Cut()
		st.waitFor(t, client.StatusDisconnected)
		publish(3) // missed while moving
		if r := st.waitFor(t, client.StatusResumed); !r.Recovered {
			t.Fatalf("resumed on the other node with recovered=false, want true")
		}
		expect(3)
		down.Resume()
	}
}
