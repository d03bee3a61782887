package fanoutgrpc_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// A server, and a client that subscribes to a product's stock: it first
// gets the current state, then every change.
func Example() {
	hub, err := fanout.NewHub(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	fanoutgrpc.New(hub, nil).Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer func() {
		gs.Stop()
		<-served
	}()

	ctx := context.Background()
	hub.Publish(ctx, "stock", []byte("5"), fanout.WithKey("sku-1"))

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := fanoutv1.NewSubscribeServiceClient(conn).Subscribe(ctx, &fanoutv1.SubscribeRequest{
		Subscriptions: []*fanoutv1.Subscription{{Topic: "stock", Snapshot: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	for seen := 0; seen < 3; {
		batch, err := stream.Recv()
		if err != nil {
			log.Fatal(err)
		}
		for _, f := range batch.Frames {
			seen++
			switch {
			case f.GetReply() != nil:
				fmt.Printf("subscribed to %s at seq %d\n", f.GetReply().Topic, f.GetReply().Position.GetSeq())
			case f.GetSnapshot() != nil:
				for _, m := range f.GetSnapshot().Items {
					fmt.Printf("state: %s=%s\n", m.Key, m.Data)
				}
				hub.Publish(ctx, "stock", []byte("4"), fanout.WithKey("sku-1"))
			case f.GetMessage() != nil:
				m := f.GetMessage()
				fmt.Printf("change %d: %s=%s\n", m.Seq, m.Key, m.Data)
			}
		}
	}
	// Output:
	// subscribed to stock at seq 1
	// state: sku-1=5
	// change 2: sku-1=4
}
