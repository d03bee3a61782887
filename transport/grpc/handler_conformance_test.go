package fanoutgrpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	connectrpc "connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1/fanoutv1connect"
	"github.com/gofanout/fanout/transport/transporttest"
)

// TestHandlerConformance runs the transport suite against Server.Handler
// on a real loopback net/http server, over each of its protocols and both
// streaming calls: gRPC with grpc-go's client (over h2c), gRPC-Web and
// Connect with connectrpc.com/connect's client. Subscribe goes over
// HTTP/1.1 on gRPC-Web and Connect, as from a browser; the bidirectional
// Connect call needs HTTP/2.
func TestHandlerConformance(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{"grpc", "grpcweb", "connect"} {
		for _, call := range []string{"Subscribe", "Connect"} {
			t.Run(protocol+"/"+call, func(t *testing.T) {
				t.Parallel()
				f := transporttest.Features{}
				if call == "Connect" {
					f = transporttest.Features{Commands: true, Publish: true}
				}
				transporttest.Run(t, func(t *testing.T, hub *fanout.Hub) transporttest.Transport {
					return serveHandler(t, hub, nil, protocol, call == "Connect")
				}, f)
			})
		}
	}
}

// handlerServer serves hub's Server.Handler on a loopback HTTP server that
// speaks HTTP/1.1 and h2c.
func handlerServer(t testing.TB, hub *fanout.Hub, opts *fanoutgrpc.Options) *httptest.Server {
	t.Helper()
	return handlerServerFor(t, fanoutgrpc.New(hub, opts).Handler())
}

// handlerServerFor serves h on a loopback HTTP server that speaks HTTP/1.1
// and h2c.
func handlerServerFor(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

// httpClient is a client of srv: h2c when http2, HTTP/1.1 otherwise.
func httpClient(t testing.TB, http2 bool) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	if http2 {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// clientOption selects the protocol of a connect client.
func clientOption(protocol string) []connectrpc.ClientOption {
	switch protocol {
	case "grpc":
		return []connectrpc.ClientOption{connectrpc.WithGRPC()}
	case "grpcweb":
		return []connectrpc.ClientOption{connectrpc.WithGRPCWeb()}
	}
	return nil
}

func serveHandler(t *testing.T, hub *fanout.Hub, opts *fanoutgrpc.Options, protocol string, bidi bool) transporttest.Transport {
	srv := handlerServer(t, hub, opts)
	if protocol == "grpc" {
		conn := dial(t, srv.Listener.Addr().String())
		return &transport{client: fanoutv1.NewSubscribeServiceClient(conn), connect: bidi}
	}
	hc := httpClient(t, bidi)
	return &connectTransport{client: fanoutv1connect.NewSubscribeServiceClient(hc, srv.URL, clientOption(protocol)...), connect: bidi}
}

// connectTransport is a client of the handler through
// connectrpc.com/connect, on gRPC-Web or Connect.
type connectTransport struct {
	client  fanoutv1connect.SubscribeServiceClient
	connect bool
}

func (tr *connectTransport) Dial(ctx context.Context, o transporttest.DialOptions) (transporttest.Client, error) {
	sctx, cancel := context.WithCancel(context.Background())
	c := &client{cancel: cancel, batches: make(chan batch), done: make(chan struct{}), stop: make(chan struct{})}
	if !tr.connect {
		req := connectrpc.NewRequest(&fanoutv1.SubscribeRequest{})
		for _, s := range o.Subscriptions {
			req.Msg.Subscriptions = append(req.Msg.Subscriptions, subscription(s))
		}
		if o.Token != "" {
			req.Header().Set("Authorization", "Bearer "+o.Token)
		}
		st, err := tr.client.Subscribe(sctx, req)
		if err != nil {
			cancel()
			return nil, refusal(err)
		}
		c.start(serverStreamRecv(st))
		return c, nil
	}
	st := tr.client.Connect(sctx)
	if o.Token != "" {
		st.RequestHeader().Set("Authorization", "Bearer "+o.Token)
	}
	c.sendCmd = func(cmd *fanoutv1.Command) error {
		if err := st.Send(cmd); errors.Is(err, io.EOF) {
			return io.EOF
		} else if err != nil {
			return err
		}
		return nil
	}
	// A cancelled context alone does not end a connect-go client's
	// bidirectional stream while its request body is open and a Receive
	// waits: ending the request lets the HTTP/2 transport reset the stream.
	c.closeCmd = func() { st.CloseRequest() }
	c.start(func() (*fanoutv1.Frames, error) {
		fs, err := st.Receive()
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return fs, err
	})
	for i, s := range o.Subscriptions {
		err := c.Subscribe(ctx, fmt.Sprint("dial-", i), s)
		if err == io.EOF {
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

// serverStreamRecv adapts a connect server stream to Recv.
func serverStreamRecv(st *connectrpc.ServerStreamForClient[fanoutv1.Frames]) func() (*fanoutv1.Frames, error) {
	return func() (*fanoutv1.Frames, error) {
		if st.Receive() {
			return st.Msg(), nil
		}
		if err := st.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
}

// BadInputs are the same malformed requests as on grpc.Server.
func (tr *connectTransport) BadInputs() []transporttest.BadInput {
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
	}
}

func (tr *connectTransport) badSubscribe(name string, want error, req *fanoutv1.SubscribeRequest) transporttest.BadInput {
	return transporttest.BadInput{Name: name, Want: want, Send: func(ctx context.Context) (transporttest.Event, error) {
		st, err := tr.client.Subscribe(ctx, connectrpc.NewRequest(req))
		if err == nil {
			defer st.Close()
			_, err = serverStreamRecv(st)()
		}
		if err == nil || err == io.EOF {
			return transporttest.Event{}, errors.New("the server accepted the request")
		}
		return transporttest.Event{}, refusal(err)
	}}
}

func (tr *connectTransport) badCommand(name string, want error, cmd *fanoutv1.Command) transporttest.BadInput {
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

// grpcStatus converts a connect error into the gRPC status it carries, with
// its details; other errors are returned as they are.
func grpcStatus(err error) error {
	var ce *connectrpc.Error
	if !errors.As(err, &ce) {
		return err
	}
	p := status.New(codes.Code(ce.Code()), ce.Message()).Proto()
	for _, d := range ce.Details() {
		p.Details = append(p.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
	}
	return status.FromProto(p).Err()
}
