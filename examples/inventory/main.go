// Command inventory is a live inventory board: every browser that opens it
// sees each product's stock at once, and every change within milliseconds.
//
//	INVENTORY_TOKEN=s3cret go run ./examples/inventory   # http://127.0.0.1:8080
//
// The inventory service reports a change by posting its event:
//
//	curl -X POST 127.0.0.1:8080/events -H 'Authorization: Bearer s3cret' \
//	  -d '{"ProductId":"SKU-1","NewQuantity":5,"Timestamp":1700000000000}'
//
// POST /events, POST /publish and GET /inspect need "Authorization: Bearer
// <token>" with the token of -token (or INVENTORY_TOKEN); started without
// one, the server refuses to run unless -insecure says that anyone who
// reaches it may publish. It listens on loopback unless -addr says
// otherwise, logs with slog (JSON with -json), and serves /healthz,
// /readyz and /metrics (Prometheus). It uses the in-memory backplane, so
// it needs nothing else; -simulate (on by default) changes stock every
// -interval so that the board moves by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on (\":8080\" for every interface)")
	token := flag.String("token", os.Getenv("INVENTORY_TOKEN"), "bearer token required by POST /events, /publish and GET /inspect (default $INVENTORY_TOKEN)")
	insecure := flag.Bool("insecure", false, "without a token, let anyone who reaches the server publish and inspect")
	jsonLogs := flag.Bool("json", false, "log in JSON")
	simulate := flag.Bool("simulate", true, "change random products' stock every -interval")
	interval := flag.Duration("interval", 2*time.Second, "how often -simulate changes stock")
	stock := flag.String("stock", "", "initial stock, overriding the built-in catalogue's: SKU-1=10,SKU-3=0")
	drain := flag.Duration("shutdown-timeout", 10*time.Second, "how long to drain connections on SIGINT/SIGTERM")
	flag.Parse()

	var logger *slog.Logger
	if *jsonLogs {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	} else {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := checkAuth(*token, *insecure); err != nil {
		return err
	}
	catalog, err := parseStock(defaultCatalog(), *stock)
	if err != nil {
		return err
	}
	srv, err := newServer(config{Catalog: catalog, Token: *token, Logger: logger})
	if err != nil {
		return err
	}
	defer srv.ws.Close()
	defer srv.hub.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.seed(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	var wg sync.WaitGroup
	if *simulate {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.simulate(ctx, *interval, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
		}()
	}
	logger.Info("listening", "url", "http://"+ln.Addr().String(), "simulate", *simulate, "auth", *token != "")

	select {
	case err = <-serveErr:
	case <-ctx.Done():
	}
	stop()
	logger.Info("shutting down")
	// The hub first: it tells every client to reconnect (close code 4000)
	// and ends their connections, which http.Server.Shutdown would wait for
	// forever.
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	herr := srv.hub.Shutdown(sctx)
	srv.ws.Close() // waits for the WebSocket connections the hub ended
	serr := hs.Shutdown(sctx)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, herr, serr)
}

// checkAuth refuses to start a server that anyone could publish to, unless
// that is asked for.
func checkAuth(token string, insecure bool) error {
	if token == "" && !insecure {
		return errors.New("no token: set -token or INVENTORY_TOKEN, or start with -insecure to let anyone publish")
	}
	return nil
}
