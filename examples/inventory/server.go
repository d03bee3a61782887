package main

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client/js"
	"github.com/gofanout/fanout/metrics"
	"github.com/gofanout/fanout/transport/sse"
	"github.com/gofanout/fanout/transport/websocket"
)

//go:embed static
var staticFiles embed.FS

// config is what the server is made of; main fills it from flags.
type config struct {
	// Catalog lists the products, with the stock published at start.
	Catalog []product
	// Token, when not empty, is the bearer token that POST /events and
	// POST /publish require. Browsers never need it: they only subscribe.
	Token string
	// Logger receives the server's logs.
	Logger *slog.Logger
}

// serviceID is the principal of a service that publishes.
const serviceID = "inventory-service"

// maxEventBytes bounds the body of POST /events.
const maxEventBytes = 64 << 10

// server is the inventory example: a hub, the routes around it, and the
// stock it last published per product. It is safe for concurrent use.
type server struct {
	hub     *fanout.Hub
	ws      *websocket.Handler // owns the WebSocket connections
	cfg     config
	mux     *http.ServeMux
	catalog []product
	state   map[string]*productState // by SKU; the map is read-only
}

// productState is what the server last published for one product.
type productState struct {
	// sem serialises publishes for the product (check, publish, record),
	// so that an older event never overwrites a newer one. Holding it
	// guards the fields below.
	sem      chan struct{}
	quantity int64
	position fanout.Position
	// serviceTime is the Timestamp of the last event the service posted.
	// Only the service's own events are ordered by it: the seed and the
	// simulation never make a real event stale.
	serviceTime int64
}

// newServer creates the hub and the routes. The caller runs seed before
// serving and shuts the hub down at the end.
func newServer(cfg config) (*server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Catalog) == 0 {
		return nil, errors.New("inventory: empty catalogue")
	}
	s := &server{cfg: cfg, state: make(map[string]*productState)}
	for _, p := range cfg.Catalog {
		p.Topic = topicPrefix + p.SKU
		if err := fanout.ValidateTopic(p.Topic); err != nil {
			return nil, fmt.Errorf("inventory: product %q: %w", p.SKU, err)
		}
		if s.state[p.SKU] != nil {
			return nil, fmt.Errorf("inventory: product %q listed twice", p.SKU)
		}
		s.catalog = append(s.catalog, p)
		s.state[p.SKU] = &productState{sem: make(chan struct{}, 1)}
	}
	// The server's own registry, with the hub's series and the Go
	// runtime's, served at /metrics.
	reg := prometheus.NewRegistry()
	m := metrics.New(nil)
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Authenticate: s.authenticate,
		Authorize:    s.authorize,
		TopicOptions: topicOptions,
		Logger:       cfg.Logger,
		Observer:     m,
	})
	if err != nil {
		return nil, err
	}
	s.hub = hub

	static, _ := fs.Sub(staticFiles, "static")
	s.mux = http.NewServeMux()
	s.mux.Handle("/", http.FileServerFS(static)) // "GET /" would conflict with "/events" and "/publish"
	s.mux.Handle("GET /fanout.js", js.Handler())
	s.mux.HandleFunc("GET /api/products", s.handleProducts)
	s.mux.HandleFunc("GET /api/viewers", s.handleViewers)
	// The API endpoints take every method and answer a wrong one with the
	// JSON error body themselves: net/http answers a pattern's other
	// methods with a plain-text 405.
	s.mux.HandleFunc("/events", s.handleEvent)
	s.mux.Handle("/publish", fanout.NewPublishHandler(hub, nil))
	s.ws = websocket.New(hub, nil)
	s.mux.Handle("GET /ws", s.ws)
	s.mux.Handle("GET /sse", sse.New(hub, nil))
	// Operations: liveness (the process answers), readiness (the hub
	// serves: a draining replica gets no new clients), metrics, and the
	// inspection of topics and sessions for the inventory service's token.
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := hub.Ready(ctx); err != nil {
			fanout.WriteError(w, http.StatusServiceUnavailable, err)
			return
		}
		io.WriteString(w, "ok\n")
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.mux.Handle("GET /inspect", fanout.NewInspectHandler(hub, nil))
	return s, nil
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// authenticate lets browsers in anonymously (they may only subscribe) and
// makes a request with the right token, or any HTTP publish when no token
// is configured, the inventory service. A wrong token is rejected.
func (s *server) authenticate(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
	if c.Token != "" && s.cfg.Token != "" && !s.tokenOK(c.Token) {
		return fanout.Principal{}, errors.New("wrong token")
	}
	if c.Transport == "http" && (s.cfg.Token == "" || s.tokenOK(c.Token)) {
		return fanout.Principal{ID: serviceID}, nil
	}
	return fanout.Principal{}, nil
}

func (s *server) tokenOK(token string) bool {
	return subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) == 1
}

// authorize lets anyone follow the inventory topics, and only the service
// publish to them and inspect the server.
func (s *server) authorize(_ context.Context, p fanout.Principal, topic string, a fanout.Action) error {
	if a == fanout.ActionInspect {
		if p.ID != serviceID {
			return errors.New("inspection is for the inventory service")
		}
		return nil
	}
	if !strings.HasPrefix(topic, topicPrefix) {
		return errors.New("not an inventory topic")
	}
	if a == fanout.ActionPublish && p.ID != serviceID {
		return errors.New("only the inventory service publishes")
	}
	return nil
}

// seed publishes every product's initial stock, so that the first page
// shows every quantity at once.
func (s *server) seed(ctx context.Context) error {
	now := time.Now().UnixMilli()
	for _, p := range s.catalog {
		if _, err := s.apply(ctx, stockEvent{ProductId: p.SKU, NewQuantity: p.Stock, Timestamp: now}, false); err != nil {
			return fmt.Errorf("inventory: seed %s: %w", p.SKU, err)
		}
	}
	return nil
}

// errStale: the event is older than the stock last published.
var errStale = errors.New("stale event")

// errUnknownProduct: the event names a product outside the catalogue.
var errUnknownProduct = errors.New("unknown product")

// apply publishes ev to its product's topic, keyed by the product. An event
// of the service (fromService) older than the last one it posted for the
// product is refused with errStale; a retry of the same event (same
// timestamp and quantity) returns the first publication's position.
func (s *server) apply(ctx context.Context, ev stockEvent, fromService bool) (fanout.Position, error) {
	st := s.state[ev.ProductId]
	if st == nil {
		return fanout.Position{}, fmt.Errorf("%w %q", errUnknownProduct, ev.ProductId)
	}
	select {
	case st.sem <- struct{}{}:
	case <-ctx.Done():
		return fanout.Position{}, ctx.Err()
	}
	defer func() { <-st.sem }()
	if fromService && ev.Timestamp < st.serviceTime {
		return fanout.Position{}, fmt.Errorf("%w: timestamp %d is older than %d", errStale, ev.Timestamp, st.serviceTime)
	}
	opts := []fanout.PublishOption{fanout.WithKey(ev.ProductId)}
	if fromService {
		opts = append(opts, fanout.WithIdempotencyKey(fmt.Sprintf("%d/%d", ev.Timestamp, ev.NewQuantity)))
	}
	pos, err := s.hub.Publish(ctx, topicPrefix+ev.ProductId, ev.payload(), opts...)
	if err != nil {
		return fanout.Position{}, err
	}
	if pos.Epoch != st.position.Epoch || pos.Seq > st.position.Seq {
		// Not a retry answered from the idempotency window.
		st.quantity, st.position = ev.NewQuantity, pos
		if fromService {
			st.serviceTime = ev.Timestamp
		}
	}
	return pos, nil
}

// simulate changes a random product's stock every interval until ctx ends,
// so that a newcomer sees live updates at once.
func (s *server) simulate(ctx context.Context, every time.Duration, rnd *rand.Rand) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := s.catalog[rnd.IntN(len(s.catalog))]
		st := s.state[p.SKU]
		select {
		case st.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		q := st.quantity
		<-st.sem
		switch {
		case q == 0 || rnd.IntN(10) == 0:
			q += int64(5 + rnd.IntN(20)) // a delivery
		default:
			q = max(0, q-int64(1+rnd.IntN(3))) // a sale
		}
		ev := stockEvent{ProductId: p.SKU, NewQuantity: q, Timestamp: time.Now().UnixMilli()}
		if _, err := s.apply(ctx, ev, false); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("simulate", "product", p.SKU, "err", err)
		}
	}
}

func (s *server) handleProducts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.catalog)
}

// topicOptions are the options of the hub's topics, by prefix: an
// inventory topic keeps presence and delivers join and leave, so that a
// page shows how many people look at each product, live. Other topics
// keep the hub's defaults.
func topicOptions(topic string) fanout.TopicOptions {
	if strings.HasPrefix(topic, topicPrefix) {
		return fanout.TopicOptions{Presence: true, JoinLeave: true}
	}
	return fanout.TopicOptions{}
}

// handleViewers answers how many sessions follow a product's topic, on
// every server: {"sku":"SKU-1","viewers":2}. The page asks it over SSE,
// which cannot send the presence_count command that the WebSocket client
// uses; 400 for a product outside the catalogue.
//
//	GET /api/viewers?sku=SKU-1
func (s *server) handleViewers(w http.ResponseWriter, r *http.Request) {
	sku := r.URL.Query().Get("sku")
	if _, ok := s.state[sku]; !ok {
		fanout.WriteError(w, http.StatusBadRequest, fmt.Errorf("%w: %w %q", fanout.ErrBadRequest, errUnknownProduct, sku))
		return
	}
	n, err := s.hub.PresenceCount(r.Context(), topicPrefix+sku)
	if err != nil {
		fanout.WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, struct {
		SKU     string `json:"sku"`
		Viewers int    `json:"viewers"`
	}{sku, n})
}

// handleEvent takes the inventory service's event and publishes it.
//
//	POST /events
//	Authorization: Bearer <token>        (when the server has a token)
//	{"ProductId":"SKU-1","NewQuantity":5,"Timestamp":1700000000000}
//
// 200 {"topic":"inventory.SKU-1","position":{"epoch":"…","seq":7}};
// 400 for a malformed event or an unknown product; 401 for a missing or
// wrong token; 409 for an event older than the last one the service posted
// for the product; 413 for a body over 64 KiB; 405 for another method than
// POST; 503 while the server shuts down. Errors have fanout's error body,
// {"error":{"code":"…","message":"…"}}.
func (s *server) handleEvent(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fanout.WriteError(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: method %s, use POST", fanout.ErrBadRequest, r.Method))
		return
	}
	if s.cfg.Token != "" {
		c := fanout.CredentialsFromRequest(r, "http")
		if c.Token == "" || !s.tokenOK(c.Token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="inventory"`)
			fanout.WriteError(w, http.StatusUnauthorized, fmt.Errorf("%w: missing or wrong bearer token", fanout.ErrUnauthenticated))
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			fanout.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: event larger than %d bytes", fanout.ErrTooLarge, maxEventBytes))
			return
		}
		fanout.WriteError(w, http.StatusBadRequest, fmt.Errorf("%w: reading the body: %v", fanout.ErrBadRequest, err))
		return
	}
	ev, err := parseEvent(body)
	if err != nil {
		fanout.WriteError(w, http.StatusBadRequest, fmt.Errorf("%w: %v", fanout.ErrBadRequest, err))
		return
	}
	pos, err := s.apply(r.Context(), ev, true)
	switch {
	case errors.Is(err, errUnknownProduct):
		fanout.WriteError(w, http.StatusBadRequest, fmt.Errorf("%w: %v", fanout.ErrBadRequest, err))
	case errors.Is(err, errStale):
		fanout.WriteError(w, http.StatusConflict, fmt.Errorf("%w: %v", fanout.ErrBadRequest, err))
	case err != nil:
		if fanout.HTTPStatus(err) == http.StatusInternalServerError {
			s.cfg.Logger.Error("publish event", "product", ev.ProductId, "err", err)
		}
		fanout.WriteError(w, fanout.HTTPStatus(err), err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{
			"topic":    topicPrefix + ev.ProductId,
			"position": map[string]any{"epoch": pos.Epoch, "seq": pos.Seq},
		})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fanout.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
