package fanoutgrpc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// stream is a call's connection as the session's writer sees it (a
// [fanout.Conn]): it sends the session's frames as Frames messages. The
// hub's writer goroutine sends; the call's goroutine only waits for the
// stream to end, and returns its status then.
//
// A send must give up by its deadline, which neither server's streams
// offer for one message: a send blocked on a client that reads nothing
// returns only when the call ends, or, on net/http, when the response's
// write deadline passes. So a watchdog marks the stream expired when a send
// outlives its deadline, closes the session as a slow consumer and makes
// the send return: on grpc.Server by ending the call (its handler returns,
// and gRPC cancels the send), on net/http ([Server.Handler]) by moving the
// write deadline to now. No write deadline is left on a net/http stream
// between sends, where it would reset an idle HTTP/2 stream, except after
// the last one: there it bounds what net/http writes after the call (the
// status). On net/http the call returns only once the writer is done
// with the stream, as a handler must not leave a write behind.
type stream struct {
	sess *fanout.Session
	send func(*fanoutv1.Frames) error
	max  int
	hc   *httpCall // nil on grpc.Server

	mu      sync.Mutex // guards the fields below; held while a send is interrupted
	ended   bool       // the call returns: no send may start
	sending bool       // a send is in progress
	due     time.Time  // the deadline of the send in progress
	expired bool       // a send outlived its deadline
	status  error      // the call's status, once ended

	end   chan struct{} // closed when ended is set
	watch *time.Timer   // marks the stream expired when a send outlives its deadline
}

func (s *Server) newStream(sess *fanout.Session, send func(*fanoutv1.Frames) error, hc *httpCall) *stream {
	st := &stream{sess: sess, send: send, max: s.opts.MaxBatchBytes, hc: hc, end: make(chan struct{})}
	st.watch = time.AfterFunc(time.Hour, st.timedOut)
	st.watch.Stop()
	return st
}

// attach hands the stream to the session's writer. A Connect stream
// carries server-side subscriptions (serverSubs): its client takes
// subscribed and unsubscribed frames, and may unsubscribe as usual; a
// Subscribe stream's topics are those of its request.
func (s *Server) attach(st *stream, endAfterFinal []string, serverSubs bool) {
	st.sess.Attach(st, &fanout.ConnOptions{
		Heartbeat:           s.opts.Heartbeat,
		EndAfterFinal:       endAfterFinal,
		Transport:           "grpc",
		ServerSubscriptions: serverSubs,
	})
}

// wait returns the call's status once the stream ended, or once the client
// went away. On net/http it returns only once the writer is done with the
// stream.
func (st *stream) wait(ctx context.Context) error {
	select {
	case <-st.end:
		if st.hc != nil {
			// The session is closing already, but for certain: its writer
			// then writes the close frame, which fails at once on an ended
			// stream, and detaches.
			st.sess.Close(fanout.CloseGoingAway, "")
		}
	case <-ctx.Done():
		// A send that the watchdog interrupted on HTTP/2 ends the call's
		// context too: the writer, not this, says why it ended.
		st.finish(errStatus(ctx.Err()))
		st.sess.Hangup()
	}
	if st.hc != nil {
		<-st.sess.Detached()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.status
}

// finish ends the call with status, unless it ended already.
func (st *stream) finish(status error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return
	}
	st.ended, st.status = true, status
	st.watch.Stop()
	close(st.end)
}

// writeTimedOut is the close reason of a call whose send timed out.
const writeTimedOut = "write timed out"

// errWriteTimedOut is what a send that outlived its deadline returns.
var errWriteTimedOut = fmt.Errorf("send: %w", os.ErrDeadlineExceeded)

// timedOut runs when a send outlived its deadline: the stream expires,
// the send is interrupted (net/http) or the call ends, which makes the
// send return (grpc.Server), and the session closes as a slow consumer.
func (st *stream) timedOut() {
	st.mu.Lock()
	// A timer that fired as the previous send returned may run late, during
	// the next send: that one is not due yet.
	if !st.sending || time.Now().Before(st.due) {
		st.mu.Unlock()
		return
	}
	st.expired = true
	if st.hc != nil {
		// Interrupted under the lock: while the send is in progress, the
		// writer cannot detach, so the handler has not returned and the
		// response is still the handler's to use.
		st.hc.rc.SetWriteDeadline(time.Now())
	}
	st.mu.Unlock()
	// On grpc.Server, said before the call ends: the handler releases the
	// session as it returns, before the send returns and the writer could
	// say it.
	st.sess.Close(fanout.CloseSlowConsumer, writeTimedOut)
	st.finish(closeStatus(&fanout.CloseFrame{Code: fanout.CloseSlowConsumer, Reason: writeTimedOut, Reconnect: true}))
}

// sendFrames sends b, a sequence of encoded frames, as one Frames message,
// by deadline; last says whether it is the call's last.
func (st *stream) sendFrames(b []byte, deadline time.Time, last bool) error {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return errors.New("send: stream ended")
	}
	st.sending, st.due = true, deadline
	st.watch.Reset(time.Until(deadline))
	st.mu.Unlock()
	if last && st.hc != nil {
		st.hc.rc.SetWriteDeadline(deadline)
	}
	err := st.send(newFrames(b))
	st.mu.Lock()
	st.sending = false
	st.watch.Stop()
	expired := st.expired
	st.mu.Unlock()
	if err != nil && expired {
		return errWriteTimedOut
	}
	return err
}

// WriteFrames implements [fanout.Conn]: frames go out in as few Frames
// messages as MaxBatchBytes allows.
func (st *stream) WriteFrames(frames []fanout.Frame, deadline time.Time) error {
	return st.writeFrames(frames, deadline, false)
}

// writeFrames writes frames; last says whether they end the call.
func (st *stream) writeFrames(frames []fanout.Frame, deadline time.Time, last bool) error {
	var b []byte
	for i, f := range frames {
		if len(b) > 0 && len(b)+frameSize(f) > st.max {
			// f would take the message past MaxBatchBytes: it starts the
			// next one.
			if err := st.sendFrames(b, deadline, false); err != nil {
				return err
			}
			b = nil
		}
		if b == nil {
			// A new buffer for every Frames message: gRPC may keep a sent
			// message (for tracing, stats handlers), so it is never reused.
			b = make([]byte, 0, st.estimate(frames[i:]))
		}
		var err error
		if b, err = appendFrame(b, f); err != nil {
			return err
		}
	}
	if len(b) > 0 {
		return st.sendFrames(b, deadline, last)
	}
	return nil
}

// WriteHeartbeat implements [fanout.Conn] with an empty Frames message,
// which clients skip.
func (st *stream) WriteHeartbeat(deadline time.Time) error {
	return st.sendFrames(nil, deadline, false)
}

// WriteClose implements [fanout.Conn]: the close frame, then the call ends
// with the status that matches it.
func (st *stream) WriteClose(frames []fanout.Frame, cf *fanout.CloseFrame, deadline time.Time) error {
	err := st.writeFrames(append(frames, fanout.Frame{Type: fanout.FrameClose, Close: cf}), deadline, true)
	st.finish(closeStatus(cf))
	return err
}

// Abort implements [fanout.Conn]: the call ends at once. A send in
// progress returns when grpc.Server cancels the call, as the handler
// returns, or, on net/http, at once: its write deadline moves to now.
func (st *stream) Abort() {
	st.finish(withInfo(codes.Unavailable, "fanout: connection dropped; reconnect and resume", "SESSION_CLOSED", nil))
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.hc != nil && st.sending {
		st.hc.rc.SetWriteDeadline(time.Now()) // as in timedOut
	}
}

// estimate is the size of the Frames message that frames start.
func (st *stream) estimate(frames []fanout.Frame) int {
	n := 0
	for _, f := range frames {
		n += frameSize(f)
		if n >= st.max {
			break
		}
	}
	return n
}
