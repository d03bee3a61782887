package redis_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

// This file holds the harness of the multi-hub tests: hubs on Redis,
// publishers that remember what they published, and subscribers that
// check every frame they get.

const waitTimeout = 60 * time.Second

// newHub returns a hub on a new node of the cluster prefix, closed when the
// test ends.
func newHub(t *testing.T, c goredis.UniversalClient, opts fanoutredis.Options) *fanout.Hub {
	t.Helper()
	h, err := fanout.NewHub(&fanout.HubOptions{
		Backplane:     fanoutredis.New(c, &opts),
		QueueMessages: 1 << 16,
		QueueBytes:    64 << 20,
	})
	if err != nil {
		t.Fatalf("new hub: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// digest is a running hash of a topic's messages, in order.
type digest struct{ sum uint64 }

func (d *digest) add(m *fanout.Message) {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(d.sum >> (8 * i))
	}
	h.Write(b[:])
	h.Write([]byte(strconv.FormatUint(m.Position.Seq, 10)))
	h.Write(m.Data)
	d.sum = h.Sum64()
}

// subscriber is one client: it subscribes to its topics on one hub, checks
// that every topic's messages come once each and in order, and moves to
// another hub when asked, resuming from the last position it saw.
type subscriber struct {
	name   string
	topics []string

	mu      sync.Mutex // guards the fields below
	last    map[string]fanout.Position
	digests map[string]*digest
	count   int
	moves   int
	failure error
	changed chan struct{} // capacity 1: last changed
}

func newSubscriber(name string, topics []string) *subscriber {
	s := &subscriber{
		name:    name,
		topics:  topics,
		last:    make(map[string]fanout.Position),
		digests: make(map[string]*digest),
		changed: make(chan struct{}, 1),
	}
	for _, tp := range topics {
		s.digests[tp] = new(digest)
	}
	return s
}

// attach subscribes to every topic on h, resuming where the subscriber
// left off. It returns the session.
func (s *subscriber) attach(ctx context.Context, h *fanout.Hub) (*fanout.Session, error) {
	sess, err := h.NewSession(fanout.Principal{})
	if err != nil {
		return nil, err
	}
	for _, tp := range s.topics {
		s.mu.Lock()
		since, resume := s.last[tp]
		s.mu.Unlock()
		req := fanout.SubscribeRequest{ID: tp, Topic: tp}
		if resume {
			req.Since = &since
		}
		if err := sess.Subscribe(ctx, req); err != nil {
			sess.Close(fanout.CloseNormal, "")
			return nil, fmt.Errorf("%s: subscribe to %s since %v: %w", s.name, tp, since, err)
		}
	}
	return sess, nil
}

// read takes frames from sess until it has seen n messages, ctx ends, or the
// session closes. It returns why it stopped.
func (s *subscriber) read(ctx context.Context, sess *fanout.Session, n int, pings chan<- string) error {
	buf := make([]fanout.Frame, 0, 256)
	seen := 0
	for n <= 0 || seen < n {
		frames, err := sess.Next(ctx, buf)
		if err != nil {
			return err
		}
		for _, f := range frames {
			switch f.Type {
			case fanout.FrameReply:
				r := f.Reply
				if r.Err != nil {
					return fmt.Errorf("%s: reply %q: %w", s.name, r.ID, r.Err)
				}
				if r.Topic == "" && pings != nil {
					pings <- r.ID
					continue
				}
				s.mu.Lock()
				_, resumed := s.last[r.Topic]
				if !resumed {
					s.last[r.Topic] = *r.Position
				}
				s.mu.Unlock()
				if resumed && (r.Recovered == nil || !*r.Recovered) {
					return fmt.Errorf("%s: resume of %s not recovered", s.name, r.Topic)
				}
			case fanout.FrameMessage:
				if err := s.take(f.Message); err != nil {
					return err
				}
				seen++
			case fanout.FrameSnapshot:
				return fmt.Errorf("%s: unexpected snapshot of %s", s.name, f.Snapshot.Topic)
			case fanout.FrameClose:
				return closeError{f.Close.Code, f.Close.Reason}
			}
		}
	}
	return nil
}

type closeError struct {
	code   fanout.CloseCode
	reason string
}

func (e closeError) Error() string { return fmt.Sprintf("session closed: %d %s", e.code, e.reason) }

// take checks and records one message.
func (s *subscriber) take(m *fanout.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.last[m.Topic]
	if m.Position.Seq != last.Seq+1 || (last.Seq != 0 && m.Position.Epoch != last.Epoch) {
		return fmt.Errorf("%s: topic %s: got %v after %v, want Seq %d", s.name, m.Topic, m.Position, last, last.Seq+1)
	}
	s.last[m.Topic] = m.Position
	s.digests[m.Topic].add(m)
	s.count++
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

// fail records the subscriber's first failure.
func (s *subscriber) fail(err error) {
	s.mu.Lock()
	if s.failure == nil {
		s.failure = err
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until the subscriber reached want for each of its topics.
func (s *subscriber) waitFor(t *testing.T, want map[string]fanout.Position) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		failure := s.failure
		behind := ""
		for _, tp := range s.topics {
			if s.last[tp] != want[tp] {
				behind = fmt.Sprintf("topic %s at %v, want %v", tp, s.last[tp], want[tp])
				break
			}
		}
		s.mu.Unlock()
		if failure != nil {
			t.Fatal(failure)
		}
		if behind == "" {
			return
		}
		select {
		case <-s.changed:
		case <-deadline.C:
			t.Fatalf("%s: after %v: %s", s.name, waitTimeout, behind)
		}
	}
}

// stored reads what Redis holds for each topic: its position and the digest
// of its whole history.
func stored(t *testing.T, c goredis.UniversalClient, prefix string, topics []string) (map[string]fanout.Position, map[string]uint64) {
	t.Helper()
	n := fanoutredis.New(c, &fanoutredis.Options{Prefix: prefix})
	defer n.Close()
	pos := make(map[string]fanout.Position)
	sums := make(map[string]uint64)
	for _, tp := range topics {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		h, err := n.History(ctx, tp, fanout.Position{})
		cancel()
		if err != nil {
			t.Fatalf("history of %s: %v", tp, err)
		}
		if !h.Complete {
			t.Fatalf("history of %s: incomplete at %v; the test's HistorySize is too small", tp, h.Position)
		}
		var d digest
		for _, m := range h.Messages {
			d.add(m)
		}
		pos[tp], sums[tp] = h.Position, d.sum
	}
	return pos, sums
}

// checkDigests fails unless every subscriber's digests equal what Redis
// stored.
func checkDigests(t *testing.T, subs []*subscriber, sums map[string]uint64) {
	t.Helper()
	for _, s := range subs {
		s.mu.Lock()
		for _, tp := range s.topics {
			if got := s.digests[tp].sum; got != sums[tp] {
				t.Errorf("%s: topic %s: got digest %x, want %x: the messages differ from those stored", s.name, tp, got, sums[tp])
			}
		}
		s.mu.Unlock()
	}
}

func isClose(err error, code fanout.CloseCode) bool {
	var ce closeError
	return errors.As(err, &ce) && ce.code == code
}
