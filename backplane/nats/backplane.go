package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofanout/fanout"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/singleflight"
)

// Options configures a [Backplane]. The zero value is valid: every field
// documents its default. New copies the options. Every node of a cluster
// must use the same options.
type Options struct {
	// Stream names the JetStream stream that keeps history. The snapshot
	// and idempotency streams are named Stream+"_KEYS" and Stream+"_IDEM",
	// the work queue of topics to expire Stream+"_EXPIRE".
	// Default: "FANOUT".
	Stream string
	// Prefix is the first token of every subject the backplane uses; it
	// must be a valid subject token. Deployments that share a NATS account
	// need distinct prefixes and stream names. Default: "fanout".
	Prefix string

	// HistorySize is how many messages each topic keeps. Default: 1024.
	HistorySize int
	// HistoryAge is how long a message stays in history: the MaxAge of
	// the history stream, so the server drops older messages, and a topic
	// silent for that long loses its position too. Default: 10m.
	HistoryAge time.Duration
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered (the stream's duplicate window), at most HistoryAge.
	// Default: 5m.
	IdempotencyWindow time.Duration
	// IdleTTL is how long a topic's stored state outlives its last
	// publish or read (History, Snapshot): then the nodes purge it (see
	// Lifecycle in the package documentation). Default: 24h.
	IdleTTL time.Duration
	// FinalTTL is how long a topic's stored state (history, position,
	// snapshot, idempotency records) outlives a final publish, one with
	// the header [fanout.HeaderFinal]; the nodes purge it then (see
	// Lifecycle in the package documentation). Default: 10m.
	FinalTTL time.Duration
	// Replicas is the streams' replication factor in a NATS cluster.
	// Default: 1.
	Replicas int
	// MemoryStorage keeps the streams in the servers' memory instead of on
	// disk. On nats-server 2.9, finding a topic's last message in memory
	// storage takes time that grows with the stream: prefer file storage
	// there. Default: false (file storage).
	MemoryStorage bool
	// Timeout bounds each operation whose context has no deadline.
	// Default: 5s.
	Timeout time.Duration
	// PresenceTTL is how long a presence entry lives unless its node
	// writes it again, which a running node does every PresenceTTL/3: the
	// sessions of a node that died without closing leave presence within
	// PresenceTTL. Default: 30s.
	PresenceTTL time.Duration
	// LiveBuffer bounds the live messages of one topic that a node holds
	// before delivering them; beyond it, it drops messages and resyncs the
	// topic from history. Default: 65536.
	LiveBuffer int
}

func (o *Options) setDefaults() {
	if o.Stream == "" {
		o.Stream = "FANOUT"
	}
	if o.Prefix == "" {
		o.Prefix = "fanout"
	}
	if o.HistorySize <= 0 {
		o.HistorySize = 1024
	}
	if o.HistoryAge <= 0 {
		o.HistoryAge = 10 * time.Minute
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = 5 * time.Minute
	}
	if o.IdleTTL <= 0 {
		o.IdleTTL = 24 * time.Hour
	}
	if o.FinalTTL <= 0 {
		o.FinalTTL = 10 * time.Minute
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.LiveBuffer <= 0 {
		o.LiveBuffer = 65536
	}
}

// Backplane is one node's handle on a NATS backplane: give each hub its own
// with [New]. It implements [fanout.Backplane]; all its methods are safe for
// concurrent use.
type Backplane struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options
	subj subjects

	// Stream handles, set by the first successful ensureStreams; nil
	// until then. Reset when a stream turns out to be missing.
	streams atomic.Pointer[streamSet]
	ensure  singleflight.Group       // one ensureStreams at a time
	made    map[string]chan struct{} // per sweeper, capacity 1: ensureStreams stored a streamSet

	mu       sync.Mutex // guards the fields below
	recv     fanout.Receiver
	opened   bool
	closed   bool
	topics   map[string]*liveTopic              // topics subscribed on this node
	ops      map[uint64]context.CancelCauseFunc // in-flight operations, cancelled when the connection drops
	nextOp   uint64
	slots    map[string]*pubSlot        // per-topic publish serialisation
	absorbed map[string]fanout.Position // per topic, the latest keyed message known to be in the snapshot stream
	marked   map[string]time.Time       // per topic, when this node last left an idle mark
	heads    map[string]*stored         // per topic, the last message known to be stored
	// floors holds, per topic, the latest position the node saw stored.
	// Unlike heads it survives reconnects, so that a stream that comes
	// back older than that is noticed (see publishOnce).
	floors  map[string]fanout.Position
	inc     incarnation // the storage's, as last read (see incarnation.go)
	reconns uint64      // the connection's reconnect count last seen

	status    chan nats.Status     // registered with the connection in Open
	adv       chan *nats.Msg       // advisories about the streams, from Open
	advSubs   []*nats.Subscription // their subscriptions
	sweepStop context.CancelFunc   // stops the sweeper; set by Open
	forgot    chan struct{}        // capacity 1: forget ran (for tests)
	done      chan struct{}        // closed by Close
	wg        sync.WaitGroup       // the watcher, sweeper and delivery goroutines

	ctl  control       // control messages (see control.go)
	pres presenceState // presence.go
}

type streamSet struct {
	hist, keys, idem, expire, live jetstream.Stream
}

// New returns a node of the backplane that uses nc, which the caller
// configured (servers, credentials, TLS, reconnects) and still owns: Close
// does not close it, and nc must stay open until Close returns. New does
// no I/O; the streams are created or updated on first use. New panics when
// nc is nil or opts names an invalid prefix or stream.
func New(nc *nats.Conn, opts *Options) *Backplane {
	if nc == nil {
		panic("nats backplane: nil connection")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
	if !validToken(o.Prefix) {
		panic(fmt.Sprintf("nats backplane: invalid prefix %q", o.Prefix))
	}
	if !validToken(o.Stream) || strings.ContainsAny(o.Stream, "/\\") {
		panic(fmt.Sprintf("nats backplane: invalid stream name %q", o.Stream))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		panic("nats backplane: " + err.Error()) // only for invalid options, and there are none
	}
	return &Backplane{
		nc:       nc,
		js:       js,
		opts:     o,
		subj:     subjects{prefix: o.Prefix},
		topics:   make(map[string]*liveTopic),
		ops:      make(map[uint64]context.CancelCauseFunc),
		slots:    make(map[string]*pubSlot),
		absorbed: make(map[string]fanout.Position),
		marked:   make(map[string]time.Time),
		heads:    make(map[string]*stored),
		floors:   make(map[string]fanout.Position),
		done:     make(chan struct{}),
		forgot:   make(chan struct{}, 1),
		made:     map[string]chan struct{}{kindFinal: make(chan struct{}, 1), kindIdle: make(chan struct{}, 1)},
	}
}

func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// Open implements [fanout.Backplane]: it starts watching the connection so
// that topics resync after a reconnect.
func (b *Backplane) Open(r fanout.Receiver) error {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return fmt.Errorf("nats backplane: open: %w", fanout.ErrClosed)
	case b.opened:
		b.mu.Unlock()
		return errors.New("nats backplane: open: already opened")
	}
	b.opened = true
	b.mu.Unlock()

	// Advisories tell when a stream is deleted or created, which makes
	// what this node remembers about the streams stale.
	adv := make(chan *nats.Msg, 16)
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, sub := range subs {
			sub.Unsubscribe()
		}
	}
	for _, s := range []string{b.opts.Stream, b.opts.Stream + "_KEYS"} {
		sub, err := b.nc.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.*."+s, adv)
		if err != nil {
			unsubscribe()
			return fmt.Errorf("nats backplane: open: %w", err)
		}
		subs = append(subs, sub)
	}
	status := b.nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	reconns := b.nc.Stats().Reconnects

	b.mu.Lock()
	if b.closed { // Close ran meanwhile
		b.mu.Unlock()
		unsubscribe()
		b.nc.RemoveStatusListener(status)
		return fmt.Errorf("nats backplane: open: %w", fanout.ErrClosed)
	}
	b.recv, b.reconns = r, reconns
	b.adv, b.advSubs, b.status = adv, subs, status
	sweepCtx, sweepStop := context.WithCancel(context.Background())
	b.sweepStop = sweepStop
	b.wg.Add(3)
	b.mu.Unlock()
	go b.watch()
	go b.sweep(sweepCtx, kindFinal)
	go b.sweep(sweepCtx, kindIdle)
	return nil
}

// watch follows the connection's status: while it is down, operations fail
// at once; after a reconnect, every subscribed topic resyncs, since messages
// published meanwhile were not delivered.
func (b *Backplane) watch() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case <-b.adv:
			b.forget()
			continue
		case _, ok := <-b.status:
			if !ok {
				return
			}
		}
		up := b.nc.Status() == nats.CONNECTED
		reconns := b.nc.Stats().Reconnects
		b.mu.Lock()
		if !up {
			for _, cancel := range b.ops {
				cancel(errDisconnected)
			}
			b.mu.Unlock()
			continue
		}
		resync := reconns != b.reconns
		b.reconns = reconns
		var topics []string
		if resync {
			topics = make([]string, 0, len(b.topics))
			for t := range b.topics {
				topics = append(topics, t)
			}
		}
		r := b.recv
		b.mu.Unlock()
		if resync {
			// Streams may have been replaced meanwhile.
			b.forget()
		}
		for _, t := range topics {
			r.Resync(t)
		}
	}
}

// Close implements [fanout.Backplane]. It stops delivery and waits for the
// node's goroutines; it does not close the NATS connection.
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
	for _, cancel := range b.ops {
		cancel(fanout.ErrClosed)
	}
	topics := b.topics
	b.topics = make(map[string]*liveTopic)
	status, advSubs := b.status, b.advSubs
	sweepStop := b.sweepStop
	b.mu.Unlock()
	close(b.done)
	b.closeControl()
	if sweepStop != nil {
		sweepStop()
	}
	for _, lt := range topics {
		lt.stop()
	}
	if status != nil {
		b.nc.RemoveStatusListener(status)
		for _, sub := range advSubs {
			sub.Unsubscribe()
		}
	}
	b.wg.Wait()
	return nil
}

// errDisconnected is the cause of operations cancelled by a disconnect.
var errDisconnected = errors.New("nats: disconnected")

// op is one operation in flight: a context that ends with the caller's,
// after Options.Timeout when the caller's has no deadline, when the
// connection drops, or when the node closes.
type op struct {
	ctx    context.Context
	parent context.Context
	name   string
	b      *Backplane
	id     uint64
	cancel context.CancelCauseFunc
	stop   context.CancelFunc
}

// begin starts an operation. It fails at once when ctx is done, the node
// is closed or the connection is down.
func (b *Backplane) begin(ctx context.Context, name string) (*op, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o := &op{parent: ctx, name: name, b: b}
	var cctx context.Context
	cctx, o.cancel = context.WithCancelCause(ctx)
	o.ctx, o.stop = cctx, func() {}
	if _, ok := ctx.Deadline(); !ok {
		o.ctx, o.stop = context.WithTimeoutCause(cctx, b.opts.Timeout, errTimeout)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		o.release()
		return nil, fmt.Errorf("nats backplane: %s: %w", name, fanout.ErrClosed)
	}
	b.nextOp++
	o.id = b.nextOp
	b.ops[o.id] = o.cancel
	b.mu.Unlock()
	// The connection's own status decides, not what the watcher has seen
	// so far: it cancels registered operations when it sees a drop.
	if b.nc.Status() != nats.CONNECTED {
		o.end()
		return nil, fmt.Errorf("nats backplane: %s: %w: not connected", name, fanout.ErrUnavailable)
	}
	return o, nil
}

var errTimeout = errors.New("nats backplane: timeout")

func (o *op) release() {
	o.stop()
	o.cancel(nil)
}

// end finishes the operation.
func (o *op) end() {
	o.b.mu.Lock()
	delete(o.b.ops, o.id)
	o.b.mu.Unlock()
	o.release()
}

// fail turns err, from a call made with o.ctx, into the operation's error:
// the caller's context error, ErrClosed, ErrUnavailable for anything that
// says the server cannot be reached, or err itself.
func (o *op) fail(err error) error {
	if perr := o.parent.Err(); perr != nil {
		return fmt.Errorf("nats backplane: %s: %w", o.name, perr)
	}
	cause := context.Cause(o.ctx)
	switch {
	case errors.Is(cause, fanout.ErrClosed):
		return fmt.Errorf("nats backplane: %s: %w", o.name, fanout.ErrClosed)
	case cause != nil:
		return fmt.Errorf("nats backplane: %s: %w: %w", o.name, fanout.ErrUnavailable, cause)
	case unavailable(err):
		return fmt.Errorf("nats backplane: %s: %w: %w", o.name, fanout.ErrUnavailable, err)
	}
	return fmt.Errorf("nats backplane: %s: %w", o.name, err)
}

// unavailable reports whether err says that NATS or JetStream cannot be
// reached or cannot serve just now.
func unavailable(err error) bool {
	for _, e := range []error{
		nats.ErrConnectionClosed, nats.ErrConnectionDraining, nats.ErrConnectionReconnecting,
		nats.ErrNoServers, nats.ErrTimeout, nats.ErrNoResponders, nats.ErrDisconnected,
		nats.ErrStaleConnection, nats.ErrReconnectBufExceeded,
		jetstream.ErrNoStreamResponse, jetstream.ErrJetStreamNotEnabled,
		jetstream.ErrJetStreamNotEnabledForAccount,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 503
}

// ensureStreams returns the stream handles, creating or updating the
// streams when this node has not done so yet.
func (b *Backplane) ensureStreams(ctx context.Context) (*streamSet, error) {
	if s := b.streams.Load(); s != nil {
		return s, nil
	}
	// Do runs in the first caller's goroutine, bounded by its context;
	// concurrent callers share its result.
	v, err, _ := b.ensure.Do("streams", func() (any, error) {
		if s := b.streams.Load(); s != nil {
			return s, nil
		}
		s, err := b.createStreams(ctx)
		if err != nil {
			return nil, err
		}
		b.streams.Store(s)
		for _, c := range b.made {
			select {
			case c <- struct{}{}:
			default:
			}
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*streamSet), nil
}

func (b *Backplane) createStreams(ctx context.Context) (*streamSet, error) {
	o := b.opts
	storage := jetstream.FileStorage
	if o.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	histAge := o.HistoryAge
	dup := min(o.IdempotencyWindow, histAge)
	p := o.Prefix
	var s streamSet
	var err error
	if s.hist, err = b.makeStream(ctx, jetstream.StreamConfig{
		Name:              o.Stream,
		Description:       "fanout: topic history",
		Subjects:          []string{p + ".h.*"},
		MaxMsgsPerSubject: int64(o.HistorySize),
		MaxAge:            histAge,
		Duplicates:        dup,
		Storage:           storage,
		Replicas:          o.Replicas,
		Discard:           jetstream.DiscardOld,
		RePublish:         &jetstream.RePublish{Source: p + ".h.*", Destination: p + ".l.{{wildcard(1)}}"},
	}); err != nil {
		return nil, err
	}
	if s.keys, err = b.makeStream(ctx, jetstream.StreamConfig{
		Name:              o.Stream + "_KEYS",
		Description:       "fanout: latest message per topic and key",
		Subjects:          []string{p + ".k.*.*"},
		MaxMsgsPerSubject: 1,
		Storage:           storage,
		Replicas:          o.Replicas,
		Discard:           jetstream.DiscardOld,
	}); err != nil {
		return nil, err
	}
	if s.idem, err = b.makeStream(ctx, jetstream.StreamConfig{
		Name:              o.Stream + "_IDEM",
		Description:       "fanout: positions of publishes with an idempotency key",
		Subjects:          []string{p + ".i.*.*"},
		MaxMsgsPerSubject: 1,
		MaxAge:            o.IdempotencyWindow,
		Storage:           storage,
		Replicas:          o.Replicas,
		Discard:           jetstream.DiscardOld,
	}); err != nil {
		return nil, err
	}
	if s.expire, err = b.makeStream(ctx, jetstream.StreamConfig{
		Name:        o.Stream + "_EXPIRE",
		Description: "fanout: topics to purge when idle or ended",
		Subjects:    []string{p + ".x.*.*"},
		Retention:   jetstream.WorkQueuePolicy,
		// The latest mark of a topic and kind replaces the earlier.
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		// A safety net: marks are taken long before.
		MaxAge:   2 * (o.FinalTTL + o.IdleTTL),
		Storage:  storage,
		Replicas: o.Replicas,
	}); err != nil {
		return nil, err
	}
	if s.live, err = b.makeStream(ctx, b.liveStream()); err != nil {
		return nil, err
	}
	return &s, nil
}

// makeStream creates the stream, or finds it as cfg describes it, and
// updates it only when its settings differ: every node makes the streams
// when it starts, and an update for nothing is a request the whole
// JetStream cluster agrees on (nats-server 2.9 can also crash on
// concurrent updates of one stream).
func (b *Backplane) makeStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := b.js.CreateStream(ctx, cfg)
	if subjectsOverlap(err) {
		// When nodes create the stream at the same time, the server can
		// answer the later creates that their subjects overlap with the
		// stream the first one made. Try once more when the stream that
		// has them is this one.
		if _, serr := b.js.Stream(ctx, cfg.Name); serr == nil {
			s, err = b.js.CreateStream(ctx, cfg)
		}
	}
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// It exists with other settings: this node's options win, as
		// they do for every node that starts with new options.
		return b.js.UpdateStream(ctx, cfg)
	}
	return s, err
}

// jsErrSubjectsOverlap is the error code of a stream create whose subjects
// another stream has.
const jsErrSubjectsOverlap jetstream.ErrorCode = 10065

func subjectsOverlap(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrSubjectsOverlap
}

// lost forgets the stream handles after a stream turned out to be missing,
// so that the next publish recreates the streams.
func (b *Backplane) lost() {
	b.streams.Store(nil)
	b.forget()
}

// forget drops what the node remembers about the streams' contents.
func (b *Backplane) forget() {
	b.mu.Lock()
	clear(b.absorbed)
	clear(b.heads)
	b.inc = incarnation{}
	b.mu.Unlock()
	select {
	case b.forgot <- struct{}{}:
	default:
	}
}

// streamMissing reports whether err says that a stream does not exist.
func streamMissing(err error) bool {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound
}

// newEpoch returns a random epoch name.
func newEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
