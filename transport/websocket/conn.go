package websocket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// conn is one served connection: a goroutine of its own reads commands,
// and a writer runs while the session has frames to write.
type conn struct {
	h    *Handler
	sess *fanout.Session
	ws   *websocket.Conn
	nc   *corkConn // under ws; corked while the writer writes a batch

	// ctx bounds the commands in progress; the writer cancels it when it
	// ends the connection, so that a command blocked on the backplane
	// gives up.
	ctx    context.Context
	cancel context.CancelFunc

	// writer is the writer's state: writerIdle, writerRunning, writerDirty,
	// writerLingering or writerDone.
	writer atomic.Int32
	// kick wakes a lingering writer; wake sends once per move from
	// writerLingering to writerRunning, and the writer takes it.
	kick chan struct{}
	// linger times a writer's wait for more frames; only the writer uses
	// it. Nil until the first wait.
	linger *time.Timer
	// wrote is closed when the writer has ended the connection.
	wrote chan struct{}

	mu      sync.Mutex    // guards the fields below, and orders wg.Add before wg.Wait
	ended   bool          // the reader waits for wg: nothing may start
	pinger  *time.Timer   // fires when a ping is due; nil without pings
	pinging chan struct{} // closed when the ping in flight has ended; nil when none is

	wg sync.WaitGroup // the writer and the ping in flight, if any

	// writeDeadline is the deadline of the write in progress, in Unix
	// nanoseconds, or 0.
	writeDeadline atomic.Int64
}

// States of conn.writer. A writer runs only while the session has frames,
// and lingers for writerLinger after the queue empties, so that a busy
// connection keeps one writer instead of starting one per message: wake
// starts one when there is none, marks the running one dirty so that it
// looks at the session again before it stops, or kicks the lingering one.
// So exactly one writer runs at a time, and frames are written in order.
const (
	writerIdle int32 = iota
	writerRunning
	writerDirty
	writerLingering // the queue was empty; the writer waits for a kick
	writerDone      // the connection is ended: no writer starts again
)

// writerLinger is how long a writer waits for more frames before it ends.
// An idle connection costs no writer goroutine after that.
const writerLinger = 100 * time.Millisecond

func newConn(h *Handler, sess *fanout.Session, ws *websocket.Conn, nc *corkConn) *conn {
	c := &conn{h: h, sess: sess, ws: ws, nc: nc, wrote: make(chan struct{}), kick: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// serve reads commands until the connection ends, waits for the
// connection's other goroutines and releases it.
func (c *conn) serve() {
	defer c.h.done(c)
	c.sess.Notify(c.wake)
	c.wake() // for what was queued before Notify
	if d := c.h.opts.PingInterval; d > 0 {
		c.mu.Lock()
		c.pinger = time.AfterFunc(d, c.ping)
		c.mu.Unlock()
	}
	c.readLoop()
	// The reader closed the session on every path: the writer writes the
	// close frame, or has ended the connection already.
	<-c.wrote
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	if c.pinger != nil {
		c.pinger.Stop()
	}
	c.wg.Wait()
	c.sess.Notify(nil)
	c.ws.CloseNow()
	c.sess.Close(fanout.CloseGoingAway, "")
}

// wake makes sure that a writer looks at the session's queue. The session
// calls it when it gets frames or closes; it does not block.
func (c *conn) wake() {
	for {
		switch c.writer.Load() {
		case writerIdle:
			if c.writer.CompareAndSwap(writerIdle, writerRunning) {
				c.wg.Add(1)
				go c.writeLoop()
				return
			}
		case writerRunning:
			if c.writer.CompareAndSwap(writerRunning, writerDirty) {
				return
			}
		case writerLingering:
			if c.writer.CompareAndSwap(writerLingering, writerRunning) {
				c.kick <- struct{}{} // never blocks: the writer took the last one
				return
			}
		default: // dirty already, or done
			return
		}
	}
}

// writeLoop writes the session's frames until the queue is empty, or until
// the close frame.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	for {
		c.writer.Store(writerRunning) // looks at the queue from here on
		for {
			wrote, ok := c.writeBatch()
			if !ok {
				c.writer.Store(writerDone)
				c.cancel()
				c.ws.CloseNow() // already closed on every path; ends the reader for sure
				close(c.wrote)
				return
			}
			if !wrote {
				break
			}
		}
		// The queue was empty: wait a little for more, unless wake came
		// meanwhile.
		if c.writer.CompareAndSwap(writerRunning, writerLingering) && !c.lingerForMore() {
			return
		}
		// Woken for a frame: let the publisher queue more before the
		// next write, as Session.Next does. Under load, fewer and larger
		// writes; idle, no delay.
		runtime.Gosched()
	}
}

// lingerForMore waits up to writerLinger for wake. It reports true when
// wake came (the state is writerRunning again), and false when the writer
// went idle and must end.
func (c *conn) lingerForMore() bool {
	if c.linger == nil {
		c.linger = time.NewTimer(writerLinger)
	} else {
		c.linger.Reset(writerLinger)
	}
	select {
	case <-c.kick:
		c.linger.Stop()
		return true
	case <-c.linger.C:
		if c.writer.CompareAndSwap(writerLingering, writerIdle) {
			return false
		}
		<-c.kick // wake moved the state on and sends the kick
		return true
	}
}

// Buffers shared by the writers of all connections: a connection holds them
// only while it writes.
var (
	framePool = sync.Pool{New: func() any { s := make([]fanout.Frame, 0, maxBatch); return &s }}
	bufPool   = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
)

const (
	// maxBatch bounds the frames written in one WebSocket message.
	maxBatch = 256
	// maxMessage is the size from which a batch continues in another
	// WebSocket message.
	maxMessage = 64 << 10
	// maxPooled bounds the buffers kept in the pools, in bytes: a
	// message's buffer ends up to one frame larger than maxMessage.
	maxPooled = 256 << 10
	// maxCloseReason is the longest close reason a WebSocket close frame
	// carries, in bytes.
	maxCloseReason = 123

	writeTimedOut = "write timed out"
)

func putBuf(p *[]byte, b []byte) {
	if cap(b) > maxPooled {
		return
	}
	*p = b[:0]
	bufPool.Put(p)
}

// nonBlocking is a done context: Next with it returns at once, with what is
// queued or nothing.
var nonBlocking = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// readLoop reads and runs commands until the connection ends or the session
// must be closed.
func (c *conn) readLoop() {
	for {
		typ, r, err := c.ws.Reader(context.Background())
		if err != nil {
			c.readFailed(err)
			return
		}
		if typ != websocket.MessageText {
			c.sess.Close(fanout.CloseBadRequest, "binary messages are not supported")
			return
		}
		p := bufPool.Get().(*[]byte)
		b, err := readAll(r, (*p)[:0])
		if err != nil {
			putBuf(p, b)
			c.readFailed(err)
			return
		}
		ok := c.command(b)
		putBuf(p, b)
		if !ok {
			return
		}
	}
}

// readAll appends what r holds to b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// readFailed closes the session after a read error.
func (c *conn) readFailed(err error) {
	if errors.Is(err, net.ErrClosed) {
		// Closed on this side. When a ping or a write timed out, the
		// library closed the connection, and the ping's goroutine or the
		// writer closes the session with the right code: let them.
		c.mu.Lock()
		p := c.pinging
		c.mu.Unlock()
		if p != nil {
			<-p
		}
		if d := c.writeDeadline.Load(); d != 0 && time.Now().UnixNano() >= d {
			c.sess.Close(fanout.CloseSlowConsumer, writeTimedOut)
			return
		}
	}
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		// The WebSocket library has sent the 1009 close frame.
		c.sess.Close(fanout.CloseTooLarge, fmt.Sprintf("message larger than %d bytes", c.h.opts.ReadLimit))
	case websocket.CloseStatus(err) == websocket.StatusNormalClosure:
		c.sess.Close(fanout.CloseNormal, "client closed")
	case websocket.CloseStatus(err) != -1:
		c.sess.Close(fanout.CloseGoingAway, "client closed")
	default:
		c.sess.Close(fanout.CloseGoingAway, "connection lost")
	}
}

// command runs one client command. It reports false when the session was
// closed and reading must stop.
func (c *conn) command(b []byte) bool {
	if !c.sess.Allow() {
		c.sess.Close(fanout.CloseRateLimited, "too many commands")
		return false
	}
	cmd, err := wire.ParseCommand(b)
	if err == nil {
		err = c.run(cmd)
	}
	if err != nil {
		r := fanout.Reply{ID: cmd.ID, Err: err}
		if fanout.ValidateTopic(cmd.Topic) == nil {
			r.Topic = cmd.Topic
		}
		c.sess.Reply(r)
	}
	return true
}

func (c *conn) run(cmd wire.Command) error {
	switch cmd.Type {
	case wire.CmdPing:
		c.sess.Reply(fanout.Reply{ID: cmd.ID})
		return nil
	case wire.CmdSubscribe:
		return c.sess.Subscribe(c.ctx, fanout.SubscribeRequest{
			ID: cmd.ID, Topic: cmd.Topic, Since: cmd.Since, Snapshot: cmd.Snapshot,
		})
	case wire.CmdUnsubscribe:
		return c.sess.Unsubscribe(c.ctx, cmd.ID, cmd.Topic)
	case wire.CmdPublish:
		opts := make([]fanout.PublishOption, 0, 3)
		if cmd.Key != "" {
			opts = append(opts, fanout.WithKey(cmd.Key))
		}
		if cmd.IdempotencyKey != "" {
			opts = append(opts, fanout.WithIdempotencyKey(cmd.IdempotencyKey))
		}
		if cmd.Header != nil {
			opts = append(opts, fanout.WithHeader(cmd.Header))
		}
		return c.sess.Publish(c.ctx, cmd.ID, cmd.Topic, cmd.Data, opts...)
	}
	return fmt.Errorf("%w: unknown command type %q", fanout.ErrBadRequest, cmd.Type)
}

// ping runs when a ping is due: it sends a ping, and closes the session
// with CloseTimeout when no pong comes back in time. It runs in the timer's
// goroutine, which lives only while a ping is in flight.
func (c *conn) ping() {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.pinger.Reset(c.h.opts.PingInterval)
	if c.pinging != nil {
		c.mu.Unlock()
		return // the previous ping is still waiting
	}
	done := make(chan struct{})
	c.pinging = done
	c.wg.Add(1)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.pinging = nil
		c.mu.Unlock()
		close(done)
		c.wg.Done()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), c.h.opts.PingTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	// A ping whose write or pong timed out; when the write timed out, the
	// library has closed the connection, and the reader waits for this
	// verdict before it blames the connection.
	if errors.Is(err, context.DeadlineExceeded) {
		c.sess.Close(fanout.CloseTimeout, "no answer to ping")
	}
}

// writeBatch writes what the session has queued (up to maxBatch frames) in
// one text message, or in several when they exceed maxMessage bytes. It
// reports whether there was anything to write, and false for ok when the
// connection is done.
func (c *conn) writeBatch() (wrote, ok bool) {
	fp := framePool.Get().(*[]fanout.Frame)
	batch, err := c.sess.Next(nonBlocking, (*fp)[:0:maxBatch])
	if n := len(batch); n > 0 && n < maxBatch && batch[n-1].Type != fanout.FrameClose {
		// Whatever came meanwhile, up to the close frame, goes along.
		more, _ := c.sess.Next(nonBlocking, batch[n:n:maxBatch])
		batch = batch[:n+len(more)]
	}
	if len(batch) == 0 {
		*fp = batch
		framePool.Put(fp)
		return false, !errors.Is(err, fanout.ErrClosed)
	}
	p := bufPool.Get().(*[]byte)
	b := (*p)[:0]
	c.nc.cork()
	for i, f := range batch {
		if len(b) >= maxMessage {
			// A large batch goes out in several messages, so that the
			// buffer stays small enough to be reused.
			if err = c.write(b); err != nil {
				break
			}
			b = b[:0]
		}
		if len(b) > 0 {
			b = append(b, '\n')
		}
		b = wire.AppendFrame(b, f)
		if i == len(batch)-1 {
			err = c.write(b)
		}
	}
	if ferr := c.flush(); err == nil {
		err = ferr
	}
	last := batch[len(batch)-1]
	clear(batch) // let the messages go
	*fp = batch[:0]
	framePool.Put(fp)
	putBuf(p, b)

	if last.Type == fanout.FrameClose {
		c.ws.Close(websocket.StatusCode(last.Close.Code), truncate(last.Close.Reason, maxCloseReason))
		return true, false
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The client took nothing for WriteTimeout: as slow as can be.
			c.sess.Close(fanout.CloseSlowConsumer, writeTimedOut)
		} else {
			c.sess.Close(fanout.CloseGoingAway, "write failed")
		}
		c.ws.CloseNow()
		return true, false
	}
	return true, true
}

// write writes b as one text message into the corked connection, and
// flushes when a batch has grown large.
func (c *conn) write(b []byte) error {
	// The connection is corked: the library's write does not block, and
	// needs no deadline.
	if err := c.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		return err
	}
	if c.nc.corked() < maxMessage {
		return nil
	}
	err := c.flush()
	c.nc.cork()
	return err
}

// flush writes what the corked connection collected, within WriteTimeout,
// and uncorks it.
func (c *conn) flush() error {
	d := time.Now().Add(c.h.opts.WriteTimeout)
	c.writeDeadline.Store(d.UnixNano())
	defer c.writeDeadline.Store(0)
	return c.nc.flush(d)
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
