package fanout_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
)

// TestMemoryConformance is not parallel: the suite checks for leaked
// goroutines after its own parallel scenarios.
func TestMemoryConformance(t *testing.T) {
	const historySize = 32
	var brokers sync.Map // *testing.T of a scenario -> *fanout.MemoryBroker
	cluster := func(t *testing.T, o *fanout.MemoryOptions) func() fanout.Backplane {
		o.HistorySize = historySize
		b := fanout.NewMemoryBroker(o)
		brokers.Store(t, b)
		t.Cleanup(func() { brokers.Delete(t) })
		return b.Node
	}
	backplanetest.Run(t, func(t *testing.T) func() fanout.Backplane {
		return cluster(t, &fanout.MemoryOptions{})
	}, backplanetest.Features{
		HistorySize: historySize,
		LoseHistory: func(t *testing.T, topic string) {
			b, ok := brokers.Load(t)
			if !ok {
				t.Fatal("LoseHistory: no broker for this test")
			}
			n := b.(*fanout.MemoryBroker).Node()
			defer n.Close()
			if err := n.Delete(context.Background(), topic); err != nil {
				t.Fatalf("LoseHistory: %v", err)
			}
		},
		Expiry: func(t *testing.T, l backplanetest.Lifetimes) func() fanout.Backplane {
			return cluster(t, &fanout.MemoryOptions{IdleTTL: l.IdleTTL, FinalTTL: l.FinalTTL, HistoryAge: l.HistoryAge})
		},
		ExpiryLatency: 50 * time.Millisecond,
	})
}

// TestMemoryHistoryAgeUntouched: history is dropped at HistoryAge although
// the topics are never published to or read again.
func TestMemoryHistoryAgeUntouched(t *testing.T) {
	const topics, size = 10_000, 4 << 10
	synctest.Test(t, func(t *testing.T) {
		b := fanout.NewMemoryBroker(&fanout.MemoryOptions{HistoryAge: time.Minute})
		h := newHub(t, &fanout.HubOptions{Backplane: b.Node()})
		baseline := liveHeap()
		data := make([]byte, size)
		for i := range topics {
			publish(t, h, fmt.Sprint("aged.", i), string(data))
		}
		if grown := liveHeap() - baseline; grown < topics*size {
			t.Fatalf("with %d messages of %d bytes in history: live heap grew by %d bytes", topics, size, grown)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		// What stays is each topic's position, until IdleTTL.
		checkHeap(t, fmt.Sprintf("%d topics a HistoryAge after their only message", topics), baseline, topics*size/4)
	})
}

// TestMemoryExpiryNeedsNodes: a broker whose nodes are all closed has no
// timer; its expiry resumes with its next node.
func TestMemoryExpiryNeedsNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := fanout.NewMemoryBroker(&fanout.MemoryOptions{IdleTTL: time.Hour})
		ctx := context.Background()
		n := b.Node()
		if err := n.Open(nopReceiver{}); err != nil {
			t.Fatal(err)
		}
		m := &fanout.Message{Topic: "t", Key: "k", Data: []byte("x"), Time: time.Now()}
		if _, err := n.Publish(ctx, m, ""); err != nil {
			t.Fatal(err)
		}
		n.Close()
		time.Sleep(2 * time.Hour)
		n = b.Node()
		defer n.Close()
		if err := n.Open(nopReceiver{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		snap, err := n.Snapshot(ctx, "t")
		if err != nil || len(snap.Items) != 0 || snap.Position.Seq != 0 {
			t.Fatalf("two idle times later, with a node again: got %d items at %v (%v), want none at Seq 0", len(snap.Items), snap.Position, err)
		}
	})
}

type nopReceiver struct{}

func (nopReceiver) Deliver(*fanout.Message) {}
func (nopReceiver) Resync(string)           {}

// Two hubs in one process act as one cluster when their backplanes are
// nodes of one broker; a saga's topic ends FinalTTL after its last step, or
// at once with DeleteTopic.
func ExampleMemoryBroker() {
	ctx := context.Background()
	broker := fanout.NewMemoryBroker(&fanout.MemoryOptions{FinalTTL: time.Minute})
	a, err := fanout.NewHub(&fanout.HubOptions{Backplane: broker.Node()})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := fanout.NewHub(&fanout.HubOptions{Backplane: broker.Node()})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	a.Publish(ctx, "saga.42", []byte(`"flight booked"`), fanout.WithKey("flight"))
	last, _ := b.Publish(ctx, "saga.42", []byte(`"done"`), fanout.WithKey("saga"), fanout.WithFinal())
	fmt.Println("last step at seq", last.Seq)

	b.DeleteTopic(ctx, "saga.42") // archived: no need to wait for FinalTTL
	again, _ := a.Publish(ctx, "saga.42", []byte(`"flight booked"`), fanout.WithKey("flight"))
	fmt.Println("started again at seq", again.Seq, "in a new epoch:", again.Epoch != last.Epoch)
	// Output:
	// last step at seq 2
	// started again at seq 1 in a new epoch: true
}
