package nats_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
)

// TestClusterManyMessages: three hubs, publishers on each, 50,000 messages
// over several topics; followers spread over the hubs move between them
// and resume. Every follower gets every message of its topics once, in
// order, with the data that was published.
func TestClusterManyMessages(t *testing.T) {
	t.Parallel()
	total := 50000
	if testing.Short() {
		total = 5000
	}
	const (
		nhubs      = 3
		ntopics    = 8
		publishers = 2 // per hub
		nfollowers = 9
		perFollow  = 3 // topics per follower
	)
	c := newCluster(t, &fnats.Options{HistorySize: total/ntopics + 1000})
	hubs := make([]*fanout.Hub, nhubs)
	for i := range hubs {
		hubs[i] = newHub(t, c.node(), nil)
	}
	topics := make([]string, ntopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("load.t%d", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Followers subscribe before anything is published.
	followers := make([]*follower, nfollowers)
	firsts := make([]*fanout.Session, nfollowers)
	for i := range followers {
		var ts []string
		for k := range perFollow {
			ts = append(ts, topics[(i+k)%ntopics])
		}
		followers[i] = newFollower(fmt.Sprint("follower ", i), ts, hubs, i%nhubs, 1500+100*i)
	}

	var (
		mu     sync.Mutex // guards sent and finals
		sent   = make(map[string]map[uint64]string)
		finals map[string]uint64
	)
	for _, tp := range topics {
		sent[tp] = make(map[uint64]string)
	}
	finished := make(chan struct{})
	done := func(f *follower) bool {
		mu.Lock()
		defer mu.Unlock()
		if finals == nil {
			return false
		}
		for _, tp := range f.topics {
			if f.last[tp].Seq != finals[tp] {
				return false
			}
		}
		return true
	}
	_ = firsts
	var fwg sync.WaitGroup
	ferrs := make(chan error, nfollowers)
	ready := make(chan struct{}, nfollowers)
	for _, f := range followers {
		fwg.Go(func() {
			// The first session subscribes live before publishing starts.
			s, err := f.session(ctx, true)
			if err != nil {
				ferrs <- err
				ready <- struct{}{}
				return
			}
			s.Close(fanout.CloseNormal, "")
			ready <- struct{}{}
			if err := f.follow(ctx, false, finished, done); err != nil {
				ferrs <- err
			}
		})
	}
	for range nfollowers {
		<-ready
	}

	pubStart := time.Now()
	var pwg sync.WaitGroup
	perr := make(chan error, nhubs*publishers)
	each := total / (nhubs * publishers)
	for h, hub := range hubs {
		for p := range publishers {
			pwg.Go(func() {
				for k := range each {
					tp := topics[(h*publishers+p+k)%ntopics]
					data := fmt.Sprintf("h%d-p%d-%d", h, p, k)
					pos, err := hub.Publish(ctx, tp, []byte(data))
					if err != nil {
						perr <- fmt.Errorf("publish %s: %w", data, err)
						return
					}
					mu.Lock()
					sent[tp][pos.Seq] = data
					mu.Unlock()
				}
			})
		}
	}
	pwg.Wait()
	t.Logf("published %d messages in %v", each*nhubs*publishers, time.Since(pubStart))
	close(perr)
	for err := range perr {
		t.Fatal(err)
	}
	mu.Lock()
	finals = make(map[string]uint64)
	n := 0
	for _, tp := range topics {
		finals[tp] = uint64(len(sent[tp]))
		n += len(sent[tp])
	}
	mu.Unlock()
	if n != each*nhubs*publishers {
		t.Fatalf("published %d distinct positions, want %d", n, each*nhubs*publishers)
	}
	close(finished)
	fwg.Wait()
	close(ferrs)
	for err := range ferrs {
		t.Fatal(err)
	}
	moves := 0
	for _, f := range followers {
		moves += f.moves
		for _, tp := range f.topics {
			want := make([]string, finals[tp])
			for seq, d := range sent[tp] {
				want[seq-1] = d
			}
			if got := f.data[tp]; !slices.Equal(got, want) {
				t.Fatalf("%s, topic %q: got %d messages, want the %d published, in order", f.name, tp, len(got), len(want))
			}
		}
	}
	t.Logf("%d messages, %d follower moves", n, moves)
}
