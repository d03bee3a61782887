// Package redis is a [fanout.Backplane] on Redis: hubs on several nodes that
// share one Redis act as one cluster.
//
//	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	defer client.Close()
//	hub, err := fanout.NewHub(&fanout.HubOptions{
//		Backplane: fanoutredis.New(client, nil),
//	})
//
// # How it works
//
// Every publish runs one Lua script that increments the topic's sequence
// number, appends the message to the topic's stream (capped by count and
// age), updates the topic's snapshot hash when the message has a key,
// remembers the idempotency key, and publishes the whole message, position
// included, on the topic's channel. Positions are therefore global and
// gap-free, and a node that receives a message needs no further read.
// History is read from the stream, snapshots from the hash, each with the
// topic's position in one atomic script.
//
// Each node holds one Pub/Sub connection and subscribes to a topic's channel
// only while its hub has local subscribers for it: a node receives only the
// topics it serves, never a firehose.
//
// # Epochs
//
// A topic's epoch is a random name stored beside its sequence number. When
// the keys are lost (Redis flushed, restarted without persistence, keys
// evicted or deleted), the next publish starts a new epoch at Seq 1, and
// clients that resume from the old one are told that their position no
// longer counts. Run Redis with a noeviction or volatile-* eviction policy:
// the topic keys have no expiry.
//
// # Failures
//
// Publish, History and Snapshot fail with an error matching
// [fanout.ErrUnavailable] when Redis cannot be reached, within the limits of
// the client's timeouts and the context. The Pub/Sub connection is checked
// with pings when idle; when it drops, go-redis reconnects it and the
// backplane, on seeing each channel confirmed again, calls
// [fanout.Receiver.Resync] for it so that the hub fills the gap from
// history. The same happens when Redis disconnects a node that fell behind
// (its client-output-buffer-limit for pubsub).
//
// go-redis retries a command after a network error (redis.Options.MaxRetries).
// A publish whose reply was lost may thus be stored twice; give publishes
// an idempotency key where that matters.
//
// # Redis Cluster
//
// The keys of one topic share the hash tag {prefix:topic}, so each topic
// lives on one shard and its scripts run there; topics spread over the
// shards. Live delivery uses classic PUBLISH, which Redis Cluster forwards
// to every node, so a node's Pub/Sub connection may be to any of them. Use a
// redis.ClusterClient (or any redis.UniversalClient).
//
// Redis 6.2 or later is required.
package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofanout/fanout"
	goredis "github.com/redis/go-redis/v9"
)

// Options configures a [Backplane]. The zero value is valid; New copies it.
type Options struct {
	// Prefix starts the name of every key and channel, so that several
	// clusters can share one Redis. It must not contain '{' or '}'.
	// Default: "fanout".
	Prefix string
	// HistorySize is how many messages each topic's stream keeps, exactly.
	// Default: 1024.
	HistorySize int
	// HistoryAge is how long a message stays in history: older ones are
	// trimmed when the topic is next published to, so a topic that falls
	// silent keeps its last messages. Default: 10m.
	HistoryAge time.Duration
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered. Default: 5m.
	IdempotencyWindow time.Duration
	// IdleTTL is how long a topic's keys outlive its last publish or
	// read. Default: 24h.
	IdleTTL time.Duration
	// FinalTTL is how long a topic's keys outlive a final publish.
	// Default: 10m.
	FinalTTL time.Duration
	// PingInterval is how long the Pub/Sub connection may stay silent
	// before it is pinged; a ping unanswered for as long again marks the
	// connection dead, and it is replaced. Default: 3s.
	PingInterval time.Duration
	// Logger receives the backplane's logs: connection loss and return,
	// resyncs, undecodable messages. Default: logs are discarded.
	Logger *slog.Logger
}

// Defaults of [Options].
const (
	defaultPrefix            = "fanout"
	defaultHistorySize       = 1024
	defaultHistoryAge        = 10 * time.Minute
	defaultIdempotencyWindow = 5 * time.Minute
	defaultIdleTTL           = 24 * time.Hour
	defaultFinalTTL          = 10 * time.Minute
	defaultPingInterval      = 3 * time.Second
)

const (
	// minConfirmWait bounds how long Subscribe waits for Redis to confirm
	// a subscription when its context has no earlier deadline.
	minConfirmWait = 10 * time.Second
	// unsubscribeTimeout bounds the clean-up of a failed subscribe.
	unsubscribeTimeout = 5 * time.Second
	// Reconnect backoff of the Pub/Sub loop.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Backplane is one node's handle on a Redis backplane: each hub gets its
// own, all made with the same Prefix on the same Redis. It is safe for
// concurrent use.
type Backplane struct {
	client goredis.UniversalClient
	opts   Options
	log    *slog.Logger

	mu     sync.Mutex // guards the fields below
	recv   fanout.Receiver
	closed bool
	ps     *goredis.PubSub      // created with the first subscription
	subs   map[string]*subState // by channel name

	done chan struct{}  // closed by Close
	wg   sync.WaitGroup // the Pub/Sub loop
}

// subState is the node's subscription to one topic's channel.
type subState struct {
	topic     string
	confirmed bool          // Redis confirmed it; guarded by Backplane.mu
	ready     chan struct{} // closed on the first confirmation
}

// New returns a node of the backplane that uses client, which the caller
// configured (address, credentials, TLS, timeouts, pool) and still owns:
// Close does not close it. New panics when client is nil or opts.Prefix
// contains a brace.
func New(client goredis.UniversalClient, opts *Options) *Backplane {
	if client == nil {
		panic("redis backplane: nil client")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Prefix == "" {
		o.Prefix = defaultPrefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		panic("redis backplane: prefix " + strconv.Quote(o.Prefix) + " contains a brace")
	}
	if o.HistorySize <= 0 {
		o.HistorySize = defaultHistorySize
	}
	if o.HistoryAge <= 0 {
		o.HistoryAge = defaultHistoryAge
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = defaultIdempotencyWindow
	}
	if o.IdleTTL <= 0 {
		o.IdleTTL = defaultIdleTTL
	}
	if o.FinalTTL <= 0 {
		o.FinalTTL = defaultFinalTTL
	}
	if o.PingInterval <= 0 {
		o.PingInterval = defaultPingInterval
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Backplane{
		client: client,
		opts:   o,
		log:    log,
		subs:   make(map[string]*subState),
		done:   make(chan struct{}),
	}
}

// keys names the Redis keys and channel of one topic.
type keys struct {
	base string // {prefix:topic}, also the channel
}

func (b *Backplane) keys(topic string) keys {
	return keys{base: "{" + b.opts.Prefix + ":" + topic + "}"}
}

func (k keys) seq() string     { return k.base + ":seq" }
func (k keys) epoch() string   { return k.base + ":epoch" }
func (k keys) stream() string  { return k.base + ":stream" }
func (k keys) snap() string    { return k.base + ":snap" }
func (k keys) idem() string    { return k.base + ":idem" }
func (k keys) idemExp() string { return k.base + ":idemexp" }
func (k keys) final() string   { return k.base + ":final" }

// all returns every key of the topic, in the order the publish script
// takes them.
func (k keys) all() []string {
	return []string{k.seq(), k.epoch(), k.stream(), k.snap(), k.idem(), k.idemExp(), k.final()}
}

// ms returns d in whole milliseconds, at least 1.
func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// Open implements [fanout.Backplane].
func (b *Backplane) Open(r fanout.Receiver) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("redis backplane: open: %w", fanout.ErrClosed)
	}
	b.recv = r
	return nil
}

func (b *Backplane) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// check returns the error a call must return before it starts.
func (b *Backplane) check(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis backplane: %s: %w", op, err)
	}
	if b.isClosed() {
		return fmt.Errorf("redis backplane: %s: %w", op, fanout.ErrClosed)
	}
	return nil
}

// Publish implements [fanout.Backplane].
func (b *Backplane) Publish(ctx context.Context, m *fanout.Message, idempotencyKey string) (fanout.Position, error) {
	if err := b.check(ctx, "publish"); err != nil {
		return fanout.Position{}, err
	}
	k := b.keys(m.Topic)
	ttl, final := b.opts.IdleTTL, ""
	if m.Final() {
		ttl, final = b.opts.FinalTTL, "1"
	}
	res, err := publishScript.Run(ctx, b.client, k.all(),
		newEpoch(),
		appendBody(nil, m),
		m.Key,
		b.opts.HistorySize,
		ms(b.opts.HistoryAge),
		ms(b.opts.IdempotencyWindow),
		k.base,
		idempotencyKey,
		ms(ttl),
		final,
	).Slice()
	if err != nil {
		return fanout.Position{}, b.opError("publish", err)
	}
	if len(res) != 2 {
		return fanout.Position{}, fmt.Errorf("redis backplane: publish: unexpected reply %v", res)
	}
	created, _ := res[0].(int64)
	text, _ := res[1].(string)
	epoch, seqText, _ := strings.Cut(text, " ")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return fanout.Position{}, fmt.Errorf("redis backplane: publish: unexpected position %q", text)
	}
	pos := fanout.Position{Epoch: epoch, Seq: seq}
	if created == 1 {
		m.Position = pos
	}
	return pos, nil
}

// newEpoch returns a random epoch name, used when a topic starts a lineage.
func newEpoch() string {
	return strconv.FormatUint(rand.Uint64(), 36)
}

// History implements [fanout.Backplane].
func (b *Backplane) History(ctx context.Context, topic string, after fanout.Position) (fanout.History, error) {
	if err := b.check(ctx, "history"); err != nil {
		return fanout.History{}, err
	}
	k := b.keys(topic)
	res, err := historyScript.Run(ctx, b.client, []string{k.seq(), k.epoch(), k.stream(), k.snap(), k.final()},
		after.Epoch, after.Seq, ms(b.opts.HistoryAge), ms(b.opts.IdleTTL)).Slice()
	if err != nil {
		return fanout.History{}, b.opError("history", err)
	}
	pos, rest, err := parsePosition(res)
	if err != nil || len(rest) == 0 {
		return fanout.History{}, fmt.Errorf("redis backplane: history: unexpected reply: %v", err)
	}
	h := fanout.History{Position: pos}
	if pos.Epoch == "" { // no lineage: only a reader from the start is complete
		h.Complete = after.Seq == 0
		return h, nil
	}
	if complete, _ := rest[0].(int64); complete != 1 {
		return h, nil
	}
	msgs := make([]*fanout.Message, 0, len(rest)-1)
	for i, r := range rest[1:] {
		m, err := decodeReply(topic, r)
		if err != nil {
			return fanout.History{}, fmt.Errorf("redis backplane: history of %q: %w", topic, err)
		}
		if m.Position.Epoch != pos.Epoch || m.Position.Seq != after.Seq+1+uint64(i) {
			// Not a contiguous run: the stream was altered behind our back.
			b.log.Warn("redis backplane: history is not contiguous", "topic", topic, "at", m.Position.String())
			return h, nil
		}
		msgs = append(msgs, m)
	}
	h.Messages, h.Complete = msgs, true
	return h, nil
}

// Snapshot implements [fanout.Backplane].
func (b *Backplane) Snapshot(ctx context.Context, topic string) (fanout.Snapshot, error) {
	if err := b.check(ctx, "snapshot"); err != nil {
		return fanout.Snapshot{}, err
	}
	k := b.keys(topic)
	res, err := snapshotScript.Run(ctx, b.client, []string{k.seq(), k.epoch(), k.snap(), k.final()},
		ms(b.opts.IdleTTL)).Slice()
	if err != nil {
		return fanout.Snapshot{}, b.opError("snapshot", err)
	}
	pos, rest, err := parsePosition(res)
	if err != nil {
		return fanout.Snapshot{}, fmt.Errorf("redis backplane: snapshot: unexpected reply: %v", err)
	}
	s := fanout.Snapshot{Position: pos, Items: make([]*fanout.Message, 0, len(rest))}
	for _, r := range rest {
		m, err := decodeReply(topic, r)
		if err != nil {
			return fanout.Snapshot{}, fmt.Errorf("redis backplane: snapshot of %q: %w", topic, err)
		}
		s.Items = append(s.Items, m)
	}
	sort.Slice(s.Items, func(i, j int) bool { return s.Items[i].Position.Seq < s.Items[j].Position.Seq })
	return s, nil
}

// parsePosition reads the {epoch, seq, ...} head of a script's reply.
func parsePosition(res []any) (fanout.Position, []any, error) {
	if len(res) < 2 {
		return fanout.Position{}, nil, fmt.Errorf("%d elements", len(res))
	}
	epoch, ok := res[0].(string)
	seqText, ok2 := res[1].(string)
	if !ok || !ok2 {
		return fanout.Position{}, nil, fmt.Errorf("position of types %T, %T", res[0], res[1])
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return fanout.Position{}, nil, err
	}
	return fanout.Position{Epoch: epoch, Seq: seq}, res[2:], nil
}

func decodeReply(topic string, r any) (*fanout.Message, error) {
	s, ok := r.(string)
	if !ok {
		return nil, fmt.Errorf("%w: reply of type %T", errRecord, r)
	}
	return decodeRecord(topic, []byte(s))
}

// opError wraps an error of a Redis call. Everything but a Redis error reply
// that will not go away by itself means that Redis could not be reached.
func (b *Backplane) opError(op string, err error) error {
	if b.isClosed() && errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis backplane: %s: %w", op, fanout.ErrClosed)
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) && !transient(rerr.Error()) {
		return fmt.Errorf("redis backplane: %s: %w", op, err)
	}
	return fmt.Errorf("redis backplane: %s: %w: %w", op, fanout.ErrUnavailable, err)
}

// transient reports whether a Redis error reply means "try again later".
func transient(msg string) bool {
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "NOREPLICAS", "OOM"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Subscribe implements [fanout.Backplane]. It returns once Redis has
// confirmed the subscription, so that every message published afterwards is
// delivered.
func (b *Backplane) Subscribe(ctx context.Context, topic string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis backplane: subscribe: %w", err)
	}
	ch := b.keys(topic).base
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("redis backplane: subscribe: %w", fanout.ErrClosed)
	}
	if b.ps == nil {
		b.ps = b.client.Subscribe(context.Background())
		b.wg.Add(1)
		go b.loop(b.ps)
	}
	ps := b.ps
	st := b.subs[ch]
	if st != nil {
		b.mu.Unlock()
		return nil
	}
	st = &subState{topic: topic, ready: make(chan struct{})}
	b.subs[ch] = st
	b.mu.Unlock()

	if err := ps.Subscribe(ctx, ch); err != nil {
		b.drop(ps, ch, st)
		return b.opError("subscribe", err)
	}
	wait := time.NewTimer(max(minConfirmWait, 3*b.opts.PingInterval))
	defer wait.Stop()
	select {
	case <-st.ready:
		return nil
	case <-ctx.Done():
		b.drop(ps, ch, st)
		return fmt.Errorf("redis backplane: subscribe: %w: %w", fanout.ErrUnavailable, ctx.Err())
	case <-wait.C:
		b.drop(ps, ch, st)
		return fmt.Errorf("redis backplane: subscribe: %w: no confirmation from Redis", fanout.ErrUnavailable)
	case <-b.done:
		return fmt.Errorf("redis backplane: subscribe: %w", fanout.ErrClosed)
	}
}

// drop undoes a subscribe that failed.
func (b *Backplane) drop(ps *goredis.PubSub, ch string, st *subState) {
	b.mu.Lock()
	if b.subs[ch] == st {
		delete(b.subs, ch)
	}
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), unsubscribeTimeout)
	defer cancel()
	if err := ps.Unsubscribe(ctx, ch); err != nil {
		// go-redis forgot the channel anyway, so a reconnect will not
		// subscribe it again; what arrives for it until then is dropped.
		b.log.Debug("redis backplane: unsubscribe after a failed subscribe", "channel", ch, "err", err)
	}
}

// Unsubscribe implements [fanout.Backplane].
func (b *Backplane) Unsubscribe(ctx context.Context, topic string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis backplane: unsubscribe: %w", err)
	}
	ch := b.keys(topic).base
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("redis backplane: unsubscribe: %w", fanout.ErrClosed)
	}
	st := b.subs[ch]
	delete(b.subs, ch)
	ps := b.ps
	b.mu.Unlock()
	if st == nil {
		return nil
	}
	if err := ps.Unsubscribe(ctx, ch); err != nil {
		return b.opError("unsubscribe", err)
	}
	return nil
}

// Delete implements [fanout.Backplane]: one DEL of the topic's keys, which
// Redis runs atomically. Nodes subscribed to the topic's channel stay
// subscribed.
func (b *Backplane) Delete(ctx context.Context, topic string) error {
	if err := b.check(ctx, "delete"); err != nil {
		return err
	}
	if err := b.client.Del(ctx, b.keys(topic).all()...).Err(); err != nil {
		return b.opError("delete", err)
	}
	return nil
}

// Close implements [fanout.Backplane]. It stops the node's Pub/Sub
// connection and waits for its goroutine; it does not close the client.
func (b *Backplane) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.recv = nil
	ps := b.ps
	b.mu.Unlock()
	close(b.done)
	if ps != nil {
		ps.Close()
	}
	b.wg.Wait()
	return nil
}

// loop reads the Pub/Sub connection: it delivers messages, confirms
// subscriptions, pings the connection when it is silent, and resyncs the
// topics of a connection that go-redis re-established.
func (b *Backplane) loop(ps *goredis.PubSub) {
	defer b.wg.Done()
	var (
		pinged  bool // a ping is outstanding
		down    bool // the connection failed and has not answered since
		backoff = minBackoff
	)
	for {
		var (
			msg any
			err error
		)
		if pinged {
			// A timeout now counts as a dead connection, which go-redis
			// then replaces.
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.PingInterval)
			msg, err = ps.Receive(ctx)
			cancel()
		} else {
			msg, err = ps.ReceiveTimeout(context.Background(), b.opts.PingInterval)
		}
		select {
		case <-b.done:
			return
		default:
		}
		if err != nil {
			if !pinged && isTimeout(err) {
				ctx, cancel := context.WithTimeout(context.Background(), b.opts.PingInterval)
				err = ps.Ping(ctx)
				cancel()
				if err == nil {
					pinged = true
					continue
				}
			}
			pinged = false
			if !down {
				down = true
				b.log.Warn("redis backplane: subscription connection lost; reconnecting", "err", err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-b.done:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		pinged = false
		backoff = minBackoff
		if down {
			down = false
			b.log.Info("redis backplane: subscription connection restored")
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				b.confirm(m.Channel)
			}
		case *goredis.Message:
			b.deliver(m)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// confirm handles Redis's confirmation of a channel subscription. The first
// one completes Subscribe; any later one means that go-redis subscribed the
// channel again on a new connection, so messages may have been missed.
func (b *Backplane) confirm(ch string) {
	b.mu.Lock()
	st := b.subs[ch]
	if st == nil {
		b.mu.Unlock()
		return
	}
	if !st.confirmed {
		st.confirmed = true
		close(st.ready)
		b.mu.Unlock()
		return
	}
	recv := b.recv
	b.mu.Unlock()
	b.log.Debug("redis backplane: channel subscribed again; resyncing", "topic", st.topic)
	if recv != nil {
		recv.Resync(st.topic)
	}
}

// deliver hands a message from a channel to the receiver.
func (b *Backplane) deliver(msg *goredis.Message) {
	b.mu.Lock()
	st := b.subs[msg.Channel]
	recv := b.recv
	b.mu.Unlock()
	if st == nil || recv == nil {
		return
	}
	m, err := decodeRecord(st.topic, []byte(msg.Payload))
	if err != nil {
		b.log.Error("redis backplane: undecodable message; resyncing", "topic", st.topic, "err", err)
		recv.Resync(st.topic)
		return
	}
	recv.Deliver(m)
}
