package client_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/transport/websocket"
)

func Example() {
	// A server: a hub served over WebSocket.
	hub, err := fanout.NewHub(nil)
	if err != nil {
		log.Fatal(err)
	}
	h := websocket.New(hub, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close()
	defer hub.Close()
	ctx := context.Background()
	hub.Publish(ctx, "stock:42", []byte(`{"qty":5}`), fanout.WithKey("qty"))

	// The client: the current state first, then every change.
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, "stock:42", &client.SubscribeOptions{Snapshot: true})
	if err != nil {
		log.Fatal(err)
	}
	hub.Publish(ctx, "stock:42", []byte(`{"qty":4}`), fanout.WithKey("qty"))
	for range 2 {
		ev, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		switch ev.Kind {
		case client.EventSnapshot:
			for _, m := range ev.Snapshot {
				fmt.Printf("snapshot at %d: %s\n", ev.Position.Seq, m.Data)
			}
		case client.EventMessage:
			fmt.Printf("message %d: %s\n", ev.Position.Seq, ev.Message.Data)
		}
	}
	// Output:
	// snapshot at 1: {"qty":5}
	// message 2: {"qty":4}
}
