package fanoutgrpc

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1/fanoutv1connect"
)

// MaxRequestBytes bounds one request message of the [Server.Handler]
// calls (a SubscribeRequest, a Command, a PublishRequest): 4 MiB, the
// default of grpc.Server. A larger one fails its call with
// ResourceExhausted.
const MaxRequestBytes = 4 << 20

// Handler returns a net/http handler that serves the same services as
// [Server.Register], with the same calls, over the three protocols of
// connectrpc.com/connect on one port: gRPC (HTTP/2, so h2c or TLS), gRPC-Web
// and Connect (HTTP/1.1 or HTTP/2). Browsers use gRPC-Web or Connect
// without a proxy such as Envoy. Mount it at the root of a mux or under
// its two prefixes:
//
//	h := fanoutgrpc.New(hub, nil).Handler()
//	mux.Handle("/fanout.v1.SubscribeService/", h)
//	mux.Handle("/fanout.v1.PublishService/", h)
//
// Connect is a bidirectional stream: it needs HTTP/2, and browsers cannot
// make it over any protocol (fetch does not stream a request body); they
// use Subscribe. Subscribe and Publish work over HTTP/1.1 as well.
//
// Each call's metadata is its HTTP request's headers: the bearer token of
// an "Authorization" header, and the headers as [fanout.Credentials]
// Header. Responses are not compressed (each message is encoded once for
// every stream that carries it); gzip-compressed requests are accepted.
// Request messages are bounded by [MaxRequestBytes]. The handler sets no
// CORS headers: a page of another origin needs the host to answer CORS
// (docs/PROTOCOL.md lists the headers).
//
// A send waits at most [fanout.HubOptions.WriteTimeout], through the
// response's write deadline, so the handler needs a ResponseWriter that
// supports http.ResponseController's SetWriteDeadline: net/http's own, or
// a middleware's that has an Unwrap method. Calls through one that does
// not fail with codes.Internal.
func (s *Server) Handler() http.Handler {
	opts := []connect.HandlerOption{
		connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithCompressMinBytes(math.MaxInt),
	}
	mux := http.NewServeMux()
	mux.Handle(fanoutv1connect.NewSubscribeServiceHandler(connectSubscribe{s: s}, opts...))
	mux.Handle(fanoutv1connect.NewPublishServiceHandler(connectPublish{s: s}, opts...))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hc := &httpCall{rc: http.NewResponseController(w), body: r.Body}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), httpCallKey{}, hc)))
	})
}

// httpCall is what a call carried by net/http needs besides its stream:
// the response, whose write deadline bounds each send, and the request's
// body, which ends a blocked Recv when closed.
type httpCall struct {
	rc   *http.ResponseController
	body io.Closer
}

type httpCallKey struct{}

// closeBody makes a Recv in progress return.
func (hc *httpCall) closeBody() { hc.body.Close() }

// errNoWriteDeadline refuses a call whose sends could not be bounded.
var errNoWriteDeadline = status.Error(codes.Internal, "fanout: the server cannot bound its writes: its ResponseWriter does not support SetWriteDeadline")

// incoming returns ctx with the call's HTTP request headers as gRPC
// incoming metadata, as grpc.Server gives them.
func incoming(ctx context.Context, h http.Header) context.Context {
	md := make(metadata.MD, len(h))
	for k, vs := range h {
		k = strings.ToLower(k)
		md[k] = append(md[k], vs...)
	}
	return metadata.NewIncomingContext(ctx, md)
}

// streaming returns the httpCall of a streaming call, once it checked that
// its sends can be bounded.
func streaming(ctx context.Context) (*httpCall, error) {
	hc, _ := ctx.Value(httpCallKey{}).(*httpCall)
	if hc == nil || errors.Is(hc.rc.SetWriteDeadline(time.Time{}), http.ErrNotSupported) {
		return nil, errNoWriteDeadline
	}
	return hc, nil
}

// connectError converts a gRPC status error into the connect error that
// carries the same code, message and details on every protocol.
func connectError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	ce := connect.NewError(connect.Code(st.Code()), errors.New(st.Message()))
	for _, d := range st.Proto().GetDetails() {
		if ed, err := connect.NewErrorDetail(d); err == nil {
			ce.AddDetail(ed)
		}
	}
	return ce
}

// connectSubscribe implements fanout.v1.SubscribeService for the handler.
type connectSubscribe struct {
	fanoutv1connect.UnimplementedSubscribeServiceHandler
	s *Server
}

// Subscribe serves a server stream; see [Server.subscribe].
func (c connectSubscribe) Subscribe(ctx context.Context, req *connect.Request[fanoutv1.SubscribeRequest], stream *connect.ServerStream[fanoutv1.Frames]) error {
	hc, err := streaming(ctx)
	if err != nil {
		return connectError(err)
	}
	return connectError(c.s.subscribe(incoming(ctx, req.Header()), req.Msg, stream, hc))
}

// Connect serves a bidirectional stream; see [Server.connect].
func (c connectSubscribe) Connect(ctx context.Context, stream *connect.BidiStream[fanoutv1.Command, fanoutv1.Frames]) error {
	hc, err := streaming(ctx)
	if err != nil {
		return connectError(err)
	}
	return connectError(c.s.connect(incoming(ctx, stream.RequestHeader()), bidiStream{stream}, hc))
}

// bidiStream adapts a connect.BidiStream to commandStream.
type bidiStream struct {
	*connect.BidiStream[fanoutv1.Command, fanoutv1.Frames]
}

func (b bidiStream) Recv() (*fanoutv1.Command, error) { return b.Receive() }

// connectPublish implements fanout.v1.PublishService for the handler.
type connectPublish struct {
	fanoutv1connect.UnimplementedPublishServiceHandler
	s *Server
}

// Publish publishes for a service; see [Server.publish].
func (c connectPublish) Publish(ctx context.Context, req *connect.Request[fanoutv1.PublishRequest]) (*connect.Response[fanoutv1.PublishResponse], error) {
	res, err := c.s.publish(incoming(ctx, req.Header()), req.Msg)
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(res), nil
}
