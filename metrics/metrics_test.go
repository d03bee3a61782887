package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/metrics"
	"github.com/gofanout/fanout/transport/sse"
	fws "github.com/gofanout/fanout/transport/websocket"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tee passes every event to the collector, then to the test, so that a
// test scrapes after the collector has seen what it waits for.
type tee struct {
	c      *metrics.Collector
	events chan fanout.Event
}

func (t tee) Observe(e fanout.Event) {
	t.c.Observe(e)
	select {
	case t.events <- e:
	default:
	}
}

// waitFor returns the next event of type typ (and of transport tr, when
// set).
func (t tee) waitFor(tb testing.TB, typ fanout.EventType, tr string) fanout.Event {
	tb.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case e := <-t.events:
			if e.Type == typ && (tr == "" || e.Transport == tr) {
				return e
			}
		case <-timeout.C:
			tb.Fatalf("no %v event", typ)
		}
	}
}

type env struct {
	reg *prometheus.Registry
	c   *metrics.Collector
	obs tee
	hub *fanout.Hub
}

func newEnv(t *testing.T, ho *fanout.HubOptions) *env {
	t.Helper()
	e := &env{reg: prometheus.NewPedanticRegistry(), c: metrics.New(&metrics.Options{ConstLabels: prometheus.Labels{"replica": "a"}})}
	e.reg.MustRegister(e.c)
	e.obs = tee{c: e.c, events: make(chan fanout.Event, 4096)}
	var o fanout.HubOptions
	if ho != nil {
		o = *ho
	}
	o.Observer = e.obs
	h, err := fanout.NewHub(&o)
	if err != nil {
		t.Fatal(err)
	}
	e.hub = h
	t.Cleanup(func() { h.Close() })
	return e
}

// value scrapes the registry and returns the value of the series name with
// the labels (besides replica), or of its sample count for a histogram.
func (e *env) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		return 0
	}
	t.Fatalf("no series %s", name)
	return 0
}

func (e *env) want(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	if got := e.value(t, name, labels...); got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestCollectorSessions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	s, err := e.hub.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.Publish(ctx, "t", []byte("12345")); err != nil {
		t.Fatal(err)
	}
	s.Close(fanout.CloseSlowConsumer, "")
	want := `
# HELP fanout_deliveries_total Messages handed to local subscriptions.
# TYPE fanout_deliveries_total counter
fanout_deliveries_total{replica="a"} 1
# HELP fanout_published_bytes_total Payload bytes published through this hub.
# TYPE fanout_published_bytes_total counter
fanout_published_bytes_total{replica="a"} 5
# HELP fanout_session_closes_total Sessions closed, by transport and close code (4001 is a slow consumer).
# TYPE fanout_session_closes_total counter
fanout_session_closes_total{code="4001",replica="a",transport="none"} 1
# HELP fanout_sessions Sessions open, with or without a connection.
# TYPE fanout_sessions gauge
fanout_sessions{replica="a"} 0
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want),
		"fanout_deliveries_total", "fanout_published_bytes_total", "fanout_session_closes_total", "fanout_sessions"); err != nil {
		t.Fatal(err)
	}
	e.want(t, 1, "fanout_published_messages_total")
	e.want(t, 1, "fanout_subscribes_total")
	e.want(t, 1, "fanout_backplane_duration_seconds", "op", "publish")
	e.want(t, 1, "fanout_backplane_duration_seconds", "op", "subscribe")
	e.want(t, 1, "fanout_backplane_duration_seconds", "op", "snapshot")
	e.want(t, 1, "fanout_backplane_up")
}

// TestWebSocketSeries follows a connection from its handshake to its close
// and scrapes each series after the event that moves it.
func TestWebSocketSeries(t *testing.T) {
	e := newEnv(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Token != "good" {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "u"}, nil
		},
		Authorize: func(_ context.Context, _ fanout.Principal, topic string, _ fanout.Action) error {
			if topic == "secret" {
				return errors.New("not yours")
			}
			return nil
		},
	})
	h := fws.New(e.hub, nil)
	srv := testenv.NewServer(t, h, &testenv.ServerOptions{Stop: func() { e.hub.Close(); h.Close() }})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/?token=good"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	e.want(t, 0, "fanout_connections_total", "transport", "websocket")

	// A page of another origin is refused before authentication.
	_, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: srv.Client(),
		HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil {
		t.Fatal("dial from another origin succeeded")
	}
	e.obs.waitFor(t, fanout.EventHandshake, "websocket")
	e.want(t, 1, "fanout_handshakes_refused_total", "transport", "websocket", "reason", "forbidden")

	// So are bad credentials.
	_, _, err = websocket.Dial(ctx, strings.TrimSuffix(url, "good")+"bad", &websocket.DialOptions{HTTPClient: srv.Client()})
	if err == nil {
		t.Fatal("dial with a bad token succeeded")
	}
	e.obs.waitFor(t, fanout.EventHandshake, "websocket")
	e.want(t, 1, "fanout_handshakes_refused_total", "transport", "websocket", "reason", "unauthenticated")

	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	e.obs.waitFor(t, fanout.EventAttach, "websocket")
	e.want(t, 1, "fanout_connections_total", "transport", "websocket")
	e.want(t, 1, "fanout_connections", "transport", "websocket")
	e.want(t, 1, "fanout_handshake_duration_seconds", "transport", "websocket")

	send := func(cmd string) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(want string) {
		t.Helper()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if bytes.Contains(b, []byte(want)) {
				return
			}
		}
	}
	send(`{"id":"1","type":"subscribe","topic":"secret"}`)
	read(`"forbidden"`)
	e.obs.waitFor(t, fanout.EventSubscribeFailed, "")
	e.want(t, 1, "fanout_subscribe_failures_total", "code", "forbidden")

	send(`{"id":"2","type":"subscribe","topic":"stock"}`)
	read(`"id":"2"`)
	e.obs.waitFor(t, fanout.EventSubscribe, "")
	if _, err := e.hub.Publish(ctx, "stock", []byte(`{"qty":3}`)); err != nil {
		t.Fatal(err)
	}
	read(`"qty":3`)
	for {
		if ev := e.obs.waitFor(t, fanout.EventWrite, "websocket"); ev.N > 0 {
			break
		}
	}
	e.want(t, 1, "fanout_written_messages_total", "transport", "websocket")
	e.want(t, 1, "fanout_delivery_latency_seconds", "transport", "websocket")
	if got := e.value(t, "fanout_queue_depth", "transport", "websocket"); got < 2 {
		t.Errorf("fanout_queue_depth observed %v writes, want at least 2 (two replies, a message)", got)
	}

	// A client that publishes what it may not gets an error, and the
	// failure is counted by its code.
	send(`{"id":"3","type":"publish","topic":"secret","data":1}`)
	read(`"id":"3"`)
	e.obs.waitFor(t, fanout.EventPublishFailed, "websocket")
	e.want(t, 1, "fanout_publish_failures_total", "code", "forbidden")

	c.Close(websocket.StatusNormalClosure, "")
	ev := e.obs.waitFor(t, fanout.EventSessionClose, "websocket")
	e.want(t, 0, "fanout_connections", "transport", "websocket")
	e.want(t, 1, "fanout_session_closes_total", "transport", "websocket", "code", strconv.Itoa(int(ev.Code)))
}

func TestSSESeries(t *testing.T) {
	e := newEnv(t, nil)
	h := sse.New(e.hub, nil)
	srv := testenv.NewServer(t, h, &testenv.ServerOptions{Stop: func() { e.hub.Close() }})

	resp, err := srv.Client().Get(srv.URL + "/?topic=a%20b")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	e.obs.waitFor(t, fanout.EventHandshake, "sse")
	e.want(t, 1, "fanout_handshakes_refused_total", "transport", "sse", "reason", "invalid_topic")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/?topic=news", nil)
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	e.obs.waitFor(t, fanout.EventAttach, "sse")
	e.want(t, 1, "fanout_connections", "transport", "sse")
	e.want(t, 1, "fanout_handshake_duration_seconds", "transport", "sse")
	if _, err := e.hub.Publish(ctx, "news", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	for {
		if ev := e.obs.waitFor(t, fanout.EventWrite, "sse"); ev.N > 0 {
			break
		}
	}
	e.want(t, 1, "fanout_written_messages_total", "transport", "sse")
	cancel()
	e.obs.waitFor(t, fanout.EventSessionClose, "sse")
	e.want(t, 0, "fanout_connections", "transport", "sse")
}

// syncBuffer is a log destination that tests read while the hub writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBackplaneLoss takes Redis away from a hub: a publish fails and is
// counted as unavailable, the backplane series say so, Ready fails and the
// loss is logged; when Redis comes back, Ready succeeds and the return is
// logged.
func TestBackplaneLoss(t *testing.T) {
	addr := testenv.Redis(t)
	px := testenv.NewProxy(t, addr)
	client := goredis.NewClient(&goredis.Options{Addr: px.Addr(), DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	prefix := "metrics-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var logs syncBuffer
	e := newEnv(t, &fanout.HubOptions{
		Backplane: fanoutredis.New(client, &fanoutredis.Options{Prefix: prefix}),
		Logger:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.hub.Ready(ctx); err != nil {
		t.Fatalf("Ready with Redis up: %v", err)
	}
	if _, err := e.hub.Publish(ctx, "p", []byte("1")); err != nil {
		t.Fatal(err)
	}

	px.Refuse()
	px.Cut()
	_, err := e.hub.Publish(ctx, "p", []byte("2"))
	if !errors.Is(err, fanout.ErrUnavailable) {
		t.Fatalf("publish with Redis down: got %v, want ErrUnavailable", err)
	}
	e.want(t, 1, "fanout_publish_failures_total", "code", "unavailable")
	if got := e.value(t, "fanout_backplane_errors_total", "op", "publish"); got < 1 {
		t.Errorf("fanout_backplane_errors_total{op=publish} = %v, want at least 1", got)
	}
	e.want(t, 0, "fanout_backplane_up")
	if err := e.hub.Ready(ctx); !errors.Is(err, fanout.ErrUnavailable) {
		t.Errorf("Ready with Redis down: got %v, want ErrUnavailable", err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"fanout: backplane unavailable\"") {
		t.Errorf("no warning of the loss in the logs:\n%s", logs.String())
	}

	px.Resume()
	if err := e.hub.Ready(ctx); err != nil {
		t.Fatalf("Ready with Redis back: %v", err)
	}
	e.want(t, 1, "fanout_backplane_up")
	if !strings.Contains(logs.String(), "level=INFO msg=\"fanout: backplane available again\"") {
		t.Errorf("no notice of the return in the logs:\n%s", logs.String())
	}
	e.want(t, 3, "fanout_backplane_duration_seconds", "op", "ready")
}
