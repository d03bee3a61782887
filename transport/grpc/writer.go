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
// hub's writer goroutine sends; the call's handler goroutine only waits for
// the stream to end, and returns its status then.
//
// A gRPC send has no deadline: one blocked on a client that reads nothing
// returns only when the call ends, which is when its handler returns. So a
// watchdog ends the call when a send outlives its deadline, and the send
// returns then.
type stream struct {
	sess *fanout.Session
	send func(*fanoutv1.Frames) error
	max  int

	mu      sync.Mutex // guards the fields below
	ended   bool       // the handler returns: no send may start
	sending bool       // a send is in progress
	status  error      // the call's status, once ended

	end   chan struct{} // closed when ended is set
	watch *time.Timer   // ends the call when a send outlives its deadline
}

func (s *Server) newStream(sess *fanout.Session, send func(*fanoutv1.Frames) error) *stream {
	st := &stream{sess: sess, send: send, max: s.opts.MaxBatchBytes, end: make(chan struct{})}
	st.watch = time.AfterFunc(time.Hour, st.timedOut)
	st.watch.Stop()
	return st
}

// attach hands the stream to the session's writer.
func (s *Server) attach(st *stream, endAfterFinal []string) {
	st.sess.Attach(st, &fanout.ConnOptions{Heartbeat: s.opts.Heartbeat, EndAfterFinal: endAfterFinal, Transport: "grpc"})
}

// wait returns the call's status once the stream ended, or once the client
// went away.
func (st *stream) wait(ctx context.Context) error {
	select {
	case <-st.end:
	case <-ctx.Done():
		st.finish(errStatus(ctx.Err()))
		st.sess.Hangup()
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

// timedOut runs when a send outlived its deadline: the call ends, which
// makes the send return.
func (st *stream) timedOut() {
	st.mu.Lock()
	sending := st.sending
	st.mu.Unlock()
	if sending {
		// Said here, first: the handler releases the session as it
		// returns, before the send returns and the writer could say it.
		st.sess.Close(fanout.CloseSlowConsumer, writeTimedOut)
		st.finish(closeStatus(&fanout.CloseFrame{Code: fanout.CloseSlowConsumer, Reason: writeTimedOut, Reconnect: true}))
	}
}

// sendFrames sends b, a sequence of encoded frames, as one Frames message,
// by deadline.
func (st *stream) sendFrames(b []byte, deadline time.Time) error {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return errors.New("send: stream ended")
	}
	st.sending = true
	st.watch.Reset(time.Until(deadline))
	st.mu.Unlock()
	err := st.send(newFrames(b))
	st.mu.Lock()
	st.sending = false
	st.watch.Stop()
	timedOut := st.ended && err != nil && time.Now().After(deadline)
	st.mu.Unlock()
	if timedOut {
		return errWriteTimedOut
	}
	return err
}

// WriteFrames implements [fanout.Conn]: frames go out in as few Frames
// messages as MaxBatchBytes allows.
func (st *stream) WriteFrames(frames []fanout.Frame, deadline time.Time) error {
	var b []byte
	for i, f := range frames {
		if len(b) > 0 && len(b)+frameSize(f) > st.max {
			// f would take the message past MaxBatchBytes: it starts the
			// next one.
			if err := st.sendFrames(b, deadline); err != nil {
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
		return st.sendFrames(b, deadline)
	}
	return nil
}

// WriteHeartbeat implements [fanout.Conn] with an empty Frames message,
// which clients skip.
func (st *stream) WriteHeartbeat(deadline time.Time) error {
	return st.sendFrames(nil, deadline)
}

// WriteClose implements [fanout.Conn]: the close frame, then the call ends
// with the status that matches it.
func (st *stream) WriteClose(frames []fanout.Frame, cf *fanout.CloseFrame, deadline time.Time) error {
	err := st.WriteFrames(append(frames, fanout.Frame{Type: fanout.FrameClose, Close: cf}), deadline)
	st.finish(closeStatus(cf))
	return err
}

// Abort implements [fanout.Conn]: the call ends at once. A send in
// progress returns when gRPC cancels the call, as the handler returns.
func (st *stream) Abort() {
	st.finish(withInfo(codes.Unavailable, "fanout: connection dropped; reconnect and resume", "SESSION_CLOSED", nil))
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
