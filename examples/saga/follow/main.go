// Command follow starts a booking on the saga example (or takes the id of
// a running one) and follows it, printing each step's status until the
// saga ends. It speaks gRPC to grpc.Server (the default), or gRPC-Web or
// Connect to the server's HTTP address, as a browser would:
//
//	go run ./examples/saga/follow -fail hotel
//	go run ./examples/saga/follow -protocol grpc-web -fail car
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

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gofanout/fanout/examples/saga/internal/follower"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1/fanoutv1connect"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "follow:", err)
		os.Exit(1)
	}
}

func run() error {
	httpURL := flag.String("http", "http://localhost:8080", "the saga server's HTTP URL: bookings, and the stream over grpc-web and connect")
	grpcAddr := flag.String("grpc", "localhost:9090", "the saga server's gRPC address, for -protocol grpc")
	protocol := flag.String("protocol", "grpc", "grpc (grpc-go to -grpc), grpc-web or connect (connectrpc.com/connect to -http)")
	fail := flag.String("fail", "", "the step that fails (flight, hotel or car), to see a compensation")
	tx := flag.String("tx", "", "follow this transaction instead of starting a booking")
	token := flag.String("token", "", "the booking's token, with -tx, for a server run with -secret")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var sub follower.Subscriber
	switch *protocol {
	case "grpc":
		conn, err := grpc.NewClient(*grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		sub = follower.GRPC(fanoutv1.NewSubscribeServiceClient(conn))
	case "grpc-web", "connect":
		var opts []connect.ClientOption
		if *protocol == "grpc-web" {
			opts = append(opts, connect.WithGRPCWeb())
		}
		sub = follower.Connect(fanoutv1connect.NewSubscribeServiceClient(http.DefaultClient, *httpURL, opts...))
	default:
		return fmt.Errorf("-protocol %q: want grpc, grpc-web or connect", *protocol)
	}

	if *tx == "" {
		b, err := follower.StartBooking(ctx, http.DefaultClient, *httpURL, *fail)
		if err != nil {
			return err
		}
		*tx, *token = b.Tx, b.Token
		fmt.Printf("booking %s started\n", b.Tx)
	}
	final, err := follower.Follow(ctx, sub, "saga."+*tx, &follower.Options{Out: os.Stdout, Token: *token})
	if err != nil {
		return err
	}
	fmt.Printf("saga %s: %s\n", final.Status, final.Detail)
	return nil
}
