package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cluster is one test's isolated backplane configuration: streams and
// subjects of its own, deleted when the test ends.
type cluster struct {
	t    testing.TB
	url  string
	opts fnats.Options

	mu    sync.Mutex // guards conns
	conns []*nats.Conn
}

// newCluster returns a cluster with unique stream names and prefix. Its
// cleanup, which deletes the streams and closes every connection the
// cluster made, runs after the cleanups registered later (nodes, hubs).
func newCluster(t testing.TB, opts *fnats.Options) *cluster {
	t.Helper()
	return newClusterAt(t, testenv.NATS(t), opts)
}

// newClusterAt is newCluster on the NATS server at url.
func newClusterAt(t testing.TB, url string, opts *fnats.Options) *cluster {
	t.Helper()
	c := &cluster{t: t, url: url}
	if opts != nil {
		c.opts = *opts
	}
	id := unique()
	c.opts.Stream = "FT_" + strings.ToUpper(id)
	c.opts.Prefix = "ft" + id
	t.Cleanup(func() {
		c.deleteStreams()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, nc := range c.conns {
			nc.Close()
		}
	})
	return c
}

func unique() string {
	var b [5]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// conn opens a connection to url that the cluster closes at the end.
func (c *cluster) conn(url string, opts ...nats.Option) *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.t.Fatalf("connect to %s: %v", url, err)
	}
	c.mu.Lock()
	c.conns = append(c.conns, nc)
	c.mu.Unlock()
	return nc
}

// proxied opens a connection to NATS through a proxy that the test can cut
// and refuse: the connection retries every 10ms, forever, until it is back.
func (c *cluster) proxied() (*testenv.Proxy, *nats.Conn) {
	c.t.Helper()
	u, err := url.Parse(c.url)
	if err != nil {
		c.t.Fatal(err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	px := testenv.NewProxy(c.t, host)
	nc := c.conn("nats://"+px.Addr(), nats.ReconnectWait(10*time.Millisecond), nats.MaxReconnects(-1), nats.ReconnectJitter(0, 0))
	return px, nc
}

// node returns a new, unopened node on a connection of its own.
func (c *cluster) node() *fnats.Backplane {
	return c.nodeOn(c.conn(c.url))
}

func (c *cluster) nodeOn(nc *nats.Conn) *fnats.Backplane {
	c.t.Helper()
	return fnats.New(nc, &c.opts)
}

// deleteStreams deletes the cluster's streams, as if the server had lost
// its storage.
func (c *cluster) deleteStreams() {
	nc, err := nats.Connect(c.url)
	if err != nil {
		c.t.Errorf("connect to delete streams: %v", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range []string{c.opts.Stream, c.opts.Stream + "_KEYS", c.opts.Stream + "_IDEM", c.opts.Stream + "_EXPIRE", c.opts.Stream + "_LIVE", c.opts.Stream + "_PRES"} {
		if err := js.DeleteStream(ctx, s); err != nil && !strings.Contains(err.Error(), "not found") {
			c.t.Errorf("delete stream %s: %v", s, err)
		}
	}
}

// hub returns a hub on bp, closed when the test ends.
func newHub(t testing.TB, bp fanout.Backplane, o *fanout.HubOptions) *fanout.Hub {
	t.Helper()
	var opts fanout.HubOptions
	if o != nil {
		opts = *o
	}
	opts.Backplane = bp
	h, err := fanout.NewHub(&opts)
	if err != nil {
		t.Fatalf("new hub: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// storedHistory returns every message of topic that the cluster keeps.
func (c *cluster) storedHistory(t testing.TB, topic string) []*fanout.Message {
	t.Helper()
	n := c.node()
	if err := n.Open(discard{}); err != nil {
		t.Fatalf("open: %v", err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := n.History(ctx, topic, fanout.Position{})
	if err != nil {
		t.Fatalf("history of %q: %v", topic, err)
	}
	if !h.Complete {
		t.Fatalf("history of %q from the start: got incomplete at %v, want complete", topic, h.Position)
	}
	return h.Messages
}

// discard is a Receiver that ignores everything.
type discard struct{}

func (discard) Deliver(*fanout.Message) {}
func (discard) Resync(string)           {}

// follower is a client of a hub that follows some topics, moving to
// another hub now and then and resuming there. It checks that it receives
// every message of its topics once and in order.
type follower struct {
	name   string
	topics []string
	hubs   []*fanout.Hub
	at     int // index of the hub it is on
	// moveEvery, when positive, moves it after that many messages.
	moveEvery int
	// onMessage, when set, is called after each message.
	onMessage func(*follower)

	last  map[string]fanout.Position
	data  map[string][]string // data by Seq-1, per topic
	count int
	moves int
}

func newFollower(name string, topics []string, hubs []*fanout.Hub, at, moveEvery int) *follower {
	return &follower{
		name: name, topics: topics, hubs: hubs, at: at, moveEvery: moveEvery,
		last: make(map[string]fanout.Position), data: make(map[string][]string),
	}
}

// session subscribes on the current hub: live from now the first time,
// afterwards resuming from what it has seen.
func (f *follower) session(ctx context.Context, first bool) (*fanout.Session, error) {
	s, err := f.hubs[f.at].NewSession(fanout.Principal{})
	if err != nil {
		return nil, err
	}
	for _, topic := range f.topics {
		req := fanout.SubscribeRequest{ID: topic, Topic: topic}
		if !first {
			since := f.last[topic]
			req.Since = &since
		}
		if err := s.Subscribe(ctx, req); err != nil {
			s.Close(fanout.CloseNormal, "")
			return nil, fmt.Errorf("%s: subscribe to %q on hub %d: %w", f.name, topic, f.at, err)
		}
	}
	return s, nil
}

// follow reads until done reports true after a frame, moving between hubs
// and resuming. It returns the first breach of order it sees. finished is
// closed when no more messages will be published; until then follow waits
// for messages without a deadline.
func (f *follower) follow(ctx context.Context, first bool, finished <-chan struct{}, done func(*follower) bool) error {
	s, err := f.session(ctx, first)
	if err != nil {
		return err
	}
	wait, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-finished:
		case <-wait.Done():
		}
		stop()
	}()
	buf := make([]fanout.Frame, 0, 256)
	for {
		if done(f) {
			s.Close(fanout.CloseNormal, "")
			return nil
		}
		fctx := wait
		if wait.Err() != nil {
			fctx = ctx // publishing is over: wait for the rest up to ctx
		}
		frames, err := s.Next(fctx, buf)
		if err != nil {
			if fctx == wait && ctx.Err() == nil {
				continue
			}
			s.Close(fanout.CloseNormal, "")
			return fmt.Errorf("%s: next frame: %w (have %d messages)", f.name, err, f.count)
		}
		moved := false
		for _, fr := range frames {
			switch fr.Type {
			case fanout.FrameReply:
				r := fr.Reply
				if r.Err != nil {
					return fmt.Errorf("%s: reply %q: %v", f.name, r.ID, r.Err)
				}
				if r.Recovered != nil && !*r.Recovered {
					return fmt.Errorf("%s: resume %q on hub %d: got recovered=false, want true", f.name, r.Topic, f.at)
				}
			case fanout.FrameSnapshot:
				return fmt.Errorf("%s: got a snapshot of %q, want history", f.name, fr.Snapshot.Topic)
			case fanout.FrameMessage:
				m := fr.Message
				last := f.last[m.Topic]
				if m.Position.Seq != last.Seq+1 || (last.Seq != 0 && m.Position.Epoch != last.Epoch) {
					return fmt.Errorf("%s: topic %q: got %v after %v, want the next Seq", f.name, m.Topic, m.Position, last)
				}
				f.last[m.Topic] = m.Position
				f.data[m.Topic] = append(f.data[m.Topic], string(m.Data))
				f.count++
				if f.onMessage != nil {
					f.onMessage(f)
				}
				if f.moveEvery > 0 && f.count%f.moveEvery == 0 {
					moved = true
				}
			case fanout.FrameClose:
				// Slow consumer or resync: resume elsewhere, as a client would.
				moved = true
			}
			if moved {
				break
			}
		}
		if moved {
			s.Close(fanout.CloseGoingAway, "")
			f.at = (f.at + 1) % len(f.hubs)
			f.moves++
			if s, err = f.session(ctx, false); err != nil {
				return err
			}
		}
	}
}

// waitConnected waits until nc is connected (up) or not, reading status, a
// channel from nc.StatusChanged, for the changes.
func waitConnected(ctx context.Context, t *testing.T, nc *nats.Conn, status <-chan nats.Status, up bool) {
	t.Helper()
	for (nc.Status() == nats.CONNECTED) != up {
		select {
		case <-status:
		case <-ctx.Done():
			t.Fatalf("waiting for connected=%v: %v", up, ctx.Err())
		}
	}
}
