package fanout

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is a client connection as a session's writer sees it: a transport
// says how frames, a heartbeat and the close go out on its wire, and the
// session's writer, which the hub owns, decides when. See [Session.Attach].
//
// The writer calls WriteFrames, WriteHeartbeat and WriteClose from one
// goroutine at a time, never concurrently with each other; Abort may be
// called concurrently with them. The frames passed to WriteFrames are valid
// only during the call.
type Conn interface {
	// WriteFrames writes frames, in order, and returns once they are handed
	// to the network. It must give up by deadline with an error matching
	// os.ErrDeadlineExceeded (as a net.Conn write does), so that a client
	// that stops reading cannot hold the writer. Writes in quick
	// succession get the same deadline (see ConnOptions.WriteTimeout), which
	// a transport may leave set rather than set again.
	WriteFrames(frames []Frame, deadline time.Time) error
	// WriteHeartbeat writes something that keeps an idle connection open
	// through proxies and that clients ignore, with the same deadline rule.
	WriteHeartbeat(deadline time.Time) error
	// WriteClose writes frames (possibly none) and after them the close
	// frame, with the same deadline rule, and ends the connection's writing
	// side (a WebSocket close, the end of an SSE response, a gRPC status).
	// The writer calls it once, last.
	WriteClose(frames []Frame, c *CloseFrame, deadline time.Time) error
	// Abort drops the connection at once, without a close frame: a write in
	// progress returns with an error. The writer calls it after a failed
	// write, and the hub when it closes.
	Abort()
}

// ConnOptions configures the writer of one connection; see [Session.Attach].
// The zero value is valid.
type ConnOptions struct {
	// WriteTimeout bounds every write. A client that does not take a write
	// within it is closed with [CloseSlowConsumer] and dropped (its
	// connection is in the middle of a write: no close frame can follow).
	// A write's deadline is WriteTimeout from its start rounded up by at
	// most a sixteenth of it, so that writes in quick succession share one.
	// Default: [HubOptions.WriteTimeout].
	WriteTimeout time.Duration
	// Heartbeat is how long the connection may stay silent: after that long
	// without a write, the writer calls [Conn.WriteHeartbeat]. Default: 0,
	// no heartbeats.
	Heartbeat time.Duration
	// EndAfterFinal makes the connection a stream that ends by itself once
	// each of these topics has delivered its final message (one published
	// [WithFinal]), live, from history or in a snapshot: after the frame
	// that carries the last one, the writer writes a close frame with
	// [CloseNormal], reason [ReasonTopicEnded] and reconnect false. Frames
	// of a topic after its end are not written. Default: none, the
	// connection does not end by itself.
	EndAfterFinal []string
	// Transport names the transport in the hub's events and metrics
	// ([EventAttach], [EventWrite], [EventSessionClose]): "websocket",
	// "sse", "grpc", or a third-party transport's own short name.
	// Default: "other".
	Transport string
	// ServerSubscriptions says that the connection carries the frames of
	// server-side subscriptions, [FrameSubscribed] and
	// [FrameUnsubscribed]: [Hub.Subscribe] and [Hub.Unsubscribe] reach
	// only such sessions. Default: false.
	ServerSubscriptions bool
}

// ReasonTopicEnded is the reason of the close frame that ends a stream whose
// topics all delivered their final message (see [ConnOptions.EndAfterFinal]).
const ReasonTopicEnded = "topic ended"

// States of a writer. A writer goroutine runs only while the session has
// something to write, and lingers for writerLinger after the queue empties,
// so that a busy connection keeps one goroutine instead of starting one per
// message: wake starts one when there is none, marks the running one dirty
// so that it looks at the session again before it stops, or kicks the
// lingering one. So at most one writer runs at a time, and frames are
// written in order.
const (
	writerIdle int32 = iota
	writerRunning
	writerDirty
	writerLingering // the queue was empty; the writer waits for a kick
	writerDone      // the connection is finished: no writer starts again
)

// writerLinger is how long a writer waits for more frames before its
// goroutine ends. An idle connection costs no goroutine after that.
const writerLinger = 100 * time.Millisecond

// maxBatch bounds the frames one WriteFrames call gets.
const maxBatch = 256

// framePool holds the batches of all writers: a connection holds one only
// while it writes.
var framePool = sync.Pool{New: func() any { s := make([]Frame, 0, maxBatch); return &s }}

// nonBlocking is a done context: Next with it returns at once, with what is
// queued or nothing.
var nonBlocking = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// writer writes one session's frames to its Conn.
type writer struct {
	s    *Session
	c    Conn
	opts ConnOptions

	state atomic.Int32
	// kick wakes a lingering writer; wake sends once per move from
	// writerLingering to writerRunning, and the writer takes it.
	kick chan struct{}
	// linger times a writer's wait for more frames; only the writer goroutine
	// uses it. Nil until the first wait.
	linger *time.Timer

	// beat fires when a heartbeat may be due; nil without heartbeats.
	beat *time.Timer
	// lastWrite is when the last write ended, in Unix nanoseconds.
	lastWrite atomic.Int64
	// beatDue is set by beat when the connection has been silent for a
	// heartbeat interval; the writer writes the heartbeat.
	beatDue atomic.Bool

	// open holds the topics of a stream that ends after their final
	// messages; only the writer goroutine uses it. Nil otherwise.
	open map[string]bool

	// aborted is set when the connection was aborted from outside the
	// writer; hungUp when the transport saw the client go away.
	aborted atomic.Bool
	hungUp  atomic.Bool

	// detached is closed when the writer is done with the connection: the
	// close frame is written, a write failed, or the connection was
	// aborted. Only the writer goroutine detaches, once out of the Conn's
	// methods, or wake when no writer goroutine may start.
	detached chan struct{}
	mu       sync.Mutex // guards isDetached; held while Abort runs
	// isDetached is set when detached is closed: Abort is never called
	// afterwards, when the transport may have released the connection.
	isDetached bool
}

// Attach makes the hub write the session's frames to c: from now on a
// writer goroutine that the hub owns runs whenever the session has frames,
// takes them from the queue in batches, writes them through c within the
// write deadline, sends heartbeats, ends streams of final topics, and
// finally writes the close frame. When a write fails it closes the session
// ([CloseSlowConsumer] when the client took nothing within WriteTimeout,
// [CloseGoingAway] otherwise) and aborts c. Nothing runs while the session
// is idle.
//
// After Attach, only the writer takes frames: do not call [Session.Next].
// [Session.Detached] is closed when the writer is done with c; the
// transport then tears its connection down. Attach panics when called
// twice, which is a programming error.
func (s *Session) Attach(c Conn, opts *ConnOptions) {
	w := &writer{s: s, c: c, kick: make(chan struct{}, 1), detached: make(chan struct{})}
	if opts != nil {
		w.opts = *opts
	}
	if w.opts.WriteTimeout <= 0 {
		w.opts.WriteTimeout = s.hub.opts.WriteTimeout
	}
	if w.opts.Transport == "" {
		w.opts.Transport = "other"
	}
	if len(w.opts.EndAfterFinal) > 0 {
		w.open = make(map[string]bool, len(w.opts.EndAfterFinal))
		for _, t := range w.opts.EndAfterFinal {
			w.open[t] = true
		}
	}
	w.lastWrite.Store(time.Now().UnixNano())
	if !s.writer.CompareAndSwap(nil, w) {
		panic("fanout: Session.Attach called twice")
	}
	// A session that has ended already is not counted as a connection:
	// its close event, emitted or not yet, carries no transport.
	s.mu.Lock()
	released := s.released
	if !released {
		s.transport = w.opts.Transport
	}
	s.mu.Unlock()
	if !released {
		s.hub.observe(Event{Type: EventAttach, Session: s.id, Transport: w.opts.Transport})
	}
	if d := w.opts.Heartbeat; d > 0 {
		w.beat = time.AfterFunc(d, w.heartbeat)
	}
	w.wake() // for what was queued before Attach
}

// Detached is closed once the session's writer is done with the connection
// given to [Session.Attach]: it wrote the close frame, a write failed, or
// the hub closed and aborted the connection. A transport's handler waits
// for it before it releases the connection. Before Attach it returns nil.
func (s *Session) Detached() <-chan struct{} {
	if w := s.writer.Load(); w != nil {
		return w.detached
	}
	return nil
}

// wake makes sure that a writer looks at the session's queue. It does not
// block.
func (w *writer) wake() {
	for {
		switch w.state.Load() {
		case writerIdle:
			if w.state.CompareAndSwap(writerIdle, writerRunning) {
				if !w.s.hub.startWriter() {
					// The hub has closed, and aborted the connection.
					w.state.Store(writerDone)
					w.detach()
					return
				}
				go w.run()
				return
			}
		case writerRunning:
			if w.state.CompareAndSwap(writerRunning, writerDirty) {
				return
			}
		case writerLingering:
			if w.state.CompareAndSwap(writerLingering, writerRunning) {
				w.kick <- struct{}{} // never blocks: the writer took the last one
				return
			}
		default: // dirty already, or done
			return
		}
	}
}

// run writes the session's frames until the queue is empty and stays empty
// for writerLinger, or until the connection is finished.
func (w *writer) run() {
	defer w.s.hub.writers.Done()
	for {
		w.state.Store(writerRunning) // looks at the queue from here on
		for {
			wrote, ok := w.writeBatch()
			if !ok {
				w.state.Store(writerDone)
				return
			}
			if !wrote {
				break
			}
		}
		// The queue was empty: wait a little for more, unless wake came
		// meanwhile.
		if w.state.CompareAndSwap(writerRunning, writerLingering) && !w.lingerForMore() {
			return
		}
		// Woken for a frame: let the publisher queue more before the next
		// write, as Session.Next does. Under load, fewer and larger writes;
		// idle, no delay.
		w.s.settle(maxBatch)
	}
}

// lingerForMore waits up to writerLinger for wake. It reports true when
// wake came (the state is writerRunning again), and false when the writer
// went idle and must end.
func (w *writer) lingerForMore() bool {
	if w.linger == nil {
		w.linger = time.NewTimer(writerLinger)
	} else {
		w.linger.Reset(writerLinger)
	}
	select {
	case <-w.kick:
		w.linger.Stop()
		return true
	case <-w.linger.C:
		if w.state.CompareAndSwap(writerLingering, writerIdle) {
			return false
		}
		<-w.kick // wake moved the state on and sends the kick
		return true
	}
}

// heartbeat runs when a heartbeat may be due, in the timer's goroutine.
func (w *writer) heartbeat() {
	silent := time.Duration(time.Now().UnixNano() - w.lastWrite.Load())
	if silent >= w.opts.Heartbeat {
		w.beatDue.Store(true)
		w.wake()
		silent = 0
	}
	select {
	case <-w.detached:
	default:
		w.beat.Reset(w.opts.Heartbeat - silent)
	}
}

// writeBatch writes what the session has queued (up to maxBatch frames),
// or a heartbeat when one is due and nothing is queued. It reports whether
// it wrote anything, and false for ok when the connection is finished.
func (w *writer) writeBatch() (wrote, ok bool) {
	if w.aborted.Load() {
		w.detach()
		return false, false
	}
	s := w.s
	fp := framePool.Get().(*[]Frame)
	defer func() { framePool.Put(fp) }()
	var stats batchStats
	st := &stats
	if s.hub.opts.Observer == nil {
		st = nil
	}
	batch, err := s.next(nonBlocking, (*fp)[:0:maxBatch], st)
	if n := len(batch); n > 0 && n < maxBatch && batch[n-1].Type != FrameClose {
		// Whatever came meanwhile, up to the close frame, goes along.
		more, _ := s.next(nonBlocking, batch[n:n:maxBatch], st)
		batch = batch[:n+len(more)]
	}
	defer func() {
		clear(batch) // let the messages go
		*fp = batch[:0]
	}()
	if w.open != nil {
		batch = w.filterEnded(batch)
	}
	if len(batch) == 0 {
		if errors.Is(err, ErrClosed) {
			w.detach() // the close frame was written
			return false, false
		}
		if w.hungUp.Load() {
			// The client went away while nothing was being written: the
			// close goes out into the void, or fails.
			s.Close(CloseGoingAway, "")
			return true, true
		}
		if w.beatDue.Swap(false) {
			return true, w.done(w.c.WriteHeartbeat(w.deadline()), nil)
		}
		return false, true
	}
	var cf *CloseFrame
	if last := batch[len(batch)-1]; last.Type == FrameClose {
		cf = last.Close
		batch = batch[:len(batch)-1]
	}
	if cf != nil {
		err = w.c.WriteClose(batch, cf, w.deadline())
	} else {
		err = w.c.WriteFrames(batch, w.deadline())
	}
	if st != nil && err == nil {
		w.observeWrite(st)
	}
	return true, w.done(err, cf)
}

// observeWrite reports a write as [EventWrite].
func (w *writer) observeWrite(st *batchStats) {
	e := Event{Type: EventWrite, Session: w.s.id, Transport: w.opts.Transport, N: st.live, Queue: st.queued}
	if st.live > 0 {
		e.Duration = time.Since(st.oldest)
	}
	w.s.hub.observe(e)
}

// deadline returns the deadline of a write that starts now: WriteTimeout
// from now, rounded up to a multiple of a sixteenth of it, so that the
// writes of the same moment share one and a transport that keeps it set
// need not move a timer for each (see Conn).
func (w *writer) deadline() time.Time {
	q := max(w.opts.WriteTimeout/16, time.Millisecond)
	return time.Now().Add(w.opts.WriteTimeout).Truncate(q).Add(q)
}

// done records the end of a write. After a failed write it closes the
// session with the code that says why and aborts the connection; after the
// close frame it detaches. It reports whether the writer goes on.
func (w *writer) done(err error, cf *CloseFrame) bool {
	w.lastWrite.Store(time.Now().UnixNano())
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			w.s.Close(CloseSlowConsumer, "write timed out")
		} else {
			w.s.Close(CloseGoingAway, "write failed")
		}
		w.mu.Lock()
		w.c.Abort()
		w.mu.Unlock()
		w.detach()
		return false
	}
	if cf != nil {
		w.detach()
		return false
	}
	return true
}

// filterEnded drops the frames of topics that ended, and ends the batch
// after the frame that ends the last open topic, with the close frame that
// says so. It closes the session then.
func (w *writer) filterEnded(batch []Frame) []Frame {
	out := batch[:0]
	for _, f := range batch {
		var topic string
		var final bool
		switch f.Type {
		case FrameMessage:
			topic, final = f.Message.Topic, f.Message.Final()
		case FrameSnapshot:
			topic, final = f.Snapshot.Topic, slices.ContainsFunc(f.Snapshot.Items, (*Message).Final)
		default:
			out = append(out, f)
			continue
		}
		if !w.open[topic] {
			continue // ended: what follows its final message is not written
		}
		out = append(out, f)
		if !final {
			continue
		}
		delete(w.open, topic)
		if len(w.open) == 0 {
			// The rest of the batch can only be what the stream's topics
			// published after their end.
			w.s.Close(CloseNormal, ReasonTopicEnded)
			w.s.takeClose()
			cf := &CloseFrame{Code: CloseNormal, Reason: ReasonTopicEnded}
			clear(batch[len(out):])
			return append(out, Frame{Type: FrameClose, Close: cf})
		}
	}
	clear(batch[len(out):])
	return out
}

// abort drops the connection at once, unless the writer is done with it
// already; the writer goroutine then detaches as soon as it is out of the
// connection's methods.
func (w *writer) abort() {
	w.mu.Lock()
	if w.isDetached {
		w.mu.Unlock()
		return
	}
	w.aborted.Store(true)
	w.c.Abort()
	w.mu.Unlock()
	w.wake()
}

// Hangup tells the session's writer that the transport saw its client go
// away (a request's context ended, a read failed). A write in progress
// finishes and says why it failed; an idle session is closed with
// [CloseGoingAway]. Either way [Session.Detached] follows.
func (s *Session) Hangup() {
	if w := s.writer.Load(); w != nil {
		w.hungUp.Store(true)
		w.wake()
	}
}

func (w *writer) detach() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.isDetached {
		return
	}
	w.isDetached = true
	if w.beat != nil {
		w.beat.Stop()
	}
	close(w.detached)
}

// startWriter counts a writer goroutine that is about to start; it reports
// false once the hub has stopped, when none may start.
func (h *Hub) startWriter() bool {
	h.goMu.Lock()
	defer h.goMu.Unlock()
	if h.writersStopped {
		return false
	}
	h.writers.Add(1)
	return true
}
