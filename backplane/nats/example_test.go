package nats_test

import (
	"log"
	"net/http"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/nats-io/nats.go"
)

// Each replica of a service connects to the same NATS server and gives its
// hub a node of the backplane; a message published on any replica reaches
// the subscribers of all of them.
func Example() {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close() // after the hub, which closes its backplane node

	hub, err := fanout.NewHub(&fanout.HubOptions{
		Backplane: fnats.New(nc, &fnats.Options{
			HistorySize: 4096, // per topic
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()

	// Serve clients with a transport (transport/websocket, transport/sse,
	// transport/grpc), then publish from any replica:
	http.HandleFunc("POST /stock", func(w http.ResponseWriter, r *http.Request) {
		_, err := hub.Publish(r.Context(), "stock:"+r.FormValue("sku"), []byte(r.FormValue("qty")),
			fanout.WithKey("qty"), fanout.WithIdempotencyKey(r.Header.Get("Idempotency-Key")))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
}
