package redis_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	goredis "github.com/redis/go-redis/v9"
)

// Each replica of a service makes its hub on the same Redis; a message
// published on any replica reaches subscribers on all of them.
func ExampleNew() {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close() // the application owns the client

	hub, err := fanout.NewHub(&fanout.HubOptions{
		Backplane: fanoutredis.New(client, &fanoutredis.Options{Prefix: "inventory"}),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close() // closes the backplane, not the client

	pos, err := hub.Publish(context.Background(), "stock/sku-42", []byte(`{"qty":7}`), fanout.WithKey("sku-42"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published at", pos)
}
