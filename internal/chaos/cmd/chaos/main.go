// Command chaos injects faults into a cluster of fanout nodes and checks
// every client's stream against the publisher's log. It starts its own
// redis-server and nats-server on free loopback ports, three nodes as
// separate processes, clients and a publisher, then prints a table:
// scenario × backplane → published, delivered, violations, resets,
// catch-up time, publisher errors.
//
//	go run ./internal/chaos/cmd/chaos -short          # a few minutes, as CI runs it
//	go run ./internal/chaos/cmd/chaos                 # the long version
//	go run ./internal/chaos/cmd/chaos -backplane redis -scenario storage-older-rdb
//
// It exits with status 1 when a run found a violation or failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gofanout/fanout/internal/chaos"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) > 1 && os.Args[1] == "node" {
		return runNode(os.Args[2:])
	}
	short := flag.Bool("short", false, "run every scenario briefly, as CI does")
	backplanes := flag.String("backplane", "", "comma-separated backplanes to run (redis, nats, redis-cluster, nats-cluster); default all")
	scenarios := flag.String("scenario", "", "comma-separated scenarios to run; default all")
	flag.Parse()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p := chaos.Long
	if *short {
		p = chaos.Short
	}
	results := chaos.Run(ctx, chaos.Config{
		Exe: exe, Params: p, Out: os.Stdout,
		Backplanes: split(*backplanes), Scenarios: split(*scenarios),
	})
	fmt.Println()
	chaos.Table(os.Stdout, results)
	return chaos.Failed(results)
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// runNode is the node process that Run starts.
func runNode(args []string) error {
	fs := flag.NewFlagSet("node", flag.ExitOnError)
	var cfg chaos.NodeConfig
	fs.StringVar(&cfg.Backplane, "backplane", "redis", "redis, redis-cluster or nats")
	fs.StringVar(&cfg.Storage, "storage", "", "Redis host:port, Redis Cluster host:ports (comma-separated) or NATS URLs")
	fs.StringVar(&cfg.Listen, "listen", "", "host:port to serve WebSocket clients on")
	fs.StringVar(&cfg.Name, "name", "chaos", "names the backplane's keys or streams")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "replication factor of the NATS streams")
	fs.Parse(args)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return chaos.RunNode(ctx, cfg)
}
