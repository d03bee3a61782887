package main_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gofanout/fanout"
	saga "github.com/gofanout/fanout/examples/saga"
	"github.com/gofanout/fanout/examples/saga/internal/follower"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1/fanoutv1connect"
)

// protocols are the ways the follower reaches the server's HTTP address:
// what the follow command's -protocol selects, and gRPC over h2c.
var protocols = []struct {
	name  string
	http2 bool
	opts  []connect.ClientOption
}{
	{"grpc-web", false, []connect.ClientOption{connect.WithGRPCWeb()}},
	{"connect", false, nil},
	{"grpc-h2c", true, []connect.ClientOption{connect.WithGRPC()}},
}

// httpClient dials the server's HTTP address through dial: HTTP/1.1, or
// h2c when http2.
func httpClient(t *testing.T, http2 bool, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols), DialContext: dial}
	if http2 {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestFollowerProtocols follows a compensated saga over each protocol of
// the server's HTTP address, from the snapshot to the server's end of the
// stream.
func TestFollowerProtocols(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, saga.Config{})
			b, err := follower.StartBooking(bounded(t), ts.http, ts.url, "car")
			if err != nil {
				t.Fatal(err)
			}
			c := fanoutv1connect.NewSubscribeServiceClient(httpClient(t, p.http2, nil), ts.url, p.opts...)
			out, done := followUntilSnapshot(t, follower.Connect(c), b.Topic, nil)
			ts.release()
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.final.Status != "compensated" || r.final.Tx != b.Tx {
				t.Errorf("got final update %+v, want the compensated end of %s", r.final, b.Tx)
			}
			if other := checkPrinted(t, out.String(), transcript("car")); !slices.Equal(other, []string{serverEnded}) {
				t.Errorf("got other lines %q, want %q", other, serverEnded)
			}
		})
	}
}

// TestFollowerResumesOverGRPCWeb: as TestFollowerResumes, over gRPC-Web on
// the servers' HTTP addresses. A drains in the middle; the follower
// resumes on B after the last update it received.
func TestFollowerResumesOverGRPCWeb(t *testing.T) {
	t.Parallel()
	broker := fanout.NewMemoryBroker(nil)
	a := startServer(t, saga.Config{Backplane: broker.Node()})
	b := startServer(t, saga.Config{Backplane: broker.Node()})
	toB := make(chan struct{})
	var dials atomic.Int32
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		addr := a.url[len("http://"):]
		if dials.Add(1) > 1 {
			select {
			case <-toB:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			addr = b.url[len("http://"):]
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	c := fanoutv1connect.NewSubscribeServiceClient(httpClient(t, false, dial), "http://saga", connect.WithGRPCWeb())
	tx := b.book(t, "hotel")
	out, done := followUntilSnapshot(t, follower.Connect(c), saga.Topic(tx), &follower.Options{Retries: 100})
	if err := a.stop(); err != nil {
		t.Fatalf("draining A: %v", err)
	}
	b.release()
	if _, err := followSSE(bounded(t), b.http, b.url, tx, "", 0, nil); err != nil {
		t.Fatal(err)
	}
	close(toB)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.final.Status != "compensated" {
		t.Errorf("got final status %q, want compensated", r.final.Status)
	}
	other := checkPrinted(t, out.String(), transcript("hotel"))
	if len(other) != 2 || other[1] != serverEnded {
		t.Errorf("got other lines %q, want one that says the follower resumed, then %q", other, serverEnded)
	}
}

// TestFollowerTokens runs a server with a secret: a booking's token follows
// that booking, on gRPC-Web and on grpc.Server; no token or a forged one is
// refused as unauthenticated, another booking's as forbidden.
func TestFollowerTokens(t *testing.T) {
	t.Parallel()
	ts := startServer(t, saga.Config{Secret: []byte("s3cret")})
	ts.release()
	b, err := follower.StartBooking(bounded(t), ts.http, ts.url, "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := follower.StartBooking(bounded(t), ts.http, ts.url, "")
	if err != nil {
		t.Fatal(err)
	}
	if b.Token == "" || other.Token == "" || b.Token == other.Token {
		t.Fatalf("got tokens %q and %q, want one per booking", b.Token, other.Token)
	}
	// SSE takes the token as ?token=.
	for _, tc := range []struct {
		token string
		want  int
	}{{b.Token, http.StatusOK}, {"", http.StatusUnauthorized}, {other.Token, http.StatusForbidden}} {
		req, err := http.NewRequestWithContext(bounded(t), http.MethodGet, ts.url+"/events?snapshot=1&topic="+b.Topic+"&token="+url.QueryEscape(tc.token), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ts.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("SSE, token %q: got %s, want %d", tc.token, resp.Status, tc.want)
		}
	}
	web := follower.Connect(fanoutv1connect.NewSubscribeServiceClient(httpClient(t, false, nil), ts.url, connect.WithGRPCWeb()))
	for _, c := range []struct {
		name string
		sub  follower.Subscriber
	}{{"grpc-web", web}, {"grpc", follower.GRPC(ts.grpcClient(t))}} {
		for _, tc := range []struct {
			token string
			want  codes.Code
		}{
			{b.Token, codes.OK},
			{"", codes.Unauthenticated},
			{b.Tx + ".forged", codes.Unauthenticated},
			{other.Token, codes.PermissionDenied},
		} {
			final, err := follower.Follow(bounded(t), c.sub, b.Topic, &follower.Options{Token: tc.token})
			if got := status.Code(err); got != tc.want {
				t.Errorf("%s, token %q: got %v (%v), want %v", c.name, tc.token, got, err, tc.want)
			}
			if err == nil && final.Status != "completed" {
				t.Errorf("%s: got final status %q, want completed", c.name, final.Status)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.FailNow()
			}
		}
	}
}
