package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofanout/fanout"
	goredis "github.com/redis/go-redis/v9"
)

// Publishes are sent in batches: concurrent publishes queue, and each
// batch goes to Redis in one pipeline of script calls, so that Redis reads,
// and the client writes and reads, many publishes per system call. No
// publish waits for a batch to fill: a sender starts as soon as a publish
// arrives and takes whatever is queued; what arrives while its pipeline is
// in flight goes in the next one. At most maxPipelines pipelines are in
// flight per Backplane, each of at most maxBatch publishes; the queue holds
// one entry per Publish call that waits for its reply, at most maxQueued,
// and an entry whose caller gave up is dropped unsent.
//
// With a *goredis.Client, each sender owns a connection of the client's
// pool (client.Conn) for as long as it works, and keeps it when idle (so
// the backplane holds up to maxPipelines connections of the pool, at most
// a quarter of its PoolSize; with a PoolSize under 4 it works as with
// other clients). It reads Redis's run_id on the connection once, when it
// opens: a connection never outlives the Redis process it
// was opened to, so every script sent on it runs in that process, and the
// script need not read the run_id itself (see publishScript). A sender
// whose connection fails drops it and sends the batch again on a new one,
// up to the client's MaxRetries times; every copy carries the same retry
// or idempotency ID, so a publish is stored once. With any other client (a
// ClusterClient, a Ring), a batch is one client.Pipelined call, which
// go-redis splits by node, redirects and retries itself; the script then
// reads the run_id.
const (
	maxBatch     = 64
	maxPipelines = 2
	// maxQueued bounds the publishes that wait for a pipeline: beyond
	// it (Redis hangs, or cannot keep up), a publish fails at once with
	// ErrUnavailable.
	maxQueued = 16384
)

// publishReq is one queued publish.
type publishReq struct {
	ctx  context.Context
	keys []string
	args publishArgs
	// sent counts the attempts to send it.
	sent int
	done chan publishRes // capacity 1
}

type publishRes struct {
	reply []any
	err   error
}

// batcher queues publishes and runs their senders.
type batcher struct {
	client goredis.UniversalClient
	// single is client when it is a *goredis.Client: senders own
	// connections and read the run_id once per connection.
	single *goredis.Client
	// pipelines bounds the pipelines in flight, and the connections that
	// senders keep: at most a quarter of the client's pool.
	pipelines int
	maxQueued int         // publishes that may wait for a pipeline
	retries   int         // sends of a publish after the first, on a failed connection
	warm      atomic.Bool // the client made a connection before the first Conn
	minWait   time.Duration
	maxWait   time.Duration

	mu      sync.Mutex // guards the fields below
	queue   []*publishReq
	senders int
	conns   []*senderConn // idle, at most pipelines
	closed  bool
	wg      sync.WaitGroup // senders
}

func newBatcher(c goredis.UniversalClient) *batcher {
	q := &batcher{client: c, pipelines: maxPipelines, maxQueued: maxQueued, minWait: 8 * time.Millisecond, maxWait: 512 * time.Millisecond}
	if single, ok := c.(*goredis.Client); ok && single.Options().PoolSize/4 > 0 {
		q.single = single
		q.pipelines = min(maxPipelines, single.Options().PoolSize/4)
		o := single.Options()
		q.retries = max(0, o.MaxRetries)
		if o.MinRetryBackoff > 0 {
			q.minWait = o.MinRetryBackoff
		}
		if o.MaxRetryBackoff > 0 {
			q.maxWait = o.MaxRetryBackoff
		}
	}
	return q
}

// do queues a publish and waits for its reply or the end of ctx.
func (q *batcher) do(ctx context.Context, keys []string, args *publishArgs) ([]any, error) {
	r := &publishReq{ctx: ctx, keys: keys, args: *args, done: make(chan publishRes, 1)}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, fanout.ErrClosed
	}
	if len(q.queue) >= q.maxQueued {
		q.dropAbandoned()
		if n := len(q.queue); n >= q.maxQueued {
			q.mu.Unlock()
			return nil, fmt.Errorf("%w: %d publishes wait for Redis", fanout.ErrUnavailable, n)
		}
	}
	q.queue = append(q.queue, r)
	if q.senders < q.pipelines {
		q.senders++
		q.wg.Add(1)
		go q.send()
	}
	q.mu.Unlock()
	select {
	case res := <-r.done:
		return res.reply, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close stops taking publishes, waits for the senders and closes their
// connections.
func (q *batcher) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wg.Wait()
	q.mu.Lock()
	conns := q.conns
	q.conns = nil
	q.mu.Unlock()
	for _, c := range conns {
		c.conn.Close()
	}
}

// take removes the next batch from the queue, answering the publishes
// whose caller gave up; it returns nil when the queue is empty.
func (q *batcher) take() []*publishReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	var batch []*publishReq
	n := 0
	for _, r := range q.queue {
		if len(batch) == maxBatch {
			break
		}
		n++
		if err := r.ctx.Err(); err != nil {
			r.done <- publishRes{err: err}
			continue
		}
		batch = append(batch, r)
	}
	clear(q.queue[:n])
	q.queue = q.queue[n:]
	if len(q.queue) == 0 {
		q.queue = nil
	}
	return batch
}

// dropAbandoned answers and drops the queued publishes whose caller gave
// up. q.mu is held.
func (q *batcher) dropAbandoned() {
	kept := q.queue[:0]
	for _, r := range q.queue {
		if err := r.ctx.Err(); err != nil {
			r.done <- publishRes{err: err}
			continue
		}
		kept = append(kept, r)
	}
	clear(q.queue[len(kept):])
	q.queue = kept
}

// requeue puts publishes back at the head of the queue.
func (q *batcher) requeue(rs []*publishReq) {
	q.mu.Lock()
	q.queue = append(rs[:len(rs):len(rs)], q.queue...)
	q.mu.Unlock()
}

// send is a sender: it sends batches until the queue is empty.
func (q *batcher) send() {
	defer q.wg.Done()
	var sc *senderConn
	for {
		batch := q.take()
		if batch == nil {
			q.mu.Lock()
			if len(q.queue) > 0 { // requeued or queued since take
				q.mu.Unlock()
				continue
			}
			q.senders--
			if sc != nil && len(q.conns) < q.pipelines && !q.closed {
				q.conns = append(q.conns, sc)
				sc = nil
			}
			q.mu.Unlock()
			if sc != nil {
				sc.conn.Close()
			}
			return
		}
		if q.single == nil {
			q.sendPipelined(batch)
			continue
		}
		if sc == nil {
			sc = q.idleConn()
		}
		sc = q.sendOn(sc, batch)
	}
}

// idleConn returns an idle connection, or nil.
func (q *batcher) idleConn() *senderConn {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := len(q.conns); n > 0 {
		sc := q.conns[n-1]
		q.conns = q.conns[:n-1]
		return sc
	}
	return nil
}

// senderConn is a connection that a sender owns, with the run_id of the
// Redis process it is connected to.
type senderConn struct {
	conn  *goredis.Conn
	runID string
}

// batchContext returns a context for a pipeline that carries batch: it
// ends at the latest deadline among them, and never when one of them has
// none; a batch of one uses its publish's context.
func batchContext(batch []*publishReq) (context.Context, context.CancelFunc) {
	if len(batch) == 1 {
		return batch[0].ctx, func() {}
	}
	var latest time.Time
	for _, r := range batch {
		d, ok := r.ctx.Deadline()
		if !ok {
			return context.Background(), func() {}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// open opens a connection for a sender: it reads the run_id and loads the
// publish script on it.
func (q *batcher) open(ctx context.Context) (*senderConn, error) {
	if !q.warm.Load() {
		// A connection of a client.Conn sets the client's options up
		// with a lock of its own (go-redis 9.23: the mode of maintenance
		// notifications, on a Redis that does not know them): let the
		// client settle them first, through a connection of its own.
		if err := q.single.Ping(ctx).Err(); err != nil {
			return nil, err
		}
		q.warm.Store(true)
	}
	conn := q.single.Conn()
	var info *goredis.StringCmd
	_, err := conn.Pipelined(ctx, func(p goredis.Pipeliner) error {
		info = p.Info(ctx, "server")
		p.ScriptLoad(ctx, publishSource) // not Script.Load, which takes the hash of a reply not yet read
		return nil
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	text := info.Val()
	at := strings.Index(text, "run_id:")
	if at < 0 || len(text) < at+7+40 {
		conn.Close()
		return nil, errors.New("INFO server has no run_id")
	}
	return &senderConn{conn: conn, runID: text[at+7 : at+7+40]}, nil
}

// sendOn sends batch on sc (a new connection when sc is nil) and answers
// its publishes. It returns the connection to go on with, nil when it
// failed.
func (q *batcher) sendOn(sc *senderConn, batch []*publishReq) *senderConn {
	ctx, cancel := batchContext(batch)
	defer cancel()
	for _, r := range batch {
		r.sent++
	}
	if sc == nil {
		var err error
		if sc, err = q.open(ctx); err != nil {
			q.retry(batch, err)
			return nil
		}
	}
	for _, r := range batch {
		r.args[argRunID] = sc.runID
		if r.sent > 1 {
			r.args[argResent] = "1"
		}
	}
	var one [1]*goredis.Cmd
	cmds := one[:]
	if len(batch) == 1 { // no pipeline: what a lone publish costs
		r := batch[0]
		one[0] = sc.conn.EvalSha(ctx, publishHash, r.keys, r.args[:]...)
	} else {
		cmds = make([]*goredis.Cmd, len(batch))
		_, _ = sc.conn.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, r := range batch {
				cmds[i] = p.EvalSha(ctx, publishHash, r.keys, r.args[:]...)
			}
			return nil
		})
	}
	var (
		again  []*publishReq
		err    error // of the first publish to send again
		broken bool
	)
	for i, r := range batch {
		e := cmds[i].Err()
		switch {
		case e == nil:
			r.done <- publishRes{reply: sliceOf(cmds[i])}
			continue
		case isNoScript(e):
			// It did not run: the script was flushed. The next
			// connection loads it again.
			broken = true
		case isRedisError(e) && !retryable(e):
			r.done <- publishRes{err: e}
			continue
		case !isRedisError(e):
			broken = true
		}
		if err == nil {
			err = e
		}
		again = append(again, r)
	}
	if broken {
		sc.conn.Close()
		sc = nil
	}
	if len(again) > 0 {
		q.retry(again, err)
	}
	return sc
}

// retry queues again the publishes of a batch whose connection failed,
// those that may be sent again, after a backoff; it fails the others with
// err.
func (q *batcher) retry(batch []*publishReq, err error) {
	var again []*publishReq
	most := 0
	for _, r := range batch {
		switch {
		case r.ctx.Err() != nil:
			r.done <- publishRes{err: r.ctx.Err()}
		case r.sent > q.retries:
			r.done <- publishRes{err: err}
		default:
			again = append(again, r)
			most = max(most, r.sent)
		}
	}
	if len(again) == 0 {
		return
	}
	if most > 0 {
		wait := q.minWait << min(most-1, 16)
		time.Sleep(min(wait, q.maxWait))
	}
	q.requeue(again)
}

// sendPipelined sends batch in one client.Pipelined call, which go-redis
// splits by node, and answers its publishes.
func (q *batcher) sendPipelined(batch []*publishReq) {
	ctx, cancel := batchContext(batch)
	defer cancel()
	cmds := make([]*goredis.Cmd, len(batch))
	_, _ = q.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, r := range batch {
			r.args[argRunID] = ""
			r.args[argResent] = "1" // go-redis may send it again
			cmds[i] = p.EvalSha(ctx, publishHash, r.keys, r.args[:]...)
		}
		return nil
	})
	for i, r := range batch {
		cmd := cmds[i]
		if isNoScript(cmd.Err()) {
			// Run loads it on every node that lacks it.
			cmd = publishScript.Run(r.ctx, q.client, r.keys, r.args[:]...)
		}
		if err := cmd.Err(); err != nil {
			r.done <- publishRes{err: err}
			continue
		}
		r.done <- publishRes{reply: sliceOf(cmd)}
	}
}

// sliceOf returns a script's reply as a slice; a reply of another shape
// gives nil, which the caller reports.
func sliceOf(cmd *goredis.Cmd) []any {
	s, err := cmd.Slice()
	if err != nil {
		return nil
	}
	return s
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// isRedisError reports whether err is an error reply of Redis, which says
// that the connection works.
func isRedisError(err error) bool {
	var rerr goredis.Error
	return errors.As(err, &rerr)
}

// retryable reports whether a Redis error reply says that the script did
// not run and may run later (as go-redis retries them).
func retryable(err error) bool {
	msg := err.Error()
	for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
