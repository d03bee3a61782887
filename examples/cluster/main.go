// Command cluster runs several fanout nodes in one process, connected by a
// Redis or NATS backplane, to show what a backplane does: a client on one
// node receives what another node publishes, and a client that moves to
// another node resumes there exactly where it stopped.
//
//	nats-server -js &
//	go run ./examples/cluster                       # NATS, nodes on :8081-:8083
//	go run ./examples/cluster -backplane=redis      # Redis on 127.0.0.1:6379
//
// At start it plays that scenario with Go clients and prints each step;
// then it keeps serving until interrupted. Each node serves WebSocket
// clients at /ws and takes publishes at POST /publish?topic=T (the body is
// the message), so that you can try it by hand, and serves /metrics
// (Prometheus, labelled with the node), /healthz and /readyz (503 while its
// backplane is unreachable: stop Redis or NATS and see):
//
//	curl -X POST 'localhost:8082/publish?topic=news' -d 'hello from node 2'
//	curl localhost:8082/readyz
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	backplane := flag.String("backplane", "nats", "backplane connecting the nodes: nats or redis")
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "NATS server (JetStream enabled), for -backplane=nats")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address, for -backplane=redis")
	addrs := flag.String("addrs", "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083", "comma-separated listen addresses, one per node")
	name := flag.String("name", "cluster-example", "names the backplane's streams or keys, to keep the example's data apart")
	demo := flag.Bool("demo", true, "play the scenario with Go clients at start")
	drain := flag.Duration("shutdown-timeout", 10*time.Second, "how long to drain connections on SIGINT/SIGTERM")
	jsonLogs := flag.Bool("json", false, "log in JSON")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *jsonLogs {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := start(ctx, config{
		Backplane: *backplane,
		NATSURL:   *natsURL,
		RedisAddr: *redisAddr,
		Addrs:     strings.Split(*addrs, ","),
		Name:      *name,
		Logger:    logger,
	})
	if err != nil {
		return err
	}
	for _, n := range c.nodes {
		logger.Info("node listening", "node", n.name, "ws", n.wsURL(), "backplane", *backplane)
	}
	var demoErr error
	if *demo {
		if demoErr = play(ctx, os.Stdout, c, "news"); ctx.Err() != nil {
			demoErr = nil // interrupted
		}
	}
	if demoErr == nil {
		<-ctx.Done()
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	return errors.Join(demoErr, c.shutdown(sctx))
}
