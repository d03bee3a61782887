// Command follow starts a booking on the saga example (or takes the id of
// a running one) and follows it over gRPC, printing each step's status until
// the saga ends:
//
//	go run ./examples/saga/follow -fail hotel
//	go run ./examples/saga/follow -tx 3f9a0c1b2d4e5f60
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gofanout/fanout/examples/saga/internal/follower"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "follow:", err)
		os.Exit(1)
	}
}

func run() error {
	httpURL := flag.String("http", "http://localhost:8080", "the saga server's HTTP URL, to start a booking")
	grpcAddr := flag.String("grpc", "localhost:9090", "the saga server's gRPC address")
	fail := flag.String("fail", "", "the step that fails (flight, hotel or car), to see a compensation")
	tx := flag.String("tx", "", "follow this transaction instead of starting a booking")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *tx == "" {
		b, err := follower.StartBooking(ctx, http.DefaultClient, *httpURL, *fail)
		if err != nil {
			return err
		}
		*tx = b.Tx
		fmt.Printf("booking %s started\n", b.Tx)
	}
	conn, err := grpc.NewClient(*grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	final, err := follower.Follow(ctx, fanoutv1.NewSubscribeServiceClient(conn), "saga."+*tx, &follower.Options{Out: os.Stdout})
	if err != nil {
		return err
	}
	fmt.Printf("saga %s: %s\n", final.Status, final.Detail)
	return nil
}
