package fanoutgrpc

import (
	"context"
	"fmt"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// The calls of the two services, whichever server carries them: grpc.Server
// ([Server.Register]) and net/http ([Server.Handler]) both adapt their
// streams to the small interfaces below and run the same code, so that a
// call behaves alike on gRPC, gRPC-Web and Connect. Each call's ctx holds
// the request's metadata as gRPC incoming metadata, which authenticate
// reads.

// frameStream is the sending side of a call: grpc.ServerStreamingServer
// and connect.ServerStream both have it.
type frameStream interface {
	Send(*fanoutv1.Frames) error
}

// commandStream is a bidirectional call: it also receives the client's
// commands. Recv returns an error once the client ends its side, or the
// call ends.
type commandStream interface {
	frameStream
	Recv() (*fanoutv1.Command, error)
}

// subscribe serves a Subscribe call. The subscriptions are checked as a
// whole before the session starts, so that a bad topic refuses the call
// before any frame; they are then made in order, each writing what it
// queued (its history can be long) before the next, and finally the call
// waits until the session ends, or until every topic delivered its final
// message: then it returns OK after a close frame 1000 "topic ended".
// hc is nil on grpc.Server.
func (s *Server) subscribe(ctx context.Context, req *fanoutv1.SubscribeRequest, out frameStream, hc *httpCall) error {
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
	st := s.newStream(sess, out.Send, hc)
	topics := make([]string, len(req.Subscriptions))
	for i, sub := range req.Subscriptions {
		topics[i] = sub.Topic
	}
	s.attach(st, topics, false)
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

// connect serves a Connect call: the calling goroutine waits for the
// session's writer, and a reader goroutine, which it starts, executes the
// client's commands.
func (s *Server) connect(ctx context.Context, stream commandStream, hc *httpCall) error {
	start := time.Now()
	principal, err := s.authenticate(ctx)
	if err != nil {
		return s.refuse(start, err)
	}
	sess, err := s.hub.NewSession(principal)
	if err != nil {
		return s.refuse(start, err)
	}
	st := s.newStream(sess, stream.Send, hc)
	s.attach(st, nil, true)
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
		<-reading // Recv returns once the call's context is done
	default:
		// The server ended the stream (a close frame) while the client
		// still has its side open, so the reader is blocked in Recv, which
		// nothing but the end of the call interrupts. grpc.Server ends it
		// as this function returns: it cancels the call's context before
		// writing the status, precisely so that a receiving goroutine
		// returns. The reader then leaves at once; it holds nothing but the
		// closed session. net/http must not be read after its handler
		// returns: there the request's body is closed, which makes Recv
		// return, and the reader is waited for.
		if hc != nil {
			hc.closeBody()
			<-reading
		}
	}
	return err
}

// read executes commands until the client ends its side of the stream, the
// stream ends, or the client exceeds its command rate.
func read(ctx context.Context, stream commandStream, sess *fanout.Session) {
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
	case *fanoutv1.Command_Presence:
		topic = cmd.Presence.GetTopic()
		err = sess.Presence(ctx, fanout.PresenceRequest{ID: id, Topic: topic})
	case *fanoutv1.Command_PresenceCount:
		topic = cmd.PresenceCount.GetTopic()
		err = sess.Presence(ctx, fanout.PresenceRequest{ID: id, Topic: topic, Count: true})
	case *fanoutv1.Command_Refresh:
		// Refresh answers either way; the stream goes on.
		sess.Refresh(ctx, id, &fanout.Credentials{Token: cmd.Refresh.GetToken(), Transport: "grpc"})
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

// publish serves a Publish call, as the HTTP publish endpoint
// ([fanout.NewPublishHandler]) does: authenticated, checked, authorized as
// [fanout.ActionPublish], with the same idempotency key rules.
func (s *Server) publish(ctx context.Context, req *fanoutv1.PublishRequest) (*fanoutv1.PublishResponse, error) {
	principal, err := s.authenticate(ctx)
	if err != nil {
		return nil, errStatus(err)
	}
	if err := fanout.ValidateTopic(req.Topic); err != nil {
		return nil, errStatus(err)
	}
	opts := publishOptions(req.Key, req.IdempotencyKey, req.Headers)
	if err := s.hub.Authorize(ctx, principal, req.Topic, fanout.ActionPublish); err != nil {
		return nil, errStatus(err)
	}
	pos, err := s.hub.Publish(ctx, req.Topic, req.Data, opts...)
	if err != nil {
		return nil, errStatus(err)
	}
	return &fanoutv1.PublishResponse{Position: position(pos)}, nil
}

// refuse reports a call refused before its stream started, and returns its
// status.
func (s *Server) refuse(start time.Time, err error) error {
	s.hub.ObserveHandshake("grpc", start, err)
	return errStatus(err)
}
