package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	fredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/metrics"
	"github.com/gofanout/fanout/transport/websocket"
)

// config is what the cluster is made of; main fills it from flags.
type config struct {
	// Backplane is "nats" or "redis".
	Backplane string
	// NATSURL is the NATS server, with JetStream enabled.
	NATSURL string
	// RedisAddr is the Redis server.
	RedisAddr string
	// Addrs are the nodes' listen addresses, one per node.
	Addrs []string
	// Name keeps the example's data apart: the NATS streams and subjects
	// or the Redis keys are named after it.
	Name string
	// Logger receives the nodes' logs. Default: discarded.
	Logger *slog.Logger
}

// maxPublish bounds the body of POST /publish.
const maxPublish = 64 << 10

// cluster is the example's nodes and the backplane connection they share.
type cluster struct {
	nodes []*node
	// closeConn closes the backplane connection, after the hubs.
	closeConn func() error
	wg        sync.WaitGroup // the HTTP servers
}

// node is one fanout node: a hub on its own backplane node, served over
// HTTP.
type node struct {
	name string
	hub  *fanout.Hub
	ln   net.Listener
	srv  *http.Server
}

func (n *node) wsURL() string { return "ws://" + n.ln.Addr().String() + "/ws" }

// start connects to the backplane and starts one node per address.
func start(ctx context.Context, cfg config) (*cluster, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("no node addresses")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	newBackplane, closeConn, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c := &cluster{closeConn: closeConn}
	for i, addr := range cfg.Addrs {
		n, err := c.startNode(fmt.Sprint("node-", i+1), addr, newBackplane(), cfg.Logger)
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return nil, errors.Join(err, c.shutdown(sctx))
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// connect opens the backplane connection and returns a maker of nodes.
func connect(ctx context.Context, cfg config) (func() fanout.Backplane, func() error, error) {
	switch cfg.Backplane {
	case "nats":
		nc, err := nats.Connect(cfg.NATSURL, nats.Name(cfg.Name), nats.MaxReconnects(-1))
		if err != nil {
			return nil, nil, fmt.Errorf("connect to NATS at %s: %w", cfg.NATSURL, err)
		}
		opts := &fnats.Options{
			Prefix: cfg.Name,
			Stream: strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(cfg.Name)),
		}
		// The nodes share the connection; each hub has its own node.
		return func() fanout.Backplane { return fnats.New(nc, opts) }, func() error { nc.Close(); return nil }, nil
	case "redis":
		rc := goredis.NewClient(&goredis.Options{Addr: cfg.RedisAddr})
		if err := rc.Ping(ctx).Err(); err != nil {
			rc.Close()
			return nil, nil, fmt.Errorf("connect to Redis at %s: %w", cfg.RedisAddr, err)
		}
		opts := &fredis.Options{Prefix: cfg.Name}
		return func() fanout.Backplane { return fredis.New(rc, opts) }, rc.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown backplane %q: want nats or redis", cfg.Backplane)
}

func (c *cluster) startNode(name, addr string, bp fanout.Backplane, logger *slog.Logger) (*node, error) {
	// Each node has its own registry, as each would be its own process.
	reg := prometheus.NewRegistry()
	m := metrics.New(&metrics.Options{ConstLabels: prometheus.Labels{"node": name}})
	reg.MustRegister(m)
	hub, err := fanout.NewHub(&fanout.HubOptions{Backplane: bp, Logger: logger.With("node", name), Observer: m})
	if err != nil {
		bp.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hub.Close()
		return nil, err
	}
	n := &node{name: name, hub: hub, ln: ln}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", websocket.New(hub, nil))
	mux.HandleFunc("/publish", n.publish) // it answers other methods than POST itself
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// 503 while draining or while the backplane is unreachable.
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := hub.Ready(ctx); err != nil {
			fanout.WriteError(w, http.StatusServiceUnavailable, err)
			return
		}
		io.WriteString(w, "ok\n")
	})
	n.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	c.wg.Go(func() { n.srv.Serve(ln) })
	return n, nil
}

// publish serves POST /publish?topic=T: the body is published to T on this
// node, and the answer is the message's position.
func (n *node) publish(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fanout.WriteError(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: method %s, use POST", fanout.ErrBadRequest, r.Method))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPublish))
	if err != nil {
		fanout.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body larger than %d bytes", fanout.ErrTooLarge, maxPublish))
		return
	}
	pos, err := n.hub.Publish(r.Context(), r.URL.Query().Get("topic"), data)
	if err != nil {
		fanout.WriteError(w, fanout.HTTPStatus(err), err)
		return
	}
	fmt.Fprintf(w, "published on %s at %s\n", n.name, pos)
}

// shutdown drains every node, then closes the backplane connection.
func (c *cluster) shutdown(ctx context.Context) error {
	var errs []error
	for _, n := range c.nodes {
		// The hub first: it ends the WebSocket connections, which
		// http.Server.Shutdown would otherwise wait for.
		errs = append(errs, n.hub.Shutdown(ctx), n.srv.Shutdown(ctx))
	}
	c.wg.Wait()
	if c.closeConn != nil {
		errs = append(errs, c.closeConn())
	}
	return errors.Join(errs...)
}

// play shows the backplane at work, with Go clients of the nodes, and
// prints each step to w: a client on the first node receives what the
// second node publishes; it leaves, the third node publishes while it is
// away, and it comes back on the third node, resuming after the last
// position it saw with nothing lost or repeated.
func play(ctx context.Context, w io.Writer, c *cluster, topic string) error {
	if len(c.nodes) < 3 {
		return errors.New("the scenario needs three nodes")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	first, second, third := c.nodes[0], c.nodes[1], c.nodes[2]

	cl, err := client.Dial(ctx, first.wsURL(), nil)
	if err != nil {
		return err
	}
	sub, err := cl.Subscribe(ctx, topic, nil)
	if err != nil {
		cl.Close()
		return err
	}
	fmt.Fprintf(w, "client connected to %s, subscribed to %q\n", first.name, topic)
	var last fanout.Position
	for i := 1; i <= 3; i++ {
		pos, err := second.hub.Publish(ctx, topic, fmt.Appendf(nil, "update %d from %s", i, second.name))
		if err != nil {
			cl.Close()
			return err
		}
		fmt.Fprintf(w, "%s published at %s\n", second.name, pos)
		m, err := nextMessage(ctx, sub)
		if err != nil {
			cl.Close()
			return err
		}
		fmt.Fprintf(w, "  client on %s received %s %q\n", first.name, m.Position, m.Data)
		last = m.Position
	}
	cl.Close()
	fmt.Fprintf(w, "client left %s after %s\n", first.name, last)

	for i := 4; i <= 5; i++ {
		pos, err := third.hub.Publish(ctx, topic, fmt.Appendf(nil, "update %d from %s", i, third.name))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s published at %s while the client was away\n", third.name, pos)
	}

	cl, err = client.Dial(ctx, third.wsURL(), nil)
	if err != nil {
		return err
	}
	defer cl.Close()
	sub, err = cl.Subscribe(ctx, topic, &client.SubscribeOptions{Since: &last})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "client connected to %s, resuming %q since %s\n", third.name, topic, last)
	pos, err := first.hub.Publish(ctx, topic, fmt.Appendf(nil, "update 6 from %s", first.name))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s published at %s\n", first.name, pos)
	for last != pos {
		m, err := nextMessage(ctx, sub)
		if err != nil {
			return err
		}
		if m.Position.Epoch != last.Epoch || m.Position.Seq != last.Seq+1 {
			return fmt.Errorf("resumed at %s after %s: want the next position", m.Position, last)
		}
		fmt.Fprintf(w, "  client on %s received %s %q\n", third.name, m.Position, m.Data)
		last = m.Position
	}
	fmt.Fprintln(w, "the client resumed on another node with nothing lost or repeated")
	return nil
}

// nextMessage returns the subscription's next message.
func nextMessage(ctx context.Context, sub *client.Subscription) (client.Message, error) {
	ev, err := sub.Next(ctx)
	if err != nil {
		return client.Message{}, err
	}
	if ev.Kind != client.EventMessage {
		return client.Message{}, fmt.Errorf("got a %s event on %q, want a message", ev.Kind, sub.Topic())
	}
	return ev.Message, nil
}
