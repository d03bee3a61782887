package fanoutotel_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/internal/wire"
	fanoutotel "github.com/gofanout/fanout/otel"
	fws "github.com/gofanout/fanout/transport/websocket"
)

// TestTraceFromHTTPPublishToWebSocket follows one message from an HTTP
// POST on one hub, through Redis, to a WebSocket client of another hub,
// and checks the parentage of the spans and the traceparent the client
// reads.
func TestTraceFromHTTPPublishToWebSocket(t *testing.T) {
	addr := testenv.Redis(t)
	rec := tracetest.NewSpanRecorder()
	ended := make(chan string, 16)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSpanProcessor(endSignal(ended)))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tracer := fanoutotel.New(&fanoutotel.Options{TracerProvider: tp})

	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	var b [6]byte
	rand.Read(b[:])
	prefix := "fanout-otel-test-" + hex.EncodeToString(b[:])
	newHub := func() *fanout.Hub {
		h, err := fanout.NewHub(&fanout.HubOptions{
			Backplane: fanoutredis.New(rdb, &fanoutredis.Options{Prefix: prefix}),
			Tracer:    tracer,
			Authorize: func(context.Context, fanout.Principal, string, fanout.Action) error { return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	pubHub, subHub := newHub(), newHub()
	t.Cleanup(func() { pubHub.Close() })
	pubSrv := testenv.NewServer(t, fanout.NewPublishHandler(pubHub, nil), nil)
	wsh := fws.New(subHub, nil)
	subSrv := testenv.NewServer(t, wsh, &testenv.ServerOptions{Stop: func() { subHub.Close(); wsh.Close() }})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(subSrv.URL, "http"), &websocket.DialOptions{HTTPClient: subSrv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":"1","type":"subscribe","topic":"stock.SKU-1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil { // the reply
		t.Fatal(err)
	}

	// The inventory service's request span, whose context goes with the
	// POST in traceparent.
	reqCtx, reqSpan := tp.Tracer("inventory-service").Start(ctx, "POST /publish", trace.WithSpanKind(trace.SpanKindClient))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, pubSrv.URL, strings.NewReader(`{"topic":"stock.SKU-1","data":{"stock":3}}`))
	req.Header.Set("Content-Type", "application/json")
	propagation.TraceContext{}.Inject(reqCtx, propagation.HeaderCarrier(req.Header))
	resp, err := pubSrv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqSpan.End()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: status %d", resp.StatusCode)
	}

	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := wire.ParseFrames(nil, data, true)
	if err != nil || len(frames) != 1 || frames[0].Message == nil {
		t.Fatalf("got %q (%v), want one message", data, err)
	}
	clientCtx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(frames[0].Message.Header))
	clientSC := trace.SpanContextFromContext(clientCtx)

	// The deliver span ends in the goroutine that hands the message to the
	// subscribing hub, which may be after the client read it.
	waitEnd(t, ended, "deliver stock.SKU-1")
	spans := rec.Ended()
	var publish, deliver sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch s.Name() {
		case "publish stock.SKU-1":
			publish = s
		case "deliver stock.SKU-1":
			deliver = s
		}
	}
	if publish == nil || deliver == nil {
		t.Fatalf("spans %v, want publish and deliver", names(spans))
	}
	root := reqSpan.SpanContext()
	if publish.Parent().SpanID() != root.SpanID() || publish.SpanContext().TraceID() != root.TraceID() {
		t.Errorf("publish span's parent %v, want the request span %v", publish.Parent(), root)
	}
	if publish.SpanKind() != trace.SpanKindProducer {
		t.Errorf("publish span kind %v, want producer", publish.SpanKind())
	}
	if deliver.Parent().SpanID() != publish.SpanContext().SpanID() || deliver.SpanContext().TraceID() != root.TraceID() {
		t.Errorf("deliver span's parent %v, want the publish span %v", deliver.Parent(), publish.SpanContext())
	}
	if clientSC.TraceID() != root.TraceID() || clientSC.SpanID() != publish.SpanContext().SpanID() {
		t.Errorf("the client's traceparent %q names %v, want the publish span %v",
			frames[0].Message.Header["traceparent"], clientSC, publish.SpanContext())
	}
}

// A hub without a tracer still passes the publishing request's trace
// context on to clients.
func TestTraceparentWithoutTracer(t *testing.T) {
	h, err := fanout.NewHub(&fanout.HubOptions{
		Authorize: func(context.Context, fanout.Principal, string, fanout.Action) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	s, _ := h.NewSession(fanout.Principal{})
	defer s.Close(fanout.CloseNormal, "")
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	srv := testenv.NewServer(t, fanout.NewPublishHandler(h, nil), nil)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"topic":"t","data":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", tp)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for {
		fs, err := s.Next(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.Type == fanout.FrameMessage {
				if got := f.Message.Header["traceparent"]; got != tp {
					t.Fatalf("traceparent %q, want %q", got, tp)
				}
				return
			}
		}
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var l []string
	for _, s := range spans {
		l = append(l, s.Name())
	}
	return l
}

// endSignal is a span processor that sends the name of each span that
// ends.
type endSignal chan string

func (e endSignal) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (e endSignal) OnEnd(s sdktrace.ReadOnlySpan) {
	select {
	case e <- s.Name():
	default:
	}
}
func (e endSignal) Shutdown(context.Context) error   { return nil }
func (e endSignal) ForceFlush(context.Context) error { return nil }

func waitEnd(t *testing.T, ended chan string, name string) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case n := <-ended:
			if n == name {
				return
			}
		case <-timeout.C:
			t.Fatalf("span %q did not end", name)
		}
	}
}
