package websocket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// conn is one served connection: a goroutine of its own reads commands, and
// the session's writer, which the hub runs while there is something to
// write, writes through conn's fanout.Conn methods.
type conn struct {
	h    *Handler
	sess *fanout.Session
	ws   *websocket.Conn
	nc   *corkConn // under ws; corked while the writer writes a batch
	// framed: the writer frames its messages itself (see frame.go); false
	// when an extension (compression) is in use, which the library applies.
	framed bool

	// ctx bounds the commands in progress; it is cancelled when the writer
	// ends the connection, so that a command blocked on the backplane gives
	// up.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex    // guards the fields below, and orders wg.Add before wg.Wait
	ended   bool          // the reader waits for wg: nothing may start
	pinger  *time.Timer   // fires when a ping is due; nil without pings
	pinging chan struct{} // closed when the ping in flight has ended; nil when none is

	wg sync.WaitGroup // the ping in flight, if any

	started bool // a command has been read; only the reader uses it
}

func newConn(h *Handler, sess *fanout.Session, ws *websocket.Conn, nc *corkConn, framed bool) *conn {
	c := &conn{h: h, sess: sess, ws: ws, nc: nc, framed: framed}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// serve reads commands until the connection ends, waits for the
// connection's other goroutines and releases it.
func (c *conn) serve() {
	defer c.h.done(c)
	c.sess.Attach(c, &fanout.ConnOptions{WriteTimeout: c.h.opts.WriteTimeout, Transport: "websocket", ServerSubscriptions: true})
	if d := c.h.opts.PingInterval; d > 0 {
		c.mu.Lock()
		c.pinger = time.AfterFunc(d, c.ping)
		c.mu.Unlock()
	}
	c.readLoop()
	// The reader closed the session on every path: the writer writes the
	// close frame, or has dropped the connection already.
	<-c.sess.Detached()
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	if c.pinger != nil {
		c.pinger.Stop()
	}
	c.wg.Wait()
	c.ws.CloseNow()
	c.sess.Close(fanout.CloseGoingAway, "")
}

// WriteFrames implements [fanout.Conn]: it writes frames in one text
// message, or in several when they exceed maxMessage bytes, all in one
// system call.
func (c *conn) WriteFrames(frames []fanout.Frame, deadline time.Time) error {
	if c.framed {
		return c.writeFramed(frames, deadline)
	}
	p := bufPool.Get().(*[]byte)
	b := (*p)[:0]
	c.nc.cork()
	var err error
	for i, f := range frames {
		if len(b) >= maxMessage {
			// A large batch goes out in several messages, so that the
			// buffer stays small enough to be reused.
			if err = c.write(b, deadline); err != nil {
				break
			}
			b = b[:0]
		}
		if len(b) > 0 {
			b = append(b, '\n')
		}
		b = wire.AppendFrame(b, f)
		if i == len(frames)-1 {
			err = c.write(b, deadline)
		}
	}
	if ferr := c.nc.flush(deadline); err == nil {
		err = ferr
	}
	putBuf(p, b)
	return err
}

// WriteHeartbeat implements [fanout.Conn]. WebSocket connections are kept
// alive by pings, which also wait for the answer (see Options.PingInterval).
func (c *conn) WriteHeartbeat(time.Time) error { return nil }

// WriteClose implements [fanout.Conn]: frames and the close frame in one
// batch, then a WebSocket close with the same code and reason.
func (c *conn) WriteClose(frames []fanout.Frame, cf *fanout.CloseFrame, deadline time.Time) error {
	c.cancel()
	err := c.WriteFrames(append(frames, fanout.Frame{Type: fanout.FrameClose, Close: cf}), deadline)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		// The close handshake, bounded by the library, also when the
		// library sent its own close already (a message over the read
		// limit): it reads what the client still sends, so that the
		// client can read the close instead of a reset connection.
		c.ws.Close(websocket.StatusCode(cf.Code), truncate(cf.Reason, maxCloseReason))
	}
	c.ws.CloseNow() // already closed on every path; ends the reader for sure
	return err
}

// Abort implements [fanout.Conn].
func (c *conn) Abort() {
	c.cancel()
	c.nc.drop()
	c.ws.CloseNow()
}

// Buffers shared by the writers of all connections: a connection holds them
// only while it writes.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

const (
	// maxMessage is the size from which a batch continues in another
	// WebSocket message.
	maxMessage = 64 << 10
	// maxPooled bounds the buffers kept in the pools, in bytes: a
	// message's buffer ends up to one frame larger than maxMessage.
	maxPooled = 256 << 10
	// maxCloseReason is the longest close reason a WebSocket close frame
	// carries, in bytes.
	maxCloseReason = 123
)

func putBuf(p *[]byte, b []byte) {
	if cap(b) > maxPooled {
		return
	}
	*p = b[:0]
	bufPool.Put(p)
}

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
		// Closed on this side. When a ping timed out, the library closed
		// the connection, and the ping's goroutine closes the session with
		// the right code: let it. (A write that failed closed the session
		// before it dropped the connection.)
		c.mu.Lock()
		p := c.pinging
		c.mu.Unlock()
		if p != nil {
			<-p
		}
	}
	var ce websocket.CloseError
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		// The WebSocket library has sent the 1009 close frame.
		c.sess.Close(fanout.CloseTooLarge, fmt.Sprintf("message larger than %d bytes", c.h.opts.ReadLimit))
	case errors.As(err, &ce) && !utf8.ValidString(ce.Reason):
		c.sess.Close(fanout.CloseProtocol, "close reason is not UTF-8")
	case ce.Code == websocket.StatusNormalClosure:
		c.sess.Close(fanout.CloseNormal, "client closed")
	case ce.Code != 0:
		c.sess.Close(fanout.CloseGoingAway, "client closed")
	case connectionLost(err):
		c.sess.Close(fanout.CloseGoingAway, "connection lost")
	default:
		// The WebSocket library refused what the client sent: a frame
		// that breaks RFC 6455 (an unmasked frame, a continuation
		// without a start, an unknown opcode, reserved bits, a bad close
		// payload, compressed data that does not inflate). It returns
		// these as plain errors; what is not the connection's end is one.
		c.sess.Close(fanout.CloseProtocol, "WebSocket protocol violation")
	}
}

// connectionLost reports whether a read error is the connection's end
// rather than something the client sent.
func connectionLost(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

// command runs one client command. It reports false when the session was
// closed and reading must stop.
func (c *conn) command(b []byte) bool {
	if !c.sess.Allow() {
		c.sess.Close(fanout.CloseRateLimited, "too many commands")
		return false
	}
	cmd, err := wire.ParseCommand(b)
	first := !c.started
	c.started = true
	switch {
	case err == nil && cmd.Type == wire.CmdAuth:
		if !first {
			err = fmt.Errorf("%w: auth must be the first command; use refresh", fanout.ErrBadRequest)
			break
		}
		// Authenticate answers, and on failure closes the session.
		return c.sess.Authenticate(c.ctx, cmd.ID, &fanout.Credentials{Token: cmd.Token, Transport: "websocket"}) == nil
	case !c.sess.CheckCredentials(cmd.ID):
		return false // it answered, and closes the session
	case err == nil:
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
	case wire.CmdRefresh:
		// Refresh answers either way; the session stands.
		c.sess.Refresh(c.ctx, cmd.ID, &fanout.Credentials{Token: cmd.Token, Transport: "websocket"})
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
	case wire.CmdPresence, wire.CmdPresenceCount:
		return c.sess.Presence(c.ctx, fanout.PresenceRequest{ID: cmd.ID, Topic: cmd.Topic, Count: cmd.Type == wire.CmdPresenceCount})
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

// write writes b as one text message into the corked connection, and
// flushes when a batch has grown large.
func (c *conn) write(b []byte, deadline time.Time) error {
	// The connection is corked: the library's write does not block, and
	// needs no deadline.
	if err := c.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		return err
	}
	if c.nc.corked() < maxMessage {
		return nil
	}
	err := c.nc.flush(deadline)
	c.nc.cork()
	return err
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
