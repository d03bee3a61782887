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
// remembers the idempotency key (one key per ID, which expires with the
// IdempotencyWindow), and publishes the whole message, position
// included, on the topic's channel. Positions are therefore global and
// gap-free, and a node that receives a message needs no further read.
// Concurrent publishes go to Redis in batches, one script call per batch
// (at most 64 publishes, at most two batches in flight per node; with a
// ClusterClient or Ring, one pipeline of a call per publish), so that many
// publishers share round trips, system calls and script calls; a publish
// that finds no other waiting is sent at once. At most 16,384 publishes
// wait for a batch; beyond that (Redis hangs or cannot keep up) a publish
// fails at once with ErrUnavailable.
// History is read from the stream, snapshots from the hash, each with the
// topic's position in one atomic script.
//
// Each node holds one Pub/Sub connection and subscribes to a topic's channel
// only while its hub has local subscribers for it: a node receives only the
// topics it serves, never a firehose.
//
// # Epochs
//
// A topic's epoch is a random name stored with its sequence number, in one
// hash, so that the two are lost together. When they are lost (expired,
// Redis flushed, restarted without persistence, evicted or deleted), the
// next publish starts a new epoch at Seq 1, and clients that resume from
// the old one are told that their position no longer counts: no position
// is handed out twice in one epoch.
//
// Redis may also come back with older data than it acknowledged: restarted
// from an RDB file saved before the last publishes, from an append-only
// file fsynced every second after an OS crash, or a replica promoted
// before it received them. Its Seq is then behind what nodes and clients
// have seen, and the same Seq would name two messages. So every publish
// checks that the topic's position was written by the Redis process that
// runs it (its run_id, new at every start; read once per connection, which
// cannot outlive the process it was opened to, or with a ClusterClient or
// Ring by the script itself): when another process wrote it,
// the publish starts a new epoch, continuing the numbering, drops the
// topic's history and keeps its snapshot under the new epoch. Clients that
// resume then get recovered=false and the snapshot, never recovered=true
// with a hole. The cost: after every Redis restart or failover, lossless or
// not, each topic's next publish starts a new epoch and its history is
// lost; and with a ClusterClient or Ring each publish runs INFO on Redis
// (about 5µs of Redis time). A proxy that multiplexes many clients on one
// Redis connection, or keeps a client's connection across a Redis
// restart, would defeat the check made per connection; plain TCP proxies
// do neither.
// What remains: publishes acknowledged and then lost are lost (clients that
// resumed are told so, clients that got them live keep them); reads
// between the restart and the topic's next publish serve the restored
// data in the old epoch, which is correct for every position it holds. To
// lose nothing acknowledged, run Redis with appendonly yes and appendfsync
// always, and fail over only to replicas that acknowledged the writes
// (WAIT, min-replicas-to-write); see docs/RELIABILITY.md.
//
// # Lifecycle
//
// Every key of a topic has a TTL, so that Redis holds nothing for topics
// that are no longer used:
//
//   - A publish sets the topic's keys to expire after [Options.IdleTTL]
//     (default 24h), and History and Snapshot set them back to it: a topic
//     that nobody publishes to or reads for that long is gone. A client
//     that resumes it gets recovered=false and an empty snapshot, and the
//     next publish starts a new epoch.
//   - The history stream expires [Options.HistoryAge] after the last
//     publish, and reads do not extend it; History trims messages older
//     than HistoryAge before it reads, so history never reaches back
//     further than HistoryAge, even on a silent topic.
//   - A publish sets these TTLs, and trims history by age, at most once
//     per 1/64 of the shorter of HistoryAge and IdleTTL, to that much more
//     than their lifetime: keys expire at most that much later, and a busy
//     topic's publishes cost about what they cost without TTLs.
//   - A final publish (one with the header [fanout.HeaderFinal], made by
//     [fanout.WithFinal]) sets every key to expire after
//     [Options.FinalTTL] (default 10m), and reads then leave that alone.
//     A later publish without it makes the topic live again.
//   - Idempotency keys are forgotten after [Options.IdempotencyWindow],
//     or with the topic when it expires first.
//   - [Backplane.Delete] removes every key of the topic in one command.
//
// Run Redis with maxmemory-policy noeviction: since every key has a TTL,
// a volatile-* policy would evict keys of live topics one at a time, and a
// snapshot hash evicted on its own goes unnoticed.
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
// go-redis retries a command after a network error or a read timeout
// (redis.Options.MaxRetries), and so does the backplane with a batch whose
// connection failed, up to as many times; Redis may run both copies. So
// a publish that returns success is stored exactly once. With a
// *redis.Client, each connection the backplane publishes on has a log in
// Redis ({prefix}:sender:<random>, holding one batch's replies): after a
// failed connection the backplane takes the log away on a new one, returns
// the replies of the publishes that ran and sends only the others again,
// which no earlier copy can then store (docs/DECISIONS.md). With other
// clients, whose pipelines go-redis resends by itself, every publish
// carries an ID, its idempotency key or else a random one remembered for
// one to three minutes: a copy that finds its ID returns the first copy's
// position. A publish that fails (ErrUnavailable) may still have been
// stored; an application that retries it needs an idempotency key to
// avoid a second copy.
//
// Calls end at their context's deadline even when the client waits for
// its own ReadTimeout (as go-redis does unless ContextTimeoutEnabled is
// set): the call then goes on in the background until go-redis gives up,
// and Close waits for it.
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
	"encoding/binary"
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
	// HistoryAge is how long a message stays in history: History trims
	// older ones before it reads, publishes trim them now and then, and
	// the whole stream expires HistoryAge after the topic's last publish.
	// Default: 10m.
	HistoryAge time.Duration
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered, unless the topic expires first. Default: 5m.
	IdempotencyWindow time.Duration
	// IdleTTL is how long a topic's keys (position, snapshot, idempotency
	// keys) outlive its last publish or read (History, Snapshot); then the
	// topic is gone, and its next publish starts a new epoch. A day keeps
	// every topic that a page or a client touches daily, and frees the
	// one-shot topics (a saga that never published its final message)
	// without an operator. Default: 24h.
	IdleTTL time.Duration
	// FinalTTL is how long a topic's keys outlive a final publish (see
	// [fanout.WithFinal]), so that clients that reconnect shortly after a
	// saga ended still get its last state. Reads do not extend it.
	// Default: 10m.
	FinalTTL time.Duration
	// PingInterval is how long the Pub/Sub connection may stay silent
	// before it is pinged; a ping unanswered for as long again marks the
	// connection dead, and it is replaced. Default: 3s.
	PingInterval time.Duration
	// PresenceTTL is how long a presence entry lives unless its node
	// writes it again, which a running node does every PresenceTTL/3: the
	// sessions of a node that died without closing leave presence within
	// PresenceTTL. Default: 30s.
	PresenceTTL time.Duration
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
	// retryWindow is how long the retry ID of a publish without an
	// idempotency key is remembered, at least: far longer than go-redis
	// keeps retrying a command (MaxRetries times its timeouts), which is
	// all it guards against.
	retryWindow = time.Minute
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
	args   scriptArgs
	log    *slog.Logger
	pub    *batcher // sends publishes in batches

	mu     sync.Mutex // guards the fields below
	recv   fanout.Receiver
	closed bool
	ps     *goredis.PubSub      // created with the first subscription
	subs   map[string]*subState // by channel name

	done  chan struct{}  // closed by Close
	wg    sync.WaitGroup // the Pub/Sub loop
	calls sync.WaitGroup // calls abandoned at their deadline (see call)
	// ctxBound: the client bounds its calls by their context (see
	// contextBound).
	ctxBound bool

	ctl  control       // control messages (see control.go)
	pres presenceState // presence.go
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
	args := newScriptArgs(&o)
	return &Backplane{
		client:   client,
		ctxBound: contextBound(client),
		opts:     o,
		args:     args,
		pub:      newBatcher(client, o.Prefix, &args),
		log:      log,
		subs:     make(map[string]*subState),
		done:     make(chan struct{}),
	}
}

// keys names the Redis keys and channel of one topic (see scripts.go).
type keys struct {
	base string    // {prefix:topic}, also the channel
	all  [6]string // pos, stream, snap, idem:, retry, retryold: the publish script's KEYS (idem: takes the ID)
}

// keySuffixes follow the base in the names of a topic's keys.
var keySuffixes = [6]string{":pos", ":stream", ":snap", ":idem:", ":retry", ":retryold"}

// keys builds the names in one string, which they share.
func (b *Backplane) keys(topic string) keys {
	base := "{" + b.opts.Prefix + ":" + topic + "}"
	var sb strings.Builder
	sb.Grow(len(keySuffixes)*len(base) + 32)
	for _, s := range keySuffixes {
		sb.WriteString(base)
		sb.WriteString(s)
	}
	names := sb.String()
	k := keys{base: base}
	off := 0
	for i, s := range keySuffixes {
		n := len(base) + len(s)
		k.all[i] = names[off : off+n]
		off += n
	}
	return k
}

func (k *keys) pos() string    { return k.all[0] }
func (k *keys) stream() string { return k.all[1] }
func (k *keys) snap() string   { return k.all[2] }

// ms returns d in whole milliseconds, at least 1.
func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// scriptArgs are the arguments of the scripts that depend only on the
// options, in ms where they are durations (see scripts.go on TTLs).
type scriptArgs struct {
	historySize, historyAge, idemWindow int64
	idleTTL                             int64 // for reads
	slack                               int64
	ttl, streamTTL                      int64 // of a publish
	finalTTL, finalStreamTTL            int64 // of a final publish
}

func newScriptArgs(o *Options) scriptArgs {
	slack := max(time.Millisecond, min(o.HistoryAge, o.IdleTTL)/64)
	return scriptArgs{
		historySize:    int64(o.HistorySize),
		historyAge:     ms(o.HistoryAge),
		idemWindow:     ms(o.IdempotencyWindow),
		idleTTL:        ms(o.IdleTTL),
		slack:          ms(slack),
		ttl:            ms(o.IdleTTL + slack),
		streamTTL:      ms(min(o.HistoryAge, o.IdleTTL) + slack),
		finalTTL:       ms(o.FinalTTL),
		finalStreamTTL: ms(min(o.HistoryAge, o.FinalTTL)),
	}
}

// header returns the parts of the publish script's header that a's
// defaults fill in.
func (a *scriptArgs) header() publishHeader {
	var h publishHeader
	for i := range h {
		h[i] = ""
	}
	h[hdrIdemWindow] = a.idemWindow
	h[hdrRetryWindow] = ms(retryWindow)
	h[hdrLogTTL] = logTTLArg
	h[hdrHistorySize] = a.historySize
	h[hdrHistoryAge] = a.historyAge
	h[hdrSlack] = a.slack
	h[hdrTTL] = a.ttl
	h[hdrStreamTTL] = a.streamTTL
	return h
}

// opts returns a publish's opts argument of the publish script, for
// history limits and TTLs a: "F size age slack ttl streamTTL".
func (a *scriptArgs) opts(final bool) string {
	ttl, streamTTL, f := a.ttl, a.streamTTL, byte('0')
	if final {
		ttl, streamTTL, f = a.finalTTL, a.finalStreamTTL, '1'
	}
	buf := make([]byte, 0, 64)
	buf = append(buf, f)
	for _, v := range [...]int64{a.historySize, a.historyAge, a.slack, ttl, streamTTL} {
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, v, 10)
	}
	return string(buf)
}

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
	r := &publishReq{
		ctx:     ctx,
		keys:    k.all,
		channel: k.base,
		body:    appendBody(nil, m),
		msgKey:  m.Key,
		idemID:  idempotencyKey,
		done:    make(chan publishRes, 1),
	}
	r.keys[3] += idempotencyKey
	if a := b.argsFor(m); a != &b.args || m.Final() {
		r.opts = a.opts(m.Final())
	}
	// A publish without an idempotency key that go-redis may send
	// again by itself gets a random retry ID, which every copy carries;
	// the batcher's own connections log publishes instead (see
	// publishScript).
	if idempotencyKey == "" && b.pub.single == nil {
		r.rid = retryID()
	}
	res, err := b.pub.do(r)
	if err != nil {
		return fanout.Position{}, b.opError("publish", err)
	}
	epoch, seqText, _ := strings.Cut(res.pos, " ")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return fanout.Position{}, fmt.Errorf("redis backplane: publish: unexpected position %q", res.pos)
	}
	pos := fanout.Position{Epoch: epoch, Seq: seq}
	if res.created == 1 || idempotencyKey == "" {
		// A publish without a key that found its own ID was stored by
		// an earlier copy of this very call, which go-redis retried.
		m.Position = pos
	}
	return pos, nil
}

// retryID returns the ID that makes a publish without an idempotency key
// idempotent under go-redis's retries: 128 random bits after a zero byte,
// so that it names no application's key by accident.
func retryID() string {
	var b [17]byte
	binary.LittleEndian.PutUint64(b[1:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[9:], rand.Uint64())
	return string(b[:])
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
	res, err := b.eval(ctx, "history", historyScript, []string{k.pos(), k.stream(), k.snap()},
		after.Epoch, after.Seq, b.args.historyAge, b.args.idleTTL)
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
	res, err := b.eval(ctx, "snapshot", snapshotScript, []string{k.pos(), k.snap(), k.stream()},
		b.args.idleTTL, b.args.historyAge)
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
	if b.isClosed() && (errors.Is(err, goredis.ErrClosed) || errors.Is(err, fanout.ErrClosed)) {
		return fmt.Errorf("redis backplane: %s: %w", op, fanout.ErrClosed)
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) && !transient(rerr.Error()) {
		return fmt.Errorf("redis backplane: %s: %w", op, err)
	}
	if cc, ok := b.client.(*goredis.ClusterClient); ok {
		// After a failover go-redis keeps sending a slot's commands to
		// the dead primary until a MOVED reply or its reload interval
		// (a minute by default): learn the new primaries now. Reloads
		// are coalesced.
		cc.ReloadState(context.Background())
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
// subscribed. Its idempotency keys expire by themselves: the topic's next
// lineage has another epoch, for which they do not count.
func (b *Backplane) Delete(ctx context.Context, topic string) error {
	if err := b.check(ctx, "delete"); err != nil {
		return err
	}
	k := b.keys(topic)
	_, err := b.call(ctx, "delete", func(ctx context.Context) ([]any, error) {
		return nil, b.client.Del(ctx, k.all[:]...).Err()
	})
	if err != nil {
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
	b.mu.Unlock()
	b.closePresence()
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
	b.closeControl()
	b.wg.Wait()
	b.pub.close()
	b.calls.Wait()
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
	if b.deliverPresence(st.topic, msg.Payload, recv) {
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
