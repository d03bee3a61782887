package fanoutgrpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"github.com/gofanout/fanout/transport/transporttest"
)

// TestConformance runs the transport suite twice over real loopback gRPC:
// against Subscribe (subscriptions in the request, what gRPC-Web uses) and
// against Connect (subscribe, unsubscribe and publish commands).
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		connect bool
		f       transporttest.Features
	}{
		{"Subscribe", false, transporttest.Features{}},
		{"Connect", true, transporttest.Features{Commands: true, Publish: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			transporttest.Run(t, func(t *testing.T, hub *fanout.Hub) transporttest.Transport {
				return serve(t, hub, tc.connect)
			}, tc.f)
		})
	}
}

// transport serves a hub on a loopback gRPC server.
type transport struct {
	client  fanoutv1.SubscribeServiceClient
	connect bool
}

func serve(t *testing.T, hub *fanout.Hub, connect bool) *transport {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.WaitForHandlers(true))
	fanoutgrpc.New(hub, nil).Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &transport{client: fanoutv1.NewSubscribeServiceClient(conn), connect: connect}
}

func (tr *transport) Dial(ctx context.Context, o transporttest.DialOptions) (transporttest.Client, error) {
	sctx, cancel := context.WithCancel(context.Background())
	if o.Token != "" {
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+o.Token)
	}
	c := &client{cancel: cancel, batches: make(chan batch), done: make(chan struct{}), stop: make(chan struct{})}
	if !tr.connect {
		req := &fanoutv1.SubscribeRequest{}
		for _, s := range o.Subscriptions {
			req.Subscriptions = append(req.Subscriptions, subscription(s))
		}
		st, err := tr.client.Subscribe(sctx, req)
		if err != nil {
			cancel()
			return nil, refusal(err)
		}
		c.start(st.Recv)
		return c, nil
	}
	st, err := tr.client.Connect(sctx)
	if err != nil {
		cancel()
		return nil, refusal(err)
	}
	c.sendCmd = st.Send
	c.start(st.Recv)
	for i, s := range o.Subscriptions {
		err := c.Subscribe(ctx, fmt.Sprint("dial-", i), s)
		if err == io.EOF {
			// The server ended the stream (it refused the call): the
			// status comes from Recv.
			for err == io.EOF {
				_, err = c.Next(ctx)
			}
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// BadInputs are Connect commands that the server must answer with errors.
func (tr *transport) BadInputs() []transporttest.BadInput {
	if !tr.connect {
		return []transporttest.BadInput{
			tr.badSubscribe("no subscriptions", fanout.ErrBadRequest, &fanoutv1.SubscribeRequest{}),
			tr.badSubscribe("invalid topic", fanout.ErrInvalidTopic, &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: "a b"}}}),
			tr.badSubscribe("topic twice", fanout.ErrBadRequest, &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: "t"}, {Topic: "t"}}}),
		}
	}
	return []transporttest.BadInput{
		tr.badCommand("no command", fanout.ErrBadRequest, &fanoutv1.Command{Id: "x"}),
		tr.badCommand("long id", fanout.ErrBadRequest, &fanoutv1.Command{Id: strings.Repeat("i", 65), Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}}),
		tr.badCommand("invalid topic", fanout.ErrInvalidTopic, sub("x", "a\x00b")),
		tr.badCommand("long topic", fanout.ErrInvalidTopic, sub("x", strings.Repeat("t", 1000))),
		tr.badCommand("empty subscribe", fanout.ErrInvalidTopic, &fanoutv1.Command{Id: "x", Command: &fanoutv1.Command_Subscribe{}}),
		tr.badCommand("long idempotency key", fanout.ErrBadRequest, &fanoutv1.Command{Id: "x", Command: &fanoutv1.Command_Publish{Publish: &fanoutv1.PublishRequest{Topic: "t", IdempotencyKey: strings.Repeat("k", fanout.MaxIdempotencyKeyLength+1)}}}),
	}
}

func (tr *transport) badSubscribe(name string, want error, req *fanoutv1.SubscribeRequest) transporttest.BadInput {
	return transporttest.BadInput{Name: name, Want: want, Send: func(ctx context.Context) (transporttest.Event, error) {
		st, err := tr.client.Subscribe(ctx, req)
		if err == nil {
			_, err = st.Recv()
		}
		if err == nil {
			return transporttest.Event{}, errors.New("the server accepted the request")
		}
		return transporttest.Event{}, refusal(err)
	}}
}

func (tr *transport) badCommand(name string, want error, cmd *fanoutv1.Command) transporttest.BadInput {
	return transporttest.BadInput{Name: name, Want: want, Send: func(ctx context.Context) (transporttest.Event, error) {
		c, err := tr.Dial(ctx, transporttest.DialOptions{})
		if err != nil {
			return transporttest.Event{}, err
		}
		defer c.Close()
		if err := c.(*client).send(cmd); err != nil {
			return transporttest.Event{}, err
		}
		return c.Next(ctx)
	}}
}

func subscription(s transporttest.Subscription) *fanoutv1.Subscription {
	p := &fanoutv1.Subscription{Topic: s.Topic, Snapshot: s.Snapshot}
	if s.Since != nil {
		p.Since = &fanoutv1.Position{Epoch: s.Since.Epoch, Seq: s.Since.Seq}
	}
	return p
}

// batch is what the client's receiver got from one Recv.
type batch struct {
	events []transporttest.Event
	err    error
}

// client is one stream. Its receiver goroutine calls Recv only when Next
// wants more, so that a client that does not call Next reads nothing, as
// the slow-consumer scenario needs.
type client struct {
	cancel  context.CancelFunc
	batches chan batch
	done    chan struct{} // closed when the receiver ends
	stop    chan struct{} // closed by Close

	stopOnce sync.Once
	sendCmd  func(*fanoutv1.Command) error // nil on Subscribe streams
	closeCmd func()                        // ends the sending side; may be nil

	sendMu sync.Mutex // serializes stream.Send

	// Owned by the goroutine calling Next.
	pending []transporttest.Event
	ended   error // set after a close event or the end of the stream
}

func (c *client) start(recv func() (*fanoutv1.Frames, error)) {
	go func() {
		defer close(c.done)
		for {
			fs, err := recv()
			var b batch
			if err != nil {
				b.err = err
			} else {
				for _, f := range fs.Frames {
					ev, err := event(f)
					if err != nil {
						b.err = err
						break
					}
					b.events = append(b.events, ev)
				}
			}
			select {
			case c.batches <- b:
			case <-c.stop:
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
}

func (c *client) Next(ctx context.Context) (transporttest.Event, error) {
	for len(c.pending) == 0 {
		if c.ended != nil {
			return transporttest.Event{}, c.ended
		}
		select {
		case b := <-c.batches:
			c.pending = b.events
			if b.err != nil {
				c.ended = streamEnd(b.err)
			}
		case <-ctx.Done():
			return transporttest.Event{}, ctx.Err()
		case <-c.done:
			return transporttest.Event{}, errors.New("client closed")
		}
	}
	ev := c.pending[0]
	c.pending = c.pending[1:]
	if ev.Type == transporttest.EventClose {
		c.ended = io.EOF
	}
	return ev, nil
}

// streamEnd is what Next returns once the stream ended without a close.
func streamEnd(err error) error {
	if err == io.EOF {
		return io.EOF
	}
	return refusal(err)
}

func (c *client) send(cmd *fanoutv1.Command) error {
	if c.sendCmd == nil {
		return transporttest.ErrUnsupported
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.sendCmd(cmd)
}

func (c *client) Subscribe(_ context.Context, id string, s transporttest.Subscription) error {
	return c.send(&fanoutv1.Command{Id: id, Command: &fanoutv1.Command_Subscribe{Subscribe: subscription(s)}})
}

func (c *client) Unsubscribe(_ context.Context, id, topic string) error {
	return c.send(unsub(id, topic))
}

func (c *client) Publish(_ context.Context, id, topic string, data []byte) error {
	return c.send(&fanoutv1.Command{Id: id, Command: &fanoutv1.Command_Publish{Publish: &fanoutv1.PublishRequest{Topic: topic, Data: data}}})
}

func (c *client) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	c.cancel()
	if c.closeCmd != nil {
		c.sendMu.Lock()
		c.closeCmd()
		c.sendMu.Unlock()
	}
	<-c.done
	return nil
}

// event converts a frame into the suite's event.
func event(f *fanoutv1.Frame) (transporttest.Event, error) {
	switch x := f.Frame.(type) {
	case *fanoutv1.Frame_Reply:
		r := x.Reply
		ev := transporttest.Event{Type: transporttest.EventReply, ID: r.Id, Topic: r.Topic, Position: pos(r.Position), Recovered: r.Recovered}
		if r.Error != nil {
			if r.Error.Code == "" {
				return ev, errors.New("reply error without code")
			}
			ev.Error = r.Error.Code
		}
		return ev, nil
	case *fanoutv1.Frame_Message:
		return message(x.Message), nil
	case *fanoutv1.Frame_Snapshot:
		s := x.Snapshot
		if s.Position == nil {
			return transporttest.Event{}, errors.New("snapshot without position")
		}
		ev := transporttest.Event{Type: transporttest.EventSnapshot, Topic: s.Topic, Position: pos(s.Position), Items: []transporttest.Event{}}
		for _, m := range s.Items {
			ev.Items = append(ev.Items, message(m))
		}
		return ev, nil
	case *fanoutv1.Frame_Close:
		c := x.Close
		return transporttest.Event{Type: transporttest.EventClose, Code: fanout.CloseCode(c.Code), Reason: c.Reason, Reconnect: c.Reconnect}, nil
	}
	return transporttest.Event{}, fmt.Errorf("frame of no known type: %v", f)
}

func message(m *fanoutv1.Message) transporttest.Event {
	return transporttest.Event{Type: transporttest.EventMessage, Topic: m.Topic, Position: fanout.Position{Epoch: m.Epoch, Seq: m.Seq}, Key: m.Key, Data: m.Data}
}

func pos(p *fanoutv1.Position) fanout.Position {
	return fanout.Position{Epoch: p.GetEpoch(), Seq: p.GetSeq()}
}

// sentinels maps the protocol's error codes to fanout's errors.
var sentinels = map[string]error{
	"invalid_topic":          fanout.ErrInvalidTopic,
	"unauthenticated":        fanout.ErrUnauthenticated,
	"forbidden":              fanout.ErrForbidden,
	"already_subscribed":     fanout.ErrAlreadySubscribed,
	"not_subscribed":         fanout.ErrNotSubscribed,
	"too_many_subscriptions": fanout.ErrTooManySubscriptions,
	"rate_limited":           fanout.ErrRateLimited,
	"too_large":              fanout.ErrTooLarge,
	"bad_request":            fanout.ErrBadRequest,
	"unavailable":            fanout.ErrUnavailable,
	"closed":                 fanout.ErrClosed,
}

// refusal converts a gRPC status into an error matching the fanout
// sentinel of its code, and of its ErrorInfo reason.
func refusal(err error) error {
	st := status.Convert(grpcStatus(err))
	var byCode error
	switch st.Code() {
	case codes.Unauthenticated:
		byCode = fanout.ErrUnauthenticated
	case codes.PermissionDenied:
		byCode = fanout.ErrForbidden
	case codes.InvalidArgument:
		byCode = fanout.ErrBadRequest
	case codes.Unavailable:
		byCode = fanout.ErrUnavailable
	default:
		return err
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == "fanout" {
			if s := sentinels[strings.ToLower(info.Reason)]; s != nil {
				return fmt.Errorf("%w (%w): %w", byCode, s, err)
			}
		}
	}
	return fmt.Errorf("%w: %w", byCode, err)
}
