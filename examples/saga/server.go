package main

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client/js"
	"github.com/gofanout/fanout/metrics"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/sse"
	"github.com/gofanout/fanout/transport/websocket"
)

//go:embed page
var page embed.FS

// Config configures a [Server]. The zero value is valid: every field
// documents its default.
type Config struct {
	// Backplane connects the server's hub to other replicas. Default: an
	// in-memory backplane, for a single process.
	Backplane fanout.Backplane
	// Latency is how long each step's action takes. Default: 0, instant.
	Latency time.Duration
	// Before is [Options.Before] of the engine. Default: none.
	Before func(ctx context.Context, a Action) error
	// Drain bounds a graceful shutdown: running sagas get half of it to
	// finish, clients the rest to be told to reconnect elsewhere. Default:
	// 20s.
	Drain time.Duration
	// Logger receives the server's logs. Default: logs are discarded.
	Logger *slog.Logger
	// Secret, when set, makes clients authenticate: POST /bookings answers
	// a token that follows that booking only, on every transport, and a
	// user follows the bookings it started (see followTokens). Replicas
	// share it. Default: none, anyone follows any booking, and the user
	// tokens of GET /token are good in this process only.
	Secret []byte
}

// Server is the saga example's server: the booking engine and its page
// over HTTP, and the hub's topics over SSE, WebSocket, gRPC-Web, Connect
// and gRPC. It is safe for concurrent use.
type Server struct {
	cfg    Config
	hub    *fanout.Hub
	engine *Engine
	ws     *websocket.Handler
	mux    *http.ServeMux
	grpc   *grpc.Server
	ready  atomic.Bool
	// metrics is the registry served at /metrics.
	metrics *prometheus.Registry
}

// NewServer creates a server with its hub.
func NewServer(cfg *Config) (*Server, error) {
	s := &Server{}
	if cfg != nil {
		s.cfg = *cfg
	}
	if s.cfg.Drain <= 0 {
		s.cfg.Drain = 20 * time.Second
	}
	if s.cfg.Logger == nil {
		s.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// The server's own registry, with the hub's series and the Go
	// runtime's, served at /metrics.
	s.metrics = prometheus.NewRegistry()
	m := metrics.New(nil)
	s.metrics.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ho := &fanout.HubOptions{Backplane: s.cfg.Backplane, Logger: s.cfg.Logger, Observer: m, TopicOptions: topicOptions}
	eo := &Options{Latency: s.cfg.Latency, Before: s.cfg.Before, Logger: s.cfg.Logger}
	// Every page is a user (GET /token); with a secret, tokens are also
	// needed to follow a booking. Without one, user tokens are signed with
	// a random secret, good in this process only.
	ft := &followTokens{secret: s.cfg.Secret, strict: len(s.cfg.Secret) > 0}
	if !ft.strict {
		ft.secret = make([]byte, 32)
		rand.Read(ft.secret)
	}
	ho.Authenticate, eo.User = ft.authenticate, ft.user
	if ft.strict {
		ho.Authorize, eo.Token = ft.authorize, ft.issue
	}
	hub, err := fanout.NewHub(ho)
	if err != nil {
		return nil, err
	}
	s.hub = hub
	eo.Hub = hub
	s.engine = New(eo)
	ft.owner = s.engine.Owner

	static, err := fs.Sub(page, "page")
	if err != nil {
		return nil, err
	}
	s.mux = http.NewServeMux()
	s.mux.Handle("/", http.FileServerFS(static))
	s.mux.Handle("/bookings", s.engine)
	s.mux.HandleFunc("/token", ft.serveToken)
	s.mux.Handle("/events", sse.New(hub, nil))
	s.ws = websocket.New(hub, nil)
	s.mux.Handle("/ws", s.ws)
	s.mux.Handle("/fanout.js", js.Handler())
	s.mux.HandleFunc("/healthz", s.healthz)
	s.mux.HandleFunc("/readyz", s.readyz)
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}))

	// The gRPC services twice: on the HTTP address for browsers (gRPC-Web,
	// Connect) and gRPC clients over h2c, and on grpc.Server.
	gs := fanoutgrpc.New(hub, nil)
	rpc := gs.Handler()
	s.mux.Handle("/fanout.v1.SubscribeService/", rpc)
	s.mux.Handle("/fanout.v1.PublishService/", rpc)
	s.grpc = grpc.NewServer()
	gs.Register(s.grpc)
	s.ready.Store(true)
	return s, nil
}

// topicOptions are the options of the hub's topics, by prefix: a saga's
// topic keeps presence and delivers join and leave, so that a page shows
// how many follow a booking ("2 viewers"), live. Other topics keep the
// hub's defaults.
func topicOptions(topic string) fanout.TopicOptions {
	if strings.HasPrefix(topic, Topic("")) {
		return fanout.TopicOptions{Presence: true, JoinLeave: true}
	}
	return fanout.TopicOptions{}
}

// Hub returns the server's hub.
func (s *Server) Hub() *fanout.Hub { return s.hub }

// ServeHTTP serves the HTTP endpoints listed in the package documentation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// healthz is the readiness probe: 503 once the server drains, so that the
// load balancer sends new clients elsewhere.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !s.ready.Load() {
		fanout.WriteError(w, http.StatusServiceUnavailable, fmt.Errorf("%w: draining", fanout.ErrClosed))
		return
	}
	w.Write([]byte("ok\n"))
}

// readyz answers 200 while the server takes new clients: it is not
// draining, and its hub reaches the backplane.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !s.ready.Load() {
		fanout.WriteError(w, http.StatusServiceUnavailable, fmt.Errorf("%w: draining", fanout.ErrClosed))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.hub.Ready(ctx); err != nil {
		fanout.WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	w.Write([]byte("ok\n"))
}

// Serve serves HTTP on httpL and gRPC on grpcL until ctx ends or a listener
// fails, then drains (see [Server.Shutdown]) and returns once everything
// it started has ended. It returns nil after a clean drain.
func (s *Server) Serve(ctx context.Context, httpL, grpcL net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
		// HTTP/1.1 for browsers, and HTTP/2 without TLS (h2c) for gRPC
		// clients and for proxies that speak HTTP/2 to the pods.
		Protocols: new(http.Protocols),
	}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetUnencryptedHTTP2(true)
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := hs.Serve(httpL); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve http: %w", err)
		}
	})
	wg.Go(func() {
		if err := s.grpc.Serve(grpcL); err != nil {
			errc <- fmt.Errorf("serve grpc: %w", err)
		}
	})

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Drain)
	defer cancel()
	err := s.Shutdown(dctx)
	// The hub has ended every stream: what remains are plain requests.
	if herr := hs.Shutdown(dctx); herr != nil {
		hs.Close()
		err = errors.Join(err, herr)
	}
	wg.Wait()
	return errors.Join(serveErr, err)
}

// Shutdown drains the server: the readiness probe fails, new bookings are
// refused, running sagas get half of ctx's time to finish (then they are
// interrupted), and the hub tells every client to reconnect elsewhere and
// ends its stream. The gRPC server stops last. It does not stop the HTTP
// server, which [Server.Serve] owns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	ectx := ctx
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ectx, cancel = context.WithTimeout(ctx, time.Until(d)/2)
		defer cancel()
	}
	if err := s.engine.Shutdown(ectx); err != nil {
		s.cfg.Logger.Warn("sagas interrupted", "err", err)
	}
	err := s.hub.Shutdown(ctx)
	s.ws.Close() // waits for the WebSocket connections, which the hub ended
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
		<-stopped
	}
	return err
}

// Close stops everything at once.
func (s *Server) Close() error {
	s.ready.Store(false)
	s.engine.Close()
	err := s.hub.Close()
	s.ws.Close()
	s.grpc.Stop()
	return err
}
