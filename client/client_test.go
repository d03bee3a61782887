package client_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
)

func TestSubscribeReceivesInOrder(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	c := dial(t, "ws://"+srv.addr+"/", options(t, nil))
	s := subscribe(t, c, "a", nil)
	for i := 1; i <= 100; i++ {
		srv.publish(t, "a", strconv.Itoa(i))
		srv.publish(t, "b", "other")
	}
	for i := 1; i <= 100; i++ {
		ev := next(t, s)
		if ev.Kind != client.EventMessage || ev.Position.Seq != uint64(i) || string(ev.Message.Data) != strconv.Itoa(i) {
			t.Fatalf("event %d: got %v %v %q, want message %d", i, ev.Kind, ev.Position, ev.Message.Data, i)
		}
	}
}

func TestSnapshotThenMessages(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	srv.publish(t, "stock", `{"qty":5}`, fanout.WithKey("p1"))
	srv.publish(t, "stock", `{"qty":7}`, fanout.WithKey("p2"))
	last := srv.publish(t, "stock", `{"qty":4}`, fanout.WithKey("p1"))
	c := dial(t, "ws://"+srv.addr+"/", options(t, nil))
	s := subscribe(t, c, "stock", &client.SubscribeOptions{Snapshot: true})
	ev := next(t, s)
	if ev.Kind != client.EventSnapshot || ev.Position != last || len(ev.Snapshot) != 2 {
		t.Fatalf("got %v at %v with %d items, want a snapshot at %v with 2", ev.Kind, ev.Position, len(ev.Snapshot), last)
	}
	if got := ev.Snapshot[1]; got.Key != "p1" || string(got.Data) != `{"qty":4}` {
		t.Errorf("got item %q=%s, want p1={\"qty\":4}", got.Key, got.Data)
	}
	srv.publish(t, "stock", `{"qty":3}`, fanout.WithKey("p2"))
	if ev := next(t, s); ev.Kind != client.EventMessage || ev.Position.Seq != last.Seq+1 || ev.Message.Key != "p2" {
		t.Errorf("got %v %v %q, want the message after the snapshot", ev.Kind, ev.Position, ev.Message.Key)
	}
}

func TestSinceResumes(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	var since fanout.Position
	for i := 1; i <= 10; i++ {
		p := srv.publish(t, "a", strconv.Itoa(i))
		if i == 4 {
			since = p
		}
	}
	st := newStatuses()
	c := dial(t, "ws://"+srv.addr+"/", options(t, st))
	s := subscribe(t, c, "a", &client.SubscribeOptions{Since: &since})
	if got := st.waitFor(t, client.StatusResumed); got.Topic != "a" || !got.Recovered {
		t.Errorf("got status %+v, want a recovered resume of a", got)
	}
	for i := 5; i <= 10; i++ {
		if ev := next(t, s); ev.Position.Seq != uint64(i) || string(ev.Message.Data) != strconv.Itoa(i) {
			t.Fatalf("got %v %q, want message %d", ev.Position, ev.Message.Data, i)
		}
	}
}

func TestPublishFromClient(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fanout.HubOptions{Authorize: allowPublish})
	c := dial(t, "ws://"+srv.addr+"/", options(t, nil))
	s := subscribe(t, c, "chat", nil)
	data := []byte("\x00binary\xff")
	pos, err := c.Publish(context.Background(), "chat", data, client.WithKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	if pos.Seq != 1 {
		t.Errorf("got position %v, want seq 1", pos)
	}
	ev := next(t, s)
	if ev.Position != pos || string(ev.Message.Data) != string(data) || ev.Message.Key != "k" {
		t.Errorf("got %v %q %q, want %v %q k", ev.Position, ev.Message.Data, ev.Message.Key, pos, data)
	}
}

func TestServerRefusals(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fanout.HubOptions{
		Authorize: func(_ context.Context, _ fanout.Principal, topic string, a fanout.Action) error {
			if strings.HasPrefix(topic, "secret") {
				return errors.New("no")
			}
			return nil
		},
	})
	c := dial(t, "ws://"+srv.addr+"/", options(t, nil))
	ctx := context.Background()
	if _, err := c.Subscribe(ctx, "secret", nil); !errors.Is(err, fanout.ErrForbidden) {
		t.Errorf("subscribe: got %v, want forbidden", err)
	}
	if _, err := c.Publish(ctx, "secret", []byte("1")); !errors.Is(err, fanout.ErrForbidden) {
		t.Errorf("publish: got %v, want forbidden", err)
	}
	if _, err := c.Subscribe(ctx, "bad topic", nil); !errors.Is(err, fanout.ErrInvalidTopic) {
		t.Errorf("subscribe: got %v, want invalid topic", err)
	}
	s := subscribe(t, c, "open", nil)
	if _, err := c.Subscribe(ctx, "open", nil); !errors.Is(err, client.ErrAlreadySubscribed) {
		t.Errorf("second subscribe: got %v, want ErrAlreadySubscribed", err)
	}
	s.Close()
	if _, err := s.Next(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("next after close: got %v, want ErrClosed", err)
	}
	s2 := subscribe(t, c, "open", nil) // the topic is free again
	p := srv.publish(t, "open", "1")
	if ev := next(t, s2); ev.Position != p {
		t.Errorf("got %v, want %v", ev.Position, p)
	}
}

// TestCutsCostNothing cuts the connection at random moments, many times,
// while messages are published to several topics: every message must
// arrive once, in order.
func TestCutsCostNothing(t *testing.T) {
	t.Parallel()
	const topics, n = 3, 1500
	srv := newServer(t, &fanout.HubOptions{Backplane: fanout.NewMemoryBroker(&fanout.MemoryOptions{HistorySize: topics * n}).Node()})
	px := testenv.NewProxy(t, srv.addr)
	st := newStatuses()
	o := options(t, nil)
	var connects atomic.Int64
	o.OnStatus = func(s client.Status) {
		if s.Kind == client.StatusConnected {
			connects.Add(1)
		}
		if s.Kind == client.StatusResumed && !s.Recovered {
			st.record(s)
		}
	}
	c := dial(t, wsURL(px), o)
	subs := make([]*client.Subscription, topics)
	for i := range subs {
		subs[i] = subscribe(t, c, fmt.Sprintf("t%d", i), nil)
	}

	// The publisher keeps at most window messages ahead of the slowest
	// reader, so that cuts land while messages flow.
	const window = 40
	var (
		mu     sync.Mutex
		cond   = sync.NewCond(&mu)
		read   [topics]int
		failed bool
	)
	slowest := func() int {
		m := read[0]
		for _, r := range read[1:] {
			m = min(m, r)
		}
		return m
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the publisher cuts now and then
		defer wg.Done()
		cutAt := rand.IntN(100)
		for i := 1; i <= n; i++ {
			mu.Lock()
			for !failed && slowest() < i-window {
				cond.Wait()
			}
			mu.Unlock()
			for k := range topics {
				srv.publish(t, fmt.Sprintf("t%d", k), strconv.Itoa(i))
			}
			if i == cutAt {
				px.Cut()
				cutAt += 1 + rand.IntN(100)
			}
		}
	}()
	for k, s := range subs {
		wg.Add(1)
		go func() { // each reader cuts now and then too
			defer wg.Done()
			defer func() {
				mu.Lock()
				failed = true // no more progress from this reader
				cond.Broadcast()
				mu.Unlock()
			}()
			cutAt := rand.IntN(100)
			for i := 1; i <= n; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				ev, err := s.Next(ctx)
				cancel()
				if err != nil {
					t.Errorf("topic %d: message %d: %v", k, i, err)
					return
				}
				if ev.Kind != client.EventMessage || ev.Position.Seq != uint64(i) || string(ev.Message.Data) != strconv.Itoa(i) {
					t.Errorf("topic %d: got %v %v %q, want message %d", k, ev.Kind, ev.Position, ev.Message.Data, i)
					return
				}
				mu.Lock()
				read[k] = i
				cond.Broadcast()
				mu.Unlock()
				if i == cutAt {
					px.Cut()
					cutAt += 1 + rand.IntN(100)
				}
			}
		}()
	}
	wg.Wait()
	if got := connects.Load(); got < 20 {
		t.Errorf("got %d connections, want many cuts", got)
	}
	select {
	case s := <-st.ch:
		t.Errorf("got %+v, want every resume recovered", s)
	default:
	}
	t.Logf("%d connections", connects.Load())
}
