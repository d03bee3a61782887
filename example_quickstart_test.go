package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
	"github.com/gofanout/fanout/transport/websocket"
)

// The README's quick start, as written there: keep the two the same.

// checkToken is your authenticator: it judges the bearer token (from the
// Authorization header, a token query parameter or an access_token cookie).
func checkToken(ctx context.Context, c *fanout.Credentials) (fanout.Principal, error) {
	switch c.Token {
	case "":
		return fanout.Principal{}, nil // anonymous: may subscribe
	case "secret-of-the-inventory-service": // in real life, verify a JWT or ask your identity service
		return fanout.Principal{ID: "inventory-service"}, nil
	}
	return fanout.Principal{}, errors.New("unknown token")
}

func serve(ctx context.Context, ln net.Listener) error {
	hub, err := fanout.NewHub(&fanout.HubOptions{
		// By default anyone may subscribe and no client or service may publish.
		Authorize: func(ctx context.Context, p fanout.Principal, topic string, a fanout.Action) error {
			if a == fanout.ActionPublish && p.ID != "inventory-service" {
				return errors.New("publishing is for the inventory service")
			}
			return nil
		},
		Authenticate: checkToken,
	}) // no Backplane: in memory, one process
	if err != nil {
		return err
	}
	defer hub.Close()

	ws := websocket.New(hub, nil) // transport/websocket
	mux := http.NewServeMux()
	mux.Handle("/ws", ws)
	mux.Handle("/events", sse.New(hub, nil))                   // transport/sse
	mux.Handle("/publish", fanout.NewPublishHandler(hub, nil)) // no method: it answers other methods with its JSON 405
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := hub.Ready(r.Context()); err != nil {
			fanout.WriteError(w, http.StatusServiceUnavailable, err)
		}
	})
	// ReadHeaderTimeout: a client that sends half a request is dropped
	// instead of holding a connection open.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)

	// Anywhere in your code: publish, keyed so late subscribers get the state.
	hub.Publish(ctx, "inventory.SKU-1", []byte(`{"stock":5}`), fanout.WithKey("SKU-1"))

	<-ctx.Done() // on SIGTERM (signal.NotifyContext)
	// Tell every client to reconnect elsewhere, after what is queued, then
	// wait for the WebSocket connections' goroutines.
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hub.Shutdown(stop)
	ws.Close()
	return srv.Shutdown(stop)
}

func Example_quickStart() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()

	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("readyz:", resp.StatusCode)

	req, _ := http.NewRequest(http.MethodPost, base+"/publish", strings.NewReader(`{"topic":"inventory.SKU-1","data":{"stock":4},"key":"SKU-1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer secret-of-the-inventory-service")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("publish:", resp.StatusCode)

	cancel()
	fmt.Println("stopped:", <-done)
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// readyz: 200
	// publish: 200
	// stopped: <nil>
}
