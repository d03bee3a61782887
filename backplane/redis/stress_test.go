package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// TestManyMessagesMovingSubscribers publishes 50,000 messages from
// publishers on three hubs while subscribers spread over the hubs keep
// moving from one to the next, resuming from the last position they saw:
// every subscriber must see every message of its topics once, in order.
func TestManyMessagesMovingSubscribers(t *testing.T) {
	t.Parallel()
	const (
		total        = 50000
		nHubs        = 3
		nTopics      = 8
		nPublishers  = 20
		nSubscribers = 24
		moveEvery    = 2500 // messages a subscriber reads before it moves
	)
	addr := testenv.Redis(t)
	var hubs []*fanout.Hub
	var first goredis.UniversalClient
	prefix := ""
	for i := range nHubs {
		c := newClient(t, &goredis.Options{Addr: addr, PoolSize: 16})
		if i == 0 {
			first, prefix = c, uniquePrefix(t, c)
		}
		hubs = append(hubs, newHub(t, c, fanoutredis.Options{Prefix: prefix, HistorySize: total}))
	}
	var topics []string
	for i := range nTopics {
		topics = append(topics, fmt.Sprint("stress-", i))
	}

	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// Every subscriber attaches before publishing starts, so that it must
	// see each of its topics from Seq 1.
	subs := make([]*subscriber, nSubscribers)
	sessions := make([]*fanout.Session, nSubscribers)
	for i := range subs {
		subs[i] = newSubscriber(fmt.Sprint("subscriber ", i), []string{topics[i%nTopics], topics[(i+3)%nTopics], topics[(i+6)%nTopics]})
		sess, err := subs[i].attach(ctx, hubs[i%nHubs])
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = sess
	}
	for i, s := range subs {
		wg.Go(func() {
			hub, sess := i%nHubs, sessions[i]
			for {
				err := s.read(ctx, sess, moveEvery, nil)
				sess.Close(fanout.CloseGoingAway, "")
				switch {
				case ctx.Err() != nil:
					return
				case err == nil, isClose(err, fanout.CloseSlowConsumer):
					// Move on, as a client that reconnects elsewhere.
				default:
					s.fail(err)
					return
				}
				s.mu.Lock()
				s.moves++
				s.mu.Unlock()
				hub = (hub + 1) % nHubs
				if sess, err = s.attach(ctx, hubs[hub]); err != nil {
					if ctx.Err() == nil {
						s.fail(err)
					}
					return
				}
			}
		})
	}

	var pubs sync.WaitGroup
	errs := make(chan error, nPublishers)
	for p := range nPublishers {
		pubs.Go(func() {
			h := hubs[p%nHubs]
			for k := range total / nPublishers {
				tp := topics[(p*7+k)%nTopics]
				if _, err := h.Publish(ctx, tp, []byte(fmt.Sprintf("p%d-%d", p, k))); err != nil {
					errs <- fmt.Errorf("publisher %d, message %d: %w", p, k, err)
					return
				}
			}
		})
	}
	pubs.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	want, sums := stored(t, first, prefix, topics)
	var n uint64
	for _, p := range want {
		n += p.Seq
	}
	if n != total {
		t.Fatalf("stored: got %d messages, want %d", n, total)
	}
	for _, s := range subs {
		s.waitFor(t, want)
	}
	checkDigests(t, subs, sums)
	moves := 0
	for _, s := range subs {
		s.mu.Lock()
		moves += s.moves
		s.mu.Unlock()
	}
	if moves < nSubscribers {
		t.Errorf("got %d moves between hubs, want at least %d", moves, nSubscribers)
	}
	t.Logf("%d messages, %d subscribers, %d moves between hubs", total, nSubscribers, moves)
}
