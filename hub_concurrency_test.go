package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// TestConcurrentDelivery publishes 100,000 messages over 64 topics from 4
// publishers while 32 clients subscribe (some of them late), and half of
// them disconnect and resume or unsubscribe and resubscribe with since =
// the last position they saw. Every client must see each topic's messages
// in Seq order, each once, with the published data, and every client must
// end with every message of its topics from the point it first subscribed:
// those that keep up lose nothing, those that resume within history lose
// nothing either.
func TestConcurrentDelivery(t *testing.T) {
	t.Parallel()
	const (
		topics          = 64
		publishers      = 4
		perPublisher    = 25000
		clients         = 32
		topicsPerClient = 8
		maxSeq          = 4096 // more than any topic gets (about 1,560 each)
	)
	h := newHub(t, &fanout.HubOptions{
		// History reaches back to each topic's first message, so every
		// resume must recover.
		Backplane: fanout.NewMemoryBroker(&fanout.MemoryOptions{HistorySize: maxSeq}).Node(),
		// Queues big enough that no client is closed as a slow consumer:
		// this test is about order and loss, not about back pressure.
		QueueMessages: 1 << 20,
		QueueBytes:    1 << 30,
	})

	// published[t][seq] is the data published at that position.
	var published [topics][]string
	for i := range published {
		published[i] = make([]string, maxSeq)
	}
	topicName := func(i int) string { return fmt.Sprintf("t%02d", i) }
	var (
		total     atomic.Int64
		quarter   = make(chan struct{}) // closed after a quarter of the messages
		finals    [topics]uint64        // final Seq per topic, set before pubDone
		pubWG     sync.WaitGroup
		clientsWG sync.WaitGroup
	)
	ctx := context.Background()
	// pubCtx ends after the last message.
	pubCtx, pubDone := context.WithCancel(ctx)
	defer pubDone()

	results := make([]*checker, clients)
	for c := 0; c < clients; c++ {
		results[c] = newChecker(t, c, h, rand.New(rand.NewPCG(uint64(c), 7)), topics, topicsPerClient, topicName)
		clientsWG.Add(1)
		go func() {
			defer clientsWG.Done()
			if c%4 == 3 {
				select { // subscribe in the middle of the stream
				case <-quarter:
				case <-pubCtx.Done():
				}
			}
			results[c].run(pubCtx, &finals)
		}()
	}

	for p := 0; p < publishers; p++ {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			r := rand.New(rand.NewPCG(uint64(p), 42))
			for i := 0; i < perPublisher; i++ {
				ti := r.IntN(topics)
				data := fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)
				pos, err := h.Publish(ctx, topicName(ti), []byte(data))
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				if pos.Seq >= maxSeq {
					t.Errorf("topic %d reached seq %d", ti, pos.Seq)
					return
				}
				published[ti][pos.Seq] = data
				if total.Add(1) == publishers*perPublisher/4 {
					close(quarter)
				}
			}
		}()
	}
	pubWG.Wait()
	for ti := range finals {
		p, err := h.Publish(ctx, topicName(ti), []byte(`"end"`))
		if err != nil {
			t.Fatal(err)
		}
		published[ti][p.Seq] = `"end"`
		finals[ti] = p.Seq
	}
	pubDone()
	clientsWG.Wait()
	if t.Failed() {
		return
	}

	var got uint64
	for _, ck := range results {
		for ti, l := range ck.lineages {
			if !l.subscribed {
				continue
			}
			h := fnv.New64a()
			for seq := l.first; seq <= l.last; seq++ {
				h.Write([]byte(published[ti][seq]))
				h.Write([]byte{0})
			}
			if l.last != finals[ti] {
				t.Errorf("client %d topic %d: got messages up to seq %d, want %d", ck.id, ti, l.last, finals[ti])
			}
			if h.Sum64() != l.hash.Sum64() {
				t.Errorf("client %d topic %d: the data of seq %d..%d differs from what was published", ck.id, ti, l.first, l.last)
			}
			got += l.last - l.first + 1
		}
	}
	var resumes, resubscribes int
	for _, ck := range results {
		resumes += ck.resumes
		resubscribes += ck.resubscribes
	}
	if resumes == 0 || resubscribes == 0 {
		t.Errorf("got %d resumes and %d resubscribes, want some of each", resumes, resubscribes)
	}
	t.Logf("%d deliveries checked, %d resumes, %d resubscribes", got, resumes, resubscribes)
}

// lineage is what one client saw of one topic, across its sessions.
type lineage struct {
	subscribed  bool
	first, last uint64 // first Seq it got, last Seq it got (first-1 before any)
	epoch       string
	hash        hash.Hash64
	leaving     bool // unsubscribe sent, reply pending
}

// checker is one client: it subscribes, checks every frame, and (when
// flaky) disconnects and resumes.
type checker struct {
	t        *testing.T
	id       int
	hub      *fanout.Hub
	r        *rand.Rand
	topics   []int
	name     func(int) string
	lineages map[int]*lineage
	flaky    bool
	// resumes counts disconnects followed by a resume, resubscribes the
	// unsubscribe-resubscribe cycles.
	resumes, resubscribes int
}

func newChecker(t *testing.T, id int, h *fanout.Hub, r *rand.Rand, topics, n int, name func(int) string) *checker {
	ck := &checker{t: t, id: id, hub: h, r: r, name: name, lineages: map[int]*lineage{}, flaky: id%2 == 1}
	for _, ti := range r.Perm(topics)[:n] {
		ck.topics = append(ck.topics, ti)
		ck.lineages[ti] = &lineage{hash: fnv.New64a()}
	}
	return ck
}

func (ck *checker) fail(format string, args ...any) error {
	return fmt.Errorf("client %d: "+format, append([]any{ck.id}, args...)...)
}

// run connects, and reconnects after each planned disconnect, until every
// topic reached its final Seq.
func (ck *checker) run(pubCtx context.Context, finals *[64]uint64) {
	for {
		done, err := ck.session(pubCtx, finals)
		if err != nil {
			ck.t.Error(err)
			return
		}
		if done {
			return
		}
		ck.resumes++
	}
}

// session runs one session. It reports whether the client is done.
func (ck *checker) session(pubCtx context.Context, finals *[64]uint64) (bool, error) {
	ctx := context.Background()
	s, err := ck.hub.NewSession(fanout.Principal{})
	if err != nil {
		return false, err
	}
	defer s.Close(fanout.CloseNormal, "")
	for _, ti := range ck.topics {
		ck.lineages[ti].leaving = false // an unsubscribe of the last session
		if err := ck.subscribe(ctx, s, ti); err != nil {
			return false, err
		}
	}
	// A flaky client leaves after some messages, by disconnecting or by
	// unsubscribing and resubscribing one topic.
	budget := -1
	if ck.flaky {
		budget = 300 + ck.r.IntN(3000)
	}
	wait := pubCtx // ends when the last message is published
	buf := make([]fanout.Frame, 0, 64)
	for {
		if pubCtx.Err() != nil && wait == pubCtx {
			// From now on the client only catches up: give it 30s.
			var cancel context.CancelFunc
			wait, cancel = context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
		}
		if pubCtx.Err() != nil && ck.finished(finals) {
			return true, nil
		}
		frames, err := s.Next(wait, buf)
		if errors.Is(err, context.Canceled) {
			continue // publishing ended
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return false, ck.fail("stuck: %s", ck.progress(finals))
		}
		if err != nil {
			return false, ck.fail("next: %v", err)
		}
		for _, f := range frames {
			if err := ck.frame(ctx, s, f); err != nil {
				return false, err
			}
		}
		budget -= len(frames)
		if ck.flaky && budget <= 0 {
			budget = 300 + ck.r.IntN(3000)
			if ck.r.IntN(2) == 0 {
				return false, nil // disconnect; run resumes
			}
			ti := ck.topics[ck.r.IntN(len(ck.topics))]
			if l := ck.lineages[ti]; !l.leaving {
				l.leaving = true
				ck.resubscribes++
				if err := s.Unsubscribe(ctx, fmt.Sprint("u", ti), ck.name(ti)); err != nil {
					return false, ck.fail("unsubscribe: %v", err)
				}
			}
		}
	}
}

func (ck *checker) subscribe(ctx context.Context, s *fanout.Session, ti int) error {
	l := ck.lineages[ti]
	req := fanout.SubscribeRequest{ID: fmt.Sprint("s", ti), Topic: ck.name(ti)}
	if l.subscribed {
		req.Since = &fanout.Position{Epoch: l.epoch, Seq: l.last}
	}
	if err := s.Subscribe(ctx, req); err != nil {
		return ck.fail("subscribe %d: %v", ti, err)
	}
	return nil
}

func (ck *checker) frame(ctx context.Context, s *fanout.Session, f fanout.Frame) error {
	switch f.Type {
	case fanout.FrameReply:
		r := f.Reply
		if r.Err != nil {
			return ck.fail("reply %s: %v", r.ID, r.Err)
		}
		var ti int
		if _, err := fmt.Sscanf(r.ID[1:], "%d", &ti); err != nil {
			return ck.fail("reply id %q", r.ID)
		}
		l := ck.lineages[ti]
		switch r.ID[0] {
		case 'u': // unsubscribed: nothing more of the topic is queued
			l.leaving = false
			return ck.subscribe(ctx, s, ti)
		case 's':
			if !l.subscribed {
				l.subscribed, l.epoch = true, r.Position.Epoch
				l.first, l.last = r.Position.Seq+1, r.Position.Seq
				return nil
			}
			if r.Recovered == nil || !*r.Recovered {
				return ck.fail("resume of topic %d after seq %d: not recovered", ti, l.last)
			}
		}
	case fanout.FrameMessage:
		m := f.Message
		var ti int
		if _, err := fmt.Sscanf(m.Topic, "t%d", &ti); err != nil {
			return ck.fail("topic %q", m.Topic)
		}
		l := ck.lineages[ti]
		if l == nil || !l.subscribed {
			return ck.fail("message of topic %d it never subscribed to", ti)
		}
		// A topic at Seq 0 may have no epoch yet: its first message
		// brings it.
		if m.Position.Seq != l.last+1 || (m.Position.Epoch != l.epoch && l.last != 0) {
			return ck.fail("topic %d: got %v, want seq %d of epoch %q (duplicate, gap or reorder)", ti, m.Position, l.last+1, l.epoch)
		}
		l.last, l.epoch = m.Position.Seq, m.Position.Epoch
		l.hash.Write(m.Data)
		l.hash.Write([]byte{0})
	default:
		return ck.fail("unexpected frame %+v", f)
	}
	return nil
}

func (ck *checker) finished(finals *[64]uint64) bool {
	for _, ti := range ck.topics {
		if l := ck.lineages[ti]; l.leaving || l.last != finals[ti] {
			return false
		}
	}
	return true
}

func (ck *checker) progress(finals *[64]uint64) string {
	s := ""
	for _, ti := range ck.topics {
		s += fmt.Sprintf(" t%d:%d/%d", ti, ck.lineages[ti].last, finals[ti])
	}
	return s
}
