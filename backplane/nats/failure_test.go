package nats_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/nats-io/nats.go"
)

// TestConnectionCut cuts one hub's connection to NATS while three hubs
// publish and serve followers. During the cut that hub's publishes and
// subscribes fail at once with ErrUnavailable while the other hubs go on;
// after the connection comes back, its followers, which stay connected to
// it, get every stored message, in order, once, without any new publish to
// reveal the gap.
func TestConnectionCut(t *testing.T) {
	t.Parallel()
	c := newCluster(t, &fnats.Options{HistorySize: 100000})
	px, ncA := c.proxied()
	status := ncA.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED)
	hubs := []*fanout.Hub{newHub(t, c.nodeOn(ncA), nil), newHub(t, c.node(), nil), newHub(t, c.node(), nil)}
	topics := []string{"cut.a", "cut.b", "cut.c"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	waitStatus := func(what string, ok func(nats.Status) bool) {
		t.Helper()
		for !ok(ncA.Status()) {
			select {
			case <-status:
			case <-ctx.Done():
				t.Fatalf("waiting for the connection to be %s: %v", what, ctx.Err())
			}
		}
	}

	// Followers: two on the cut hub, one on each other hub, all topics.
	var (
		mu      sync.Mutex // guards started and finals
		started = make(map[*follower]bool)
		finals  map[string]uint64
		warm    = make(chan struct{}, 4)
	)
	onMessage := func(f *follower) {
		mu.Lock()
		defer mu.Unlock()
		if started[f] {
			return
		}
		for _, tp := range topics {
			if f.last[tp].Seq == 0 {
				return
			}
		}
		started[f] = true
		warm <- struct{}{}
	}
	done := func(f *follower) bool {
		mu.Lock()
		defer mu.Unlock()
		if finals == nil {
			return false
		}
		for _, tp := range topics {
			if f.last[tp].Seq != finals[tp] {
				return false
			}
		}
		return true
	}
	finished := make(chan struct{})
	var followers []*follower
	for i, at := range []int{0, 0, 1, 2} {
		f := newFollower(fmt.Sprintf("follower %d on hub %d", i, at), topics, hubs, at, 0)
		f.onMessage = onMessage
		followers = append(followers, f)
	}
	var fwg sync.WaitGroup
	ferrs := make(chan error, len(followers))
	ready := make(chan struct{}, len(followers))
	for _, f := range followers {
		fwg.Go(func() {
			s, err := f.session(ctx, true)
			ready <- struct{}{}
			if err != nil {
				ferrs <- err
				return
			}
			s.Close(fanout.CloseNormal, "")
			if err := f.follow(ctx, false, finished, done); err != nil {
				ferrs <- err
			}
		})
	}
	for range followers {
		<-ready
	}

	// Publishers: one per hub, round robin over the topics, until stop.
	// The cut hub's publisher waits for the connection after a failure.
	var (
		stop        = make(chan struct{})
		restored    = make(chan struct{})
		okCount     [3]atomic.Int64
		progress    = make(chan struct{}, 1)
		unavailable atomic.Int64
		sentMu      sync.Mutex // guards sent
		sent        = make(map[string]map[uint64]string)
		pwg         sync.WaitGroup
		perrs       = make(chan error, 3)
	)
	for _, tp := range topics {
		sent[tp] = make(map[uint64]string)
	}
	for h, hub := range hubs {
		pwg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				tp := topics[k%len(topics)]
				data := fmt.Sprintf("h%d-%d", h, k)
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				pos, err := hub.Publish(pctx, tp, []byte(data))
				cancel()
				switch {
				case err == nil:
					okCount[h].Add(1)
					select {
					case progress <- struct{}{}:
					default:
					}
					sentMu.Lock()
					sent[tp][pos.Seq] = data
					sentMu.Unlock()
				case h == 0 && errors.Is(err, fanout.ErrUnavailable):
					unavailable.Add(1)
					select {
					case <-restored:
					case <-stop:
						return
					}
				default:
					perrs <- fmt.Errorf("hub %d: publish %s: %w", h, data, err)
					return
				}
			}
		})
	}
	// waitPublished waits until hub h has published n messages in all.
	waitPublished := func(h int, n int64) {
		t.Helper()
		for okCount[h].Load() < n {
			select {
			case err := <-perrs:
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatalf("hub %d: published %d, want %d: %v", h, okCount[h].Load(), n, ctx.Err())
			case <-progress:
			}
		}
	}

	for range followers {
		select {
		case <-warm:
		case err := <-ferrs:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("followers did not start receiving")
		}
	}
	waitPublished(0, 100)

	px.Refuse()
	px.Cut()
	waitStatus("down", func(s nats.Status) bool { return s != nats.CONNECTED })
	t.Logf("cut after %d, %d, %d publishes", okCount[0].Load(), okCount[1].Load(), okCount[2].Load())

	// While cut, the hub fails at once; the others go on.
	_, err := hubs[0].Publish(ctx, "cut.a", []byte("during the cut"))
	if !errors.Is(err, fanout.ErrUnavailable) {
		t.Fatalf("publish on the cut hub: got %v, want fanout.ErrUnavailable", err)
	}
	s, err := hubs[0].NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "cut.new"})
	s.Close(fanout.CloseNormal, "")
	if !errors.Is(err, fanout.ErrUnavailable) {
		t.Fatalf("subscribe on the cut hub: got %v, want fanout.ErrUnavailable", err)
	}
	b0, c0 := okCount[1].Load(), okCount[2].Load()
	waitPublished(1, b0+200)
	waitPublished(2, c0+200)

	// Stop publishing, then restore: only the resync after the reconnect
	// can tell the cut hub what it missed.
	close(stop)
	pwg.Wait()
	close(perrs)
	for err := range perrs {
		t.Fatal(err)
	}
	if unavailable.Load() == 0 {
		t.Fatal("the cut hub's publisher never got fanout.ErrUnavailable")
	}
	px.Resume()
	close(restored)
	waitStatus("up", func(s nats.Status) bool { return s == nats.CONNECTED })

	stored := make(map[string][]*fanout.Message)
	mu.Lock()
	finals = make(map[string]uint64)
	for _, tp := range topics {
		stored[tp] = c.storedHistory(t, tp)
		finals[tp] = uint64(len(stored[tp]))
	}
	mu.Unlock()
	// Every acknowledged publish is stored where it was told.
	for _, tp := range topics {
		for seq, d := range sent[tp] {
			if seq > finals[tp] || string(stored[tp][seq-1].Data) != d {
				t.Fatalf("topic %q: publish %s acknowledged at Seq %d, not stored there", tp, d, seq)
			}
		}
	}
	close(finished)
	fwg.Wait()
	close(ferrs)
	for err := range ferrs {
		t.Fatal(err)
	}
	for _, f := range followers {
		if f.moves != 0 {
			t.Errorf("%s: moved %d times, want 0: the hub should resync by itself", f.name, f.moves)
		}
		for _, tp := range topics {
			want := make([]string, len(stored[tp]))
			for i, m := range stored[tp] {
				want[i] = string(m.Data)
			}
			if !slices.Equal(f.data[tp], want) {
				t.Errorf("%s, topic %q: got %d messages, want the %d stored, in order", f.name, tp, len(f.data[tp]), len(want))
			}
		}
	}
	// The hub publishes again.
	if _, err := hubs[0].Publish(ctx, "cut.a", []byte("after")); err != nil {
		t.Fatalf("publish after the reconnect: %v", err)
	}
}

// TestResyncBeforeFirstMessage: a session subscribed to a topic that had no
// message yet must still get what was published while its hub's connection
// was down, once it is back, without waiting for a later publish.
func TestResyncBeforeFirstMessage(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	px, nc := c.proxied()
	status := nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED)
	a, b := newHub(t, c.nodeOn(nc), nil), newHub(t, c.node(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := a.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(fanout.CloseNormal, "")
	const topic = "empty.before.cut"
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{ID: "1", Topic: topic}); err != nil {
		t.Fatal(err)
	}
	wait := func(up bool) { t.Helper(); waitConnected(ctx, t, nc, status, up) }
	px.Refuse()
	px.Cut()
	wait(false)
	for i := 1; i <= 3; i++ {
		if _, err := b.Publish(ctx, topic, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	px.Resume()
	wait(true)
	var got []uint64
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	for len(got) < 3 {
		frames, err := s.Next(wctx, nil)
		if err != nil {
			t.Fatalf("session on the reconnected hub: got messages %v, then %v; want Seqs 1 to 3", got, err)
		}
		for _, f := range frames {
			if f.Type == fanout.FrameMessage {
				got = append(got, f.Message.Position.Seq)
			}
		}
	}
	if !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("session on the reconnected hub: got Seqs %v, want 1 to 3", got)
	}
}
