package fanoutgrpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// env is a hub served over a real loopback gRPC server, and a client
// connection to it.
type env struct {
	hub  *fanout.Hub
	conn *grpc.ClientConn
	sub  fanoutv1.SubscribeServiceClient
	pub  fanoutv1.PublishServiceClient
}

type envOptions struct {
	hub    *fanout.HubOptions
	server *fanoutgrpc.Options
	dial   []grpc.DialOption
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	hub, err := fanout.NewHub(o.hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.WaitForHandlers(true))
	fanoutgrpc.New(hub, o.server).Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn := dial(t, lis.Addr().String(), o.dial...)
	return &env{hub: hub, conn: conn, sub: fanoutv1.NewSubscribeServiceClient(conn), pub: fanoutv1.NewPublishServiceClient(conn)}
}

// dial opens a client connection to target.
func dial(t testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// testCtx bounds a test's calls, so that a failure cannot hang the run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// frames reads a stream frame by frame.
type frames struct {
	recv    func() (*fanoutv1.Frames, error)
	pending []*fanoutv1.Frame
	batches int // Frames messages received
	largest int // the size of the largest, in bytes
}

func (f *frames) next() (*fanoutv1.Frame, error) {
	for len(f.pending) == 0 {
		fs, err := f.recv()
		if err != nil {
			return nil, err
		}
		f.batches++
		f.largest = max(f.largest, proto.Size(fs))
		f.pending = fs.Frames
	}
	fr := f.pending[0]
	f.pending = f.pending[1:]
	return fr, nil
}

func (f *frames) must(t testing.TB) *fanoutv1.Frame {
	t.Helper()
	fr, err := f.next()
	if err != nil {
		t.Fatalf("next frame: %v", err)
	}
	return fr
}

func (f *frames) reply(t testing.TB) *fanoutv1.Reply {
	t.Helper()
	fr := f.must(t)
	if fr.GetReply() == nil {
		t.Fatalf("got %v, want a reply", fr)
	}
	return fr.GetReply()
}

func (f *frames) message(t testing.TB) *fanoutv1.Message {
	t.Helper()
	fr := f.must(t)
	if fr.GetMessage() == nil {
		t.Fatalf("got %v, want a message", fr)
	}
	return fr.GetMessage()
}

// end reads the close frame and the status after it.
func (f *frames) end(t testing.TB) (*fanoutv1.Close, error) {
	t.Helper()
	fr := f.must(t)
	if fr.GetClose() == nil {
		t.Fatalf("got %v, want a close frame", fr)
	}
	_, err := f.next()
	if err == nil {
		t.Fatalf("got a frame after the close frame, want the end of the stream")
	}
	if err == io.EOF {
		err = nil
	}
	return fr.GetClose(), err
}

func subscribe(t testing.TB, ctx context.Context, e *env, subs ...*fanoutv1.Subscription) *frames {
	t.Helper()
	st, err := e.sub.Subscribe(ctx, &fanoutv1.SubscribeRequest{Subscriptions: subs})
	if err != nil {
		t.Fatal(err)
	}
	return &frames{recv: st.Recv}
}

// connect opens a Connect stream.
type connectStream struct {
	frames
	st grpc.BidiStreamingClient[fanoutv1.Command, fanoutv1.Frames]
}

func connect(t testing.TB, ctx context.Context, e *env) *connectStream {
	t.Helper()
	st, err := e.sub.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &connectStream{frames: frames{recv: st.Recv}, st: st}
}

func (c *connectStream) send(t testing.TB, cmd *fanoutv1.Command) {
	t.Helper()
	if err := c.st.Send(cmd); err != nil {
		t.Fatalf("send %v: %v", cmd, err)
	}
}

func publish(t testing.TB, h *fanout.Hub, topic, data string, opts ...fanout.PublishOption) fanout.Position {
	t.Helper()
	p, err := h.Publish(context.Background(), topic, []byte(data), opts...)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return p
}

func wantCode(t testing.TB, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got status %v (%v), want %v", got, err, want)
	}
}

// errorInfo returns the reason and metadata of the status's ErrorInfo.
func errorInfo(t testing.TB, err error) (string, map[string]string) {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.Domain != "fanout" {
				t.Fatalf("got ErrorInfo domain %q, want fanout", info.Domain)
			}
			return info.Reason, info.Metadata
		}
	}
	t.Fatalf("got status %v without ErrorInfo", err)
	return "", nil
}

// closes is an observer that reports the close code of every session.
type closes chan fanout.CloseCode

func (c closes) Observe(e fanout.Event) {
	if e.Type == fanout.EventSessionClose {
		select {
		case c <- e.Code:
		default:
			panic("closes: observer channel full")
		}
	}
}

func waitClose(t testing.TB, ctx context.Context, c closes) fanout.CloseCode {
	t.Helper()
	select {
	case code := <-c:
		return code
	case <-ctx.Done():
		t.Fatal("no session closed")
	}
	return 0
}

var errNoToken = errors.New("no valid token")
