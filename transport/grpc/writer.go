package fanoutgrpc

import (
	"context"
	"slices"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// writer is a stream's only writer: it sends the session's frames as
// Frames messages, and heartbeats while there are none.
type writer struct {
	sess      *fanout.Session
	send      func(*fanoutv1.Frames) error
	max       int
	heartbeat time.Duration // <= 0: none
	buf       []fanout.Frame
	last      time.Time // of the last send

	// open holds the topics of a Subscribe stream that have not yet
	// delivered their final message; the stream ends once it is empty.
	// Nil for Connect, whose streams do not end by themselves.
	open map[string]bool
}

func (s *Server) newWriter(sess *fanout.Session, send func(*fanoutv1.Frames) error) *writer {
	return &writer{
		sess:      sess,
		send:      send,
		max:       s.opts.MaxBatchBytes,
		heartbeat: s.opts.Heartbeat,
		buf:       make([]fanout.Frame, 0, 256),
	}
}

// run writes until the session ends, and returns the stream's status.
func (w *writer) run(ctx context.Context) error {
	w.last = time.Now()
	wait, stop := w.beat(ctx)
	defer func() { stop() }()
	for {
		frames, err := w.sess.Next(wait, w.buf)
		switch {
		case err == nil:
			if done, err := w.write(frames); done {
				return err
			}
		case ctx.Err() != nil || wait.Err() == nil:
			return errStatus(err)
		default: // a heartbeat may be due
			if time.Since(w.last) >= w.heartbeat {
				if err := w.sendFrames(nil); err != nil {
					return err
				}
			}
			stop()
			wait, stop = w.beat(ctx)
		}
	}
}

// beat returns a context that ends when the next heartbeat is due, and a
// function that releases it. There is one per heartbeat period, not one
// per batch.
func (w *writer) beat(ctx context.Context) (context.Context, func()) {
	if w.heartbeat <= 0 {
		return ctx, func() {}
	}
	c, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(w.heartbeat-time.Since(w.last), cancel)
	return c, func() {
		t.Stop()
		cancel()
	}
}

// expired is a context that has ended, for a Next that does not wait.
var expired = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// flush writes what the session has queued, without waiting for more.
func (w *writer) flush() (done bool, err error) {
	for {
		frames, err := w.sess.Next(expired, w.buf)
		if err != nil {
			return false, nil // nothing queued
		}
		if done, err := w.write(frames); done {
			return true, err
		}
	}
}

// endReason is the reason of the close frame that ends a Subscribe stream
// whose topics all delivered their final message.
const endReason = "topic ended"

// topicEnded is the close frame of a Subscribe stream whose topics all
// ended: the client has nothing more to wait for.
var topicEnded = fanout.Frame{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseNormal, Reason: endReason}}

// follow makes the stream end once each of topics delivered its final
// message.
func (w *writer) follow(topics []string) {
	w.open = make(map[string]bool, len(topics))
	for _, t := range topics {
		w.open[t] = true
	}
}

// ends reports whether f is to be sent, and whether it ends the last open
// topic of a stream that follows topics: a message published
// [fanout.WithFinal], or a snapshot that holds one. What a topic queues
// after its end is not sent.
func (w *writer) ends(f fanout.Frame) (send, last bool) {
	if w.open == nil {
		return true, false
	}
	var topic string
	var final bool
	switch f.Type {
	case fanout.FrameMessage:
		topic, final = f.Message.Topic, f.Message.Final()
	case fanout.FrameSnapshot:
		topic, final = f.Snapshot.Topic, slices.ContainsFunc(f.Snapshot.Items, (*fanout.Message).Final)
	default:
		return true, false
	}
	if !w.open[topic] {
		return false, false
	}
	if final {
		delete(w.open, topic)
	}
	return true, final && len(w.open) == 0
}

// write sends frames in as few Frames messages as MaxBatchBytes allows.
// After the close frame (or a failed send) it reports done, with the
// stream's status. When the frames end the last open topic of a Subscribe
// stream, it adds a close frame 1000 "topic ended" after the one that does,
// in the same Frames message, and reports done with status OK.
func (w *writer) write(frames []fanout.Frame) (done bool, err error) {
	defer clear(frames) // let the sent messages go
	var b []byte
	for i, f := range frames {
		send, last := w.ends(f)
		if !send {
			continue
		}
		if last {
			// The rest of the batch can only be what the stream's topics
			// published after their end.
			if b, err = appendFrame(b, f); err == nil {
				b, err = appendFrame(b, topicEnded)
			}
			if err != nil {
				return true, errStatus(err)
			}
			w.sess.Close(fanout.CloseNormal, endReason)
			return true, w.sendFrames(b)
		}
		if len(b) > 0 && len(b)+frameSize(f) > w.max {
			// f would take the message past MaxBatchBytes: it starts the
			// next one.
			if err := w.sendFrames(b); err != nil {
				return true, err
			}
			b = nil
		}
		if b == nil {
			// A new buffer for every Frames message: gRPC may keep a sent
			// message (for tracing, stats handlers), so it is never reused.
			b = make([]byte, 0, w.estimate(frames[i:]))
		}
		if b, err = appendFrame(b, f); err != nil {
			return true, errStatus(err)
		}
		if f.Type == fanout.FrameClose {
			if err := w.sendFrames(b); err != nil {
				return true, err
			}
			return true, closeStatus(f.Close)
		}
	}
	if len(b) > 0 {
		if err := w.sendFrames(b); err != nil {
			return true, err
		}
	}
	return false, nil
}

// sendFrames sends b, a sequence of encoded frames, as one Frames message.
func (w *writer) sendFrames(b []byte) error {
	if err := w.send(newFrames(b)); err != nil {
		return err
	}
	w.last = time.Now()
	return nil
}

// estimate is the size of the Frames message that frames start.
func (w *writer) estimate(frames []fanout.Frame) int {
	n := 0
	for _, f := range frames {
		n += frameSize(f)
		if n >= w.max {
			break
		}
	}
	return n
}

// end closes the session as the stream ends; a close that already happened
// keeps its code.
func (w *writer) end(ctx context.Context) {
	code := fanout.CloseNormal
	if ctx.Err() != nil {
		code = fanout.CloseGoingAway
	}
	w.sess.Close(code, "")
}
