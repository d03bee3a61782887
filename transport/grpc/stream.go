package fanoutgrpc

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// subscribeService implements fanout.v1.SubscribeService.
type subscribeService struct {
	fanoutv1.UnimplementedSubscribeServiceServer
	s *Server
}

// Subscribe serves a server stream. The subscriptions are checked as a
// whole before the session starts, so that a bad topic refuses the call
// before any frame; they are then made in order by the handler goroutine,
// which writes what each one queued (its history can be long) before making
// the next, and finally writes until the session ends, or until every topic
// delivered its final message: then the call returns OK after a close
// frame 1000 "topic ended".
func (ss subscribeService) Subscribe(req *fanoutv1.SubscribeRequest, stream grpc.ServerStreamingServer[fanoutv1.Frames]) error {
	s := ss.s
	ctx := stream.Context()
	start := time.Now()
	principal, err := s.authenticate(ctx)
	if err != nil {
		return s.refuse(start, err)
	}
	if len(req.Subscriptions) == 0 {
		return s.refuse(start, fmt.Errorf("%w: subscribe: no subscriptions", fanout.ErrBadRequest))
	}
	seen := make(map[string]bool, len(req.Subscriptions))
	for _, sub := range req.Subscriptions {
		if err := fanout.ValidateTopic(sub.Topic); err != nil {
			return s.refuse(start, err)
		}
		if seen[sub.Topic] {
			return s.refuse(start, fmt.Errorf("%w: subscribe: topic %q given twice", fanout.ErrBadRequest, sub.Topic))
		}
		seen[sub.Topic] = true
	}
	sess, err := s.hub.NewSession(principal)
	if err != nil {
		return s.refuse(start, err)
	}
	defer sess.Close(fanout.CloseGoingAway, "")
	st := s.newStream(sess, stream.Send)
	topics := make([]string, len(req.Subscriptions))
	for i, sub := range req.Subscriptions {
		topics[i] = sub.Topic
	}
	s.attach(st, topics)
	s.hub.ObserveHandshake("grpc", start, nil)
	for _, sub := range req.Subscriptions {
		if !sess.Allow() {
			sess.Close(fanout.CloseRateLimited, "")
			st.finish(errStatus(fmt.Errorf("%w: too many subscriptions at once", fanout.ErrRateLimited)))
			break
		}
		if err := sess.Subscribe(ctx, subscribeRequest("", sub)); err != nil {
			st.finish(errStatus(err))
			sess.Close(fanout.CloseNormal, "subscribe failed")
			break
		}
	}
	return st.wait(ctx)
}

// Connect serves a bidirectional stream: the handler goroutine writes, and a
// reader goroutine, which the handler starts, executes the client's
// commands.
func (ss subscribeService) Connect(stream grpc.BidiStreamingServer[fanoutv1.Command, fanoutv1.Frames]) error {
	s := ss.s
	ctx := stream.Context()
	start := time.Now()
	principal, err := s.authenticate(ctx)
	if err != nil {
		return s.refuse(start, err)
	}
	sess, err := s.hub.NewSession(principal)
	if err != nil {
		return s.refuse(start, err)
	}
	st := s.newStream(sess, stream.Send)
	s.attach(st, nil)
	s.hub.ObserveHandshake("grpc", start, nil)

	cmdCtx, cancel := context.WithCancel(ctx)
	reading := make(chan struct{})
	go func() {
		defer close(reading)
		read(cmdCtx, stream, sess)
	}()

	err = st.wait(ctx)
	cancel()
	sess.Close(fanout.CloseGoingAway, "") // commands still running fail fast on the closed session
	select {
	case <-reading:
	case <-ctx.Done():
		<-reading // Recv returns once the stream's context is done
	default:
		// The server ended the stream (a close frame) while the client
		// still has its side open, so the reader is blocked in Recv, which
		// nothing but the end of the stream interrupts. gRPC ends it as
		// this handler returns: it cancels the stream's context before
		// writing the status, precisely so that a receiving goroutine
		// returns. The reader then leaves at once; it holds nothing but the
		// closed session.
	}
	return err
}

// read executes commands until the client ends its side of the stream, the
// stream ends, or the client exceeds its command rate.
func read(ctx context.Context, stream grpc.BidiStreamingServer[fanoutv1.Command, fanoutv1.Frames], sess *fanout.Session) {
	for {
		cmd, err := stream.Recv()
		if err != nil {
			return // io.EOF: the client sends no more, but still receives
		}
		if !sess.Allow() {
			sess.Close(fanout.CloseRateLimited, "")
			return
		}
		command(ctx, sess, cmd)
	}
}

// command executes one command; it replies on failure, and the session
// replies on success.
func command(ctx context.Context, sess *fanout.Session, c *fanoutv1.Command) {
	if len(c.Id) > wire.MaxIDLength {
		sess.Reply(fanout.Reply{Err: fmt.Errorf("%w: id longer than %d bytes", fanout.ErrBadRequest, wire.MaxIDLength)})
		return
	}
	id := c.Id
	var topic string
	var err error
	switch cmd := c.Command.(type) {
	case *fanoutv1.Command_Subscribe:
		topic = cmd.Subscribe.GetTopic()
		err = sess.Subscribe(ctx, subscribeRequest(id, cmd.Subscribe))
	case *fanoutv1.Command_Unsubscribe:
		topic = cmd.Unsubscribe.GetTopic()
		err = sess.Unsubscribe(ctx, id, topic)
	case *fanoutv1.Command_Publish:
		p := cmd.Publish
		topic = p.GetTopic()
		err = sess.Publish(ctx, id, topic, p.GetData(), publishOptions(p.GetKey(), p.GetIdempotencyKey(), p.GetHeaders())...)
	case *fanoutv1.Command_Ping:
		sess.Reply(fanout.Reply{ID: id})
	default:
		err = fmt.Errorf("%w: command without a type", fanout.ErrBadRequest)
	}
	if err != nil {
		if len(topic) > fanout.MaxTopicLength {
			topic = "" // do not echo what cannot be a topic
		}
		sess.Reply(fanout.Reply{ID: id, Topic: topic, Err: err})
	}
}

func subscribeRequest(id string, sub *fanoutv1.Subscription) fanout.SubscribeRequest {
	req := fanout.SubscribeRequest{ID: id, Topic: sub.GetTopic(), Snapshot: sub.GetSnapshot()}
	if p := sub.GetSince(); p != nil {
		req.Since = &fanout.Position{Epoch: p.Epoch, Seq: p.Seq}
	}
	return req
}

// refuse reports a stream refused before it started, and returns its
// status.
func (s *Server) refuse(start time.Time, err error) error {
	s.hub.ObserveHandshake("grpc", start, err)
	return errStatus(err)
}
