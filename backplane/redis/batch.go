package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofanout/fanout"
	goredis "github.com/redis/go-redis/v9"
)

// Publishes are sent in batches: concurrent publishes queue, and each
// batch goes to Redis in one call of the publish script (or, with a
// cluster or ring, one pipeline of calls), so that Redis runs one script,
// and the client writes and reads one command, for many publishes. No
// publish waits for a batch to fill: a waiting sender wakes as soon as a
// publish arrives and takes whatever is queued; what arrives while its
// batch is in flight goes in the next one. At most maxPipelines batches
// are in flight per Backplane (one per sender), each of at most maxBatch
// publishes; the queue holds
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
// script need not read the run_id itself (see publishScript).
//
// Each such connection has a log in Redis, {prefix}:sender:<random>, a
// list that the publish script appends each publish's reply to, and that
// must exist for the script to write anything (see publishScript). A
// sender whose connection fails while replies are outstanding drops it,
// and on a new connection first takes the old log away (recoverScript):
// the publishes it holds ran, and get their replies from it; those it
// does not hold never will run, since a copy that reaches Redis later
// finds no log and stops, so they are sent again as new. A publish is
// thus stored once without a record per publish beyond its batch, and
// is sent up to the client's MaxRetries times more. With any other client
// (a ClusterClient, a Ring), a batch is one client.Pipelined call of a
// script call per publish, which go-redis splits by node, redirects and
// retries itself; each publish then carries a retry ID (see
// publishScript), and the script reads the run_id.
const (
	maxBatch     = 64
	maxPipelines = 2
	// maxQueued bounds the publishes that wait for a batch: beyond
	// it (Redis hangs, or cannot keep up), a publish fails at once with
	// ErrUnavailable.
	maxQueued = 16384
	// logTTL is how long a sender's log outlives the sender's last
	// batch: far longer than a connection's failure takes to handle.
	logTTL = time.Hour
)

// publishReq is one queued publish.
type publishReq struct {
	ctx context.Context
	// keys are the topic's pos, stream, snap, idem:ID (idem: without an
	// idempotency key), retry and retryold.
	keys [6]string
	// channel, body, msgKey, idemID and opts are the publish's arguments
	// of the publish script; rid is its retry ID, "" when it has none.
	channel string
	body    []byte
	msgKey  string
	idemID  string
	opts    string
	rid     string
	// sent counts the attempts to send it.
	sent int
	// log and n name the entry of a log that the publish was sent with
	// on a connection that failed before its reply came: log is "" when
	// the publish has not run (or it was answered).
	log  string
	n    int64
	done chan publishRes // capacity 1
}

// publishRes is the outcome of a publish: created (1 for a new message,
// 0 for one published before under its idempotency key) and its position
// "epoch seq", or an error.
type publishRes struct {
	created int64
	pos     string
	err     error
}

// batcher queues publishes and runs their senders.
type batcher struct {
	client goredis.UniversalClient
	prefix string // of the senders' logs
	// header holds the publish script's arguments that depend on the
	// options only.
	header publishHeader
	// single is client when it is a *goredis.Client: senders own
	// connections and read the run_id once per connection.
	single *goredis.Client
	// pipelines bounds the senders, so the batches in flight and the
	// connections that senders keep: at most a quarter of the client's
	// pool.
	pipelines int
	maxQueued int         // publishes that may wait for a batch
	retries   int         // sends of a publish after the first, on a failed connection
	warm      atomic.Bool // the client made a connection before the first Conn
	minWait   time.Duration
	maxWait   time.Duration

	// wake carries a token to the senders that wait for publishes; a
	// token still there when do would send another wakes one already.
	wake chan struct{}
	stop chan struct{} // closed by close

	mu      sync.Mutex // guards the fields below
	queue   []*publishReq
	senders int // running, at most pipelines
	idle    int // senders that wait for publishes
	closed  bool
	wg      sync.WaitGroup // senders
}

func newBatcher(c goredis.UniversalClient, prefix string, a *scriptArgs) *batcher {
	q := &batcher{client: c, prefix: prefix, header: a.header(), pipelines: maxPipelines, maxQueued: maxQueued, minWait: 8 * time.Millisecond, maxWait: 512 * time.Millisecond, stop: make(chan struct{})}
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
	q.wake = make(chan struct{}, q.pipelines)
	return q
}

// do queues a publish and waits for its outcome or the end of its
// context.
func (q *batcher) do(r *publishReq) (publishRes, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return publishRes{}, fanout.ErrClosed
	}
	if len(q.queue) >= q.maxQueued {
		q.dropAbandoned()
		if n := len(q.queue); n >= q.maxQueued {
			q.mu.Unlock()
			return publishRes{}, fmt.Errorf("%w: %d publishes wait for Redis", fanout.ErrUnavailable, n)
		}
	}
	q.queue = append(q.queue, r)
	switch {
	case q.idle > 0:
		select {
		case q.wake <- struct{}{}:
		default: // a token waits already
		}
	case q.senders < q.pipelines:
		q.senders++
		q.wg.Add(1)
		go q.send()
	}
	q.mu.Unlock()
	select {
	case res := <-r.done:
		return res, res.err
	case <-r.ctx.Done():
		return publishRes{}, r.ctx.Err()
	}
}

// close stops taking publishes, and waits for the senders to send what is
// queued and close their connections.
func (q *batcher) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.stop)
	}
	q.mu.Unlock()
	q.wg.Wait()
}

// drop deletes the connection's log, which holds nothing that a caller
// waits for, and closes the connection.
func (sc *senderConn) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sc.conn.Del(ctx, sc.log)
	sc.conn.Close()
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
		if !abandoned(r) {
			batch = append(batch, r)
		}
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
		if !abandoned(r) {
			kept = append(kept, r)
		}
	}
	clear(q.queue[len(kept):])
	q.queue = kept
}

// abandoned answers r with its context's error and reports true when its
// caller gave up.
func abandoned(r *publishReq) bool {
	err := r.ctx.Err()
	if err != nil {
		r.done <- publishRes{err: err}
	}
	return err != nil
}

// requeue puts publishes back at the head of the queue.
func (q *batcher) requeue(rs []*publishReq) {
	q.mu.Lock()
	q.queue = append(rs[:len(rs):len(rs)], q.queue...)
	q.mu.Unlock()
}

// send is a sender: it sends batches as publishes come, and waits for
// them in between, keeping its connection, until close. A sender runs for
// as long as the backplane, so that a lone publish neither starts a
// goroutine nor grows its stack.
func (q *batcher) send() {
	defer q.wg.Done()
	var sc *senderConn
	for {
		batch := q.take()
		if batch != nil {
			if q.single == nil {
				q.sendPipelined(batch)
			} else {
				sc = q.sendOn(sc, batch)
			}
			continue
		}
		q.mu.Lock()
		switch {
		case len(q.queue) > 0: // requeued or queued since take
			q.mu.Unlock()
			continue
		case q.closed:
			q.senders--
			q.mu.Unlock()
			if sc != nil {
				sc.drop()
			}
			return
		}
		q.idle++
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-q.stop:
		}
		q.mu.Lock()
		q.idle--
		q.mu.Unlock()
	}
}

// senderConn is a connection that a sender owns, with the run_id of the
// Redis process it is connected to, and its log.
type senderConn struct {
	conn  *goredis.Conn
	runID string
	log   string
	next  int64 // the number of the last publish logged
}

// batchContext returns a context for the call that carries batch: it
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

// open opens a connection for a sender: it reads the run_id, loads the
// publish script and makes the connection's log.
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
	log := "{" + q.prefix + "}:sender:" + strconv.FormatUint(rand.Uint64(), 36)
	_, err := conn.Pipelined(ctx, func(p goredis.Pipeliner) error {
		info = p.Info(ctx, "server")
		p.ScriptLoad(ctx, publishSource) // not Script.Load, which takes the hash of a reply not yet read
		p.RPush(ctx, log, "log")
		p.PExpire(ctx, log, logTTL)
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
	return &senderConn{conn: conn, runID: text[at+7 : at+7+40], log: log}, nil
}

// recover answers the publishes of batch that ran on a connection that
// failed, from that connection's log, which it takes away on sc; it
// returns the others, none of which has run or will. A log that is gone
// (Redis lost it with the data it described) held nothing that remains.
func (q *batcher) recover(ctx context.Context, sc *senderConn, batch []*publishReq) ([]*publishReq, error) {
	if !slices.ContainsFunc(batch, func(r *publishReq) bool { return r.log != "" }) {
		return batch, nil
	}
	ran := make(map[string]map[int64]publishRes)
	for _, r := range batch {
		if r.log == "" || ran[r.log] != nil {
			continue
		}
		entries, err := recoverScript.Run(ctx, sc.conn, []string{r.log, r.log + ":taken"}, logTTLArg).StringSlice()
		if err != nil {
			return batch, err
		}
		byN := make(map[int64]publishRes, len(entries))
		for _, e := range entries {
			n, created, pos, err := parseLogEntry(e)
			if err != nil {
				return batch, err
			}
			byN[n] = outcome(created, pos)
		}
		ran[r.log] = byN
	}
	rest := batch[:0]
	for _, r := range batch {
		if r.log != "" {
			res, ok := ran[r.log][r.n]
			r.log = ""
			if ok {
				r.done <- res
				continue
			}
		}
		rest = append(rest, r)
	}
	return rest, nil
}

// outcome is a publish's outcome as the publish script gives it.
func outcome(created int64, pos string) publishRes {
	if created == -2 {
		return publishRes{err: replyError(pos)}
	}
	return publishRes{created: created, pos: pos}
}

// replyError is the error reply of Redis that failed one publish of a
// publish script call: a [goredis.Error], like the reply of a call.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// parseLogEntry parses an entry of a sender's log: "n created epoch seq",
// or "n -2 error" for a publish that failed.
func parseLogEntry(e string) (n, created int64, pos string, err error) {
	nText, rest, ok1 := strings.Cut(e, " ")
	createdText, pos, ok2 := strings.Cut(rest, " ")
	n, err1 := strconv.ParseInt(nText, 10, 64)
	created, err2 := strconv.ParseInt(createdText, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || created < -2 || created == -1 || created > 1 {
		return 0, 0, "", fmt.Errorf("malformed entry %q in a sender's log", e)
	}
	return n, created, pos, nil
}

// command returns the keys and arguments of a publish script call that
// carries batch: logged to log from the entry number first on, or
// without a log (log "") with each publish's retry keys and ID.
func (q *batcher) command(batch []*publishReq, runID, log string, first int64) ([]string, []any) {
	h := q.header
	h[hdrNewEpoch] = newEpoch()
	h[hdrRunID] = runID
	nk := 6
	if log != "" {
		h[hdrLogN] = first
		nk = 4
	}
	keys := make([]string, 0, 1+nk*len(batch))
	if log != "" {
		keys = append(keys, log)
	}
	args := make([]any, numHeader, numHeader+7*len(batch))
	copy(args, h[:])
	for _, r := range batch {
		keys = append(keys, r.keys[:nk]...)
		args = append(args, r.channel, r.body, r.msgKey, r.idemID, r.opts)
		if log == "" {
			args = append(args, r.rid, "1") // go-redis may send it again
		}
	}
	return keys, args
}

// replies parses a publish script's reply for n publishes; gone reports
// that the sender's log was gone, and nothing ran.
func replies(cmd *goredis.Cmd, n int) (res []publishRes, gone bool, err error) {
	s, err := cmd.Slice()
	if err != nil {
		return nil, false, err
	}
	if len(s) == 1 && s[0] == int64(-1) {
		return nil, true, nil
	}
	if len(s) != 2*n {
		return nil, false, fmt.Errorf("redis backplane: publish script: %d replies for %d publishes", len(s)/2, n)
	}
	res = make([]publishRes, n)
	for i := range res {
		created, ok1 := s[2*i].(int64)
		pos, ok2 := s[2*i+1].(string)
		if !ok1 || !ok2 {
			return nil, false, fmt.Errorf("redis backplane: publish script: unexpected reply %v", s[2*i:2*i+2])
		}
		res[i] = outcome(created, pos)
	}
	return res, false, nil
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
	if batch, err := q.recover(ctx, sc, batch); err != nil {
		sc.conn.Close()
		q.retry(batch, err)
		return nil
	} else if len(batch) == 0 {
		return sc
	}
	first := sc.next + 1
	for _, r := range batch {
		sc.next++
		r.n = sc.next
	}
	keys, args := q.command(batch, sc.runID, sc.log, first)
	res, gone, err := replies(sc.conn.EvalSha(ctx, publishHash, keys, args...), len(batch))
	switch {
	case err == nil && !gone:
		for i, r := range batch {
			r.done <- res[i]
		}
		return sc
	case gone:
		// Nothing ran: the log is gone (expired while the connection
		// was idle, deleted, or lost with Redis's data). The next
		// connection makes a new one; the attempt does not count
		// against MaxRetries, the context still bounds it.
		err = errLogGone
		for _, r := range batch {
			r.sent--
		}
	case isNoScript(err):
		// Nothing ran: the script was flushed. The next connection
		// loads it again.
	case isRedisError(err) && !retryable(err):
		for _, r := range batch {
			r.done <- publishRes{err: err}
		}
		return sc
	case isRedisError(err):
		// Nothing ran, and may run later.
	default:
		// It may have run: the log tells.
		for _, r := range batch {
			r.log = sc.log
		}
	}
	sc.conn.Close()
	q.retry(batch, err)
	return nil
}

// errLogGone says that a publish did not run because its sender's log was
// gone.
var errLogGone = errors.New("redis backplane: the sender's log is gone")

// logTTLArg is logTTL as the publish script takes it.
var logTTLArg = strconv.FormatInt(logTTL.Milliseconds(), 10)

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
	type call struct {
		keys []string
		args []any
		cmd  *goredis.Cmd
	}
	calls := make([]call, len(batch))
	_, _ = q.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range batch {
			c := &calls[i]
			c.keys, c.args = q.command(batch[i:i+1], "", "", 0)
			c.cmd = p.EvalSha(ctx, publishHash, c.keys, c.args...)
		}
		return nil
	})
	for i, r := range batch {
		c := calls[i]
		cmd := c.cmd
		if isNoScript(cmd.Err()) {
			// Run loads it on every node that lacks it.
			cmd = publishScript.Run(r.ctx, q.client, c.keys, c.args...)
		}
		res, _, err := replies(cmd, 1)
		if err != nil {
			r.done <- publishRes{err: err}
			continue
		}
		r.done <- res[0]
	}
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
