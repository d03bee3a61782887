package fanoutgrpc_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	connectrpc "connectrpc.com/connect"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1/fanoutv1connect"
)

// pipeClient serves hub with Server.Handler over an in-memory pipe, over
// HTTP/2 without TLS, so that a synctest bubble runs the real handler and
// client with fake time.
func pipeClient(t *testing.T, hub *fanout.Hub) fanoutv1connect.SubscribeServiceClient {
	t.Helper()
	p := testenv.NewPipe()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: fanoutgrpc.New(hub, &fanoutgrpc.Options{Heartbeat: time.Hour}).Handler(), Protocols: &protocols}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(p) }()
	tr := &http.Transport{DialContext: p.Dial, Protocols: &protocols}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		<-served
	})
	return fanoutv1connect.NewSubscribeServiceClient(&http.Client{Transport: tr}, "http://pipe", connectrpc.WithGRPC())
}

func authorized(h http.Header, token string) {
	h.Set("Authorization", "Bearer "+token)
}

// TestExpirySynctest: a Subscribe stream ends exactly at its credentials'
// expiry; a Connect stream that refreshes in time lives on until the new
// expiry, and one that does not ends at the old one.
func TestExpirySynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, err := fanout.NewHub(&fanout.HubOptions{Authenticate: lifetimes})
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		c := pipeClient(t, hub)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()

		// Subscribe: no commands; it ends at expiry with 4002.
		req := connectrpc.NewRequest(&fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: "exp"}}})
		authorized(req.Header(), "alice:1m")
		sst, err := c.Subscribe(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		defer sst.Close()
		sf := &frames{recv: func() (*fanoutv1.Frames, error) {
			if sst.Receive() {
				return sst.Msg(), nil
			}
			return nil, sst.Err()
		}}

		// Connect: refreshed at 50s for 1m more.
		bst := c.Connect(ctx)
		authorized(bst.RequestHeader(), "alice:1m")
		defer bst.CloseRequest()
		if err := bst.Send(&fanoutv1.Command{Id: "p", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}}); err != nil {
			t.Fatal(err)
		}
		bf := &frames{recv: bst.Receive}
		if ex := bf.must(t).GetExpiry(); ex == nil || !ex.ExpiresAt.AsTime().Equal(start.Add(time.Minute)) {
			t.Fatalf("Connect: got expiry %v, want +1m", ex)
		}
		bf.reply(t)

		if ex := sf.must(t).GetExpiry(); ex == nil || !ex.ExpiresAt.AsTime().Equal(start.Add(time.Minute)) {
			t.Fatalf("Subscribe: got expiry %v, want +1m", ex)
		}
		sf.reply(t)

		time.Sleep(50 * time.Second)
		if err := bst.Send(&fanoutv1.Command{Id: "r", Command: &fanoutv1.Command_Refresh{Refresh: &fanoutv1.Refresh{Token: "alice:1m"}}}); err != nil {
			t.Fatal(err)
		}
		if r := bf.reply(t); r.Error != nil || !r.ExpiresAt.AsTime().Equal(start.Add(110*time.Second)) {
			t.Fatalf("refresh: got %v, want the expiry at +110s", r)
		}

		cl, err := sf.end(t)
		if cl.Code != uint32(fanout.CloseUnauthorized) || time.Since(start) != time.Minute {
			t.Fatalf("Subscribe: closed with %v after %v, want 4002 after 1m", cl, time.Since(start))
		}
		if connectrpc.CodeOf(err) != connectrpc.CodeUnauthenticated {
			t.Fatalf("got %v, want unauthenticated", err)
		}

		cl, err = bf.end(t)
		if cl.Code != uint32(fanout.CloseUnauthorized) || time.Since(start) != 110*time.Second {
			t.Fatalf("Connect: closed with %v after %v, want 4002 after 110s", cl, time.Since(start))
		}
		if connectrpc.CodeOf(err) != connectrpc.CodeUnauthenticated {
			t.Fatalf("got %v, want unauthenticated", err)
		}
	})
}
