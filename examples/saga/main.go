package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	fanoutredis "github.com/gofanout/fanout/backplane/redis"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "saga:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "HTTP address: the page, bookings, SSE, WebSocket, gRPC-Web, Connect, and gRPC over h2c")
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:9090", "gRPC address (grpc.Server)")
	latency := flag.Duration("latency", 800*time.Millisecond, "how long each step takes")
	drain := flag.Duration("drain", 20*time.Second, "how long a graceful shutdown may take")
	redisAddr := flag.String("redis", os.Getenv("SAGA_REDIS_ADDR"), "Redis address of the backplane that replicas share (default $SAGA_REDIS_ADDR; empty: in-memory, one process)")
	secret := flag.String("secret", os.Getenv("SAGA_SECRET"), "when set, a client follows a booking only with the token POST /bookings answers (default $SAGA_SECRET; empty: anyone follows any booking)")
	jsonLogs := flag.Bool("json", false, "log in JSON")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *jsonLogs {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := &Config{Latency: *latency, Drain: *drain, Logger: log, Secret: []byte(*secret)}
	if *redisAddr != "" {
		rc := goredis.NewClient(&goredis.Options{Addr: *redisAddr})
		defer rc.Close() // after the hub, which closes the backplane
		cfg.Backplane = fanoutredis.New(rc, &fanoutredis.Options{Prefix: "saga"})
	}
	srv, err := NewServer(cfg)
	if err != nil {
		return err
	}
	httpL, err := net.Listen("tcp", *addr)
	if err != nil {
		srv.Close()
		return err
	}
	grpcL, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		httpL.Close()
		srv.Close()
		return err
	}
	log.Info("listening", "http", httpL.Addr().String(), "grpc", grpcL.Addr().String(), "redis", *redisAddr)
	err = srv.Serve(ctx, httpL, grpcL)
	log.Info("stopped", "err", err)
	return err
}
