package websocket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// conn is one served connection: the request's goroutine reads commands,
// one writer goroutine writes what the session queues.
type conn struct {
	h    *Handler
	sess *fanout.Session
	ws   *websocket.Conn

	// ctx bounds the commands in progress; the writer cancels it when it
	// ends, so that a command blocked on the backplane gives up.
	ctx    context.Context
	cancel context.CancelFunc

	wg sync.WaitGroup // the writer, and the ping in flight if any
	// pingDone is closed when the last ping started has ended.
	pingDone atomic.Pointer[chan struct{}]
	// writeDeadline is the deadline of the write in progress, in Unix
	// nanoseconds, or 0.
	writeDeadline atomic.Int64

	// wait is the writer's buffer while it waits for the session: one frame,
	// so that an idle connection holds no batch buffer.
	wait [1]fanout.Frame
}

// serve runs the connection and returns when its goroutines have ended.
func serve(h *Handler, sess *fanout.Session, ws *websocket.Conn) {
	c := &conn{h: h, sess: sess, ws: ws}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.writeLoop()
	c.readLoop()
	c.wg.Wait()
	c.cancel()
	ws.CloseNow()
	sess.Close(fanout.CloseGoingAway, "")
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
		if p := c.pingDone.Load(); p != nil {
			<-*p
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
		var opts []fanout.PublishOption
		if cmd.Key != "" {
			opts = append(opts, fanout.WithKey(cmd.Key))
		}
		return c.sess.Publish(c.ctx, cmd.ID, cmd.Topic, cmd.Data, opts...)
	}
	return fmt.Errorf("%w: unknown command type %q", fanout.ErrBadRequest, cmd.Type)
}

// writeLoop writes the session's frames until the close frame, and pings
// when a ping is due.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	defer c.cancel()
	defer c.ws.CloseNow() // already closed on every path; ends the reader for sure
	wait, stop := c.pingTimer()
	defer func() { stop() }()
	for {
		fs, err := c.sess.Next(wait, c.wait[:0])
		if errors.Is(err, fanout.ErrClosed) {
			return
		}
		if err != nil { // a ping is due
			stop()
			c.ping()
			wait, stop = c.pingTimer()
			continue
		}
		if !c.writeBatch(fs[0]) {
			return
		}
	}
}

// pingTimer returns the context the writer waits with: it ends when the
// next ping is due. One context serves every wait until then, so that a busy
// connection does not allocate a timer per batch.
func (c *conn) pingTimer() (context.Context, context.CancelFunc) {
	if c.h.opts.PingInterval < 0 {
		return context.Background(), func() {}
	}
	return context.WithTimeout(context.Background(), c.h.opts.PingInterval)
}

// ping sends a ping and closes the session with CloseTimeout when no pong
// comes back in time. It waits for the pong in a goroutine of its own, so
// that writes go on meanwhile; that goroutine lives only while a ping is in
// flight.
func (c *conn) ping() {
	if p := c.pingDone.Load(); p != nil {
		select {
		case <-*p:
		default:
			return // the previous ping is still waiting
		}
	}
	done := make(chan struct{})
	c.pingDone.Store(&done)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), c.h.opts.PingTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		// A ping whose write or pong timed out; when the write timed out,
		// the library has closed the connection, and the reader waits for
		// this verdict before it blames the connection.
		if errors.Is(err, context.DeadlineExceeded) {
			c.sess.Close(fanout.CloseTimeout, "no answer to ping")
		}
	}()
}

// writeBatch writes first and whatever else is queued (up to maxBatch
// frames) in one text message, or in several when they exceed maxMessage
// bytes. It reports false when the connection is done.
func (c *conn) writeBatch(first fanout.Frame) bool {
	fp := framePool.Get().(*[]fanout.Frame)
	batch := append((*fp)[:0], first)
	if first.Type != fanout.FrameClose {
		more, _ := c.sess.Next(nonBlocking, batch[1:1:cap(batch)])
		batch = batch[:1+len(more)]
	}
	p := bufPool.Get().(*[]byte)
	b := (*p)[:0]
	var err error
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
	last := batch[len(batch)-1]
	clear(batch) // let the messages go
	*fp = batch[:0]
	framePool.Put(fp)
	putBuf(p, b)

	if last.Type == fanout.FrameClose {
		c.ws.Close(websocket.StatusCode(last.Close.Code), truncate(last.Close.Reason, maxCloseReason))
		return false
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// The client took nothing for WriteTimeout: as slow as can be.
			c.sess.Close(fanout.CloseSlowConsumer, writeTimedOut)
		} else {
			c.sess.Close(fanout.CloseGoingAway, "write failed")
		}
		c.ws.CloseNow()
		return false
	}
	return true
}

// write writes b as one text message.
func (c *conn) write(b []byte) error {
	d := time.Now().Add(c.h.opts.WriteTimeout)
	c.writeDeadline.Store(d.UnixNano())
	defer c.writeDeadline.Store(0)
	ctx, cancel := context.WithDeadline(context.Background(), d)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, b)
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
