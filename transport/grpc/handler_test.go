package fanoutgrpc_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	connectrpc "connectrpc.com/connect"
	"google.golang.org/grpc/codes"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1/fanoutv1connect"
)

// handlerCases are the ways a client reaches Server.Handler: the protocol
// and whether it speaks HTTP/2.
var handlerCases = []struct {
	name     string
	protocol string
	http2    bool
}{
	{"grpc", "grpc", true},
	{"grpcweb-http1", "grpcweb", false},
	{"grpcweb-http2", "grpcweb", true},
	{"connect-http1", "connect", false},
	{"connect-http2", "connect", true},
}

// handlerEnv is a hub served by Server.Handler, with connect clients.
type handlerEnv struct {
	hub *fanout.Hub
	sub fanoutv1connect.SubscribeServiceClient
	pub fanoutv1connect.PublishServiceClient
}

func newHandlerEnv(t testing.TB, hubOpts *fanout.HubOptions, protocol string, http2 bool) *handlerEnv {
	t.Helper()
	hub, err := fanout.NewHub(hubOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	srv := handlerServer(t, hub, nil)
	hc := httpClient(t, http2)
	return &handlerEnv{
		hub: hub,
		sub: fanoutv1connect.NewSubscribeServiceClient(hc, srv.URL, clientOption(protocol)...),
		pub: fanoutv1connect.NewPublishServiceClient(hc, srv.URL, clientOption(protocol)...),
	}
}

// bearer authenticates "Bearer good".
func bearer(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
	if c.Token != "good" {
		return fanout.Principal{}, errNoToken
	}
	return fanout.Principal{ID: "u"}, nil
}

// TestHandlerSubscribeStatuses checks what a refused Subscribe returns on
// every protocol: the gRPC code and the ErrorInfo reason that grpc.Server
// returns.
func TestHandlerSubscribeStatuses(t *testing.T) {
	t.Parallel()
	for _, hc := range handlerCases {
		t.Run(hc.name, func(t *testing.T) {
			t.Parallel()
			e := newHandlerEnv(t, &fanout.HubOptions{Authenticate: bearer, Authorize: allowPublish}, hc.protocol, hc.http2)
			ctx := testCtx(t)
			for _, c := range []struct {
				token, topic string
				code         codes.Code
				reason       string
			}{
				{"", "t", codes.Unauthenticated, "UNAUTHENTICATED"},
				{"bad", "t", codes.Unauthenticated, "UNAUTHENTICATED"},
				{"good", "a b", codes.InvalidArgument, "INVALID_TOPIC"},
			} {
				req := connectrpc.NewRequest(&fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: c.topic}}})
				if c.token != "" {
					req.Header().Set("Authorization", "Bearer "+c.token)
				}
				st, err := e.sub.Subscribe(ctx, req)
				if err == nil {
					_, err = serverStreamRecv(st)()
					st.Close()
				}
				err = grpcStatus(err)
				wantCode(t, err, c.code)
				if reason, _ := errorInfo(t, err); reason != c.reason {
					t.Errorf("token %q, topic %q: got reason %s, want %s", c.token, c.topic, reason, c.reason)
				}
			}
		})
	}
}

// TestHandlerPublish publishes over every protocol and checks the refusals.
func TestHandlerPublish(t *testing.T) {
	t.Parallel()
	for _, hc := range handlerCases {
		t.Run(hc.name, func(t *testing.T) {
			t.Parallel()
			e := newHandlerEnv(t, &fanout.HubOptions{Authenticate: bearer, Authorize: allowPublish}, hc.protocol, hc.http2)
			ctx := testCtx(t)
			req := func(topic, token string) *connectrpc.Request[fanoutv1.PublishRequest] {
				r := connectrpc.NewRequest(&fanoutv1.PublishRequest{Topic: topic, Data: []byte{0, 0xff}, Key: "k"})
				if token != "" {
					r.Header().Set("Authorization", "Bearer "+token)
				}
				return r
			}
			res, err := e.pub.Publish(ctx, req("inv", "good"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.Position.GetSeq() != 1 || res.Msg.Position.GetEpoch() == "" {
				t.Fatalf("got position %v, want seq 1 with an epoch", res.Msg.Position)
			}
			_, err = e.pub.Publish(ctx, req("inv", ""))
			wantCode(t, grpcStatus(err), codes.Unauthenticated)
			_, err = e.pub.Publish(ctx, req("ro", "good"))
			wantCode(t, grpcStatus(err), codes.PermissionDenied)
			if reason, _ := errorInfo(t, grpcStatus(err)); reason != "FORBIDDEN" {
				t.Errorf("got reason %s, want FORBIDDEN", reason)
			}
		})
	}
}

// TestHandlerRequestTooLarge checks that a request message past
// MaxRequestBytes is refused with ResourceExhausted.
func TestHandlerRequestTooLarge(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil, "connect", false)
	_, err := e.pub.Publish(testCtx(t), connectrpc.NewRequest(&fanoutv1.PublishRequest{Topic: "t", Data: make([]byte, fanoutgrpc.MaxRequestBytes)}))
	wantCode(t, grpcStatus(err), codes.ResourceExhausted)
}

// hidden is a middleware's ResponseWriter without Unwrap: it hides
// net/http's write deadline.
type hidden struct{ http.ResponseWriter }

func (h hidden) Flush() { h.ResponseWriter.(http.Flusher).Flush() }

// TestHandlerWithoutWriteDeadline checks that a stream whose sends cannot
// be bounded is refused, and that Publish, which needs no deadline, works.
func TestHandlerWithoutWriteDeadline(t *testing.T) {
	t.Parallel()
	hub, err := fanout.NewHub(&fanout.HubOptions{Authorize: allowPublish})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	h := fanoutgrpc.New(hub, nil).Handler()
	srv := handlerServerFor(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(hidden{w}, r) }))
	hc := httpClient(t, false)
	ctx := testCtx(t)
	st, err := fanoutv1connect.NewSubscribeServiceClient(hc, srv.URL).Subscribe(ctx, connectrpc.NewRequest(&fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: "t"}}}))
	if err == nil {
		_, err = serverStreamRecv(st)()
		st.Close()
	}
	wantCode(t, grpcStatus(err), codes.Internal)
	if _, err := fanoutv1connect.NewPublishServiceClient(hc, srv.URL).Publish(ctx, connectrpc.NewRequest(&fanoutv1.PublishRequest{Topic: "t"})); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// stallHandler starts a call on the handler that subscribes to topic and
// never reads.
func stallHandler(t *testing.T, ctx context.Context, e *handlerEnv, ev observer, bidi bool, topic string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if bidi {
		st := e.sub.Connect(ctx)
		if err := st.Send(sub("1", topic)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.CloseRequest() })
	} else {
		st, err := e.sub.Subscribe(ctx, connectrpc.NewRequest(&fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: topic}}}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
	}
	select {
	case <-ev.subscribed:
	case <-ctx.Done():
		t.Fatal("the stalled call never subscribed")
	}
}

// stallCases are the calls that stall: over HTTP/1.1, where the
// connection's write deadline bounds a send, and over HTTP/2, where the
// stream's does.
var stallCases = []struct {
	name     string
	protocol string
	http2    bool
	bidi     bool
}{
	{"grpcweb-http1/Subscribe", "grpcweb", false, false},
	{"connect-http2/Subscribe", "connect", true, false},
	{"grpc/Connect", "grpc", true, true},
}

// TestHandlerStalledCallClosed checks that a call on the handler whose
// client stops reading is closed as a slow consumer once a send has waited
// WriteTimeout, as on grpc.Server.
func TestHandlerStalledCallClosed(t *testing.T) {
	t.Parallel()
	for _, sc := range stallCases {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			ev := observer{closes: make(chan fanout.CloseCode, 16), subscribed: make(chan struct{}, 16)}
			e := newHandlerEnv(t, &fanout.HubOptions{
				Observer:      ev,
				WriteTimeout:  200 * time.Millisecond,
				QueueMessages: 1 << 20,
				QueueBytes:    1 << 30, // so that only the write deadline can close it
			}, sc.protocol, sc.http2)
			ctx := testCtx(t)
			stallHandler(t, ctx, e, ev, sc.bidi, "t")
			code, ok := flood(t, ctx, e.hub, "t", ev, 8000)
			if !ok {
				select {
				case code = <-ev.closes:
				case <-ctx.Done():
					t.Fatal("the stalled call was never closed")
				}
			}
			if code != fanout.CloseSlowConsumer {
				t.Fatalf("got session close %d, want %d", code, fanout.CloseSlowConsumer)
			}
		})
	}
}

// TestHandlerShutdownWithStalledCall checks that Shutdown returns within
// its context while a client of the handler does not read, and that the
// call ends.
func TestHandlerShutdownWithStalledCall(t *testing.T) {
	t.Parallel()
	for _, sc := range stallCases {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			ev := observer{closes: make(chan fanout.CloseCode, 16), subscribed: make(chan struct{}, 16)}
			e := newHandlerEnv(t, &fanout.HubOptions{
				Observer:      ev,
				WriteTimeout:  time.Hour, // only Shutdown's context can end the wait
				QueueMessages: 1 << 20,
				QueueBytes:    1 << 30,
			}, sc.protocol, sc.http2)
			ctx := testCtx(t)
			stallHandler(t, ctx, e, ev, sc.bidi, "t")
			if _, ok := flood(t, ctx, e.hub, "t", ev, 2000); ok { // 32 MB: past any socket buffer and HTTP/2 window
				t.Fatal("the session closed before Shutdown")
			}
			sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			if err := e.hub.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("shutdown: got %v, want the context's deadline", err)
			}
			select {
			case <-ev.closes:
			case <-ctx.Done():
				t.Fatal("the stalled call outlived Shutdown")
			}
		})
	}
}
