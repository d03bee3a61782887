package fanoutgrpc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// lifetimes authenticates tokens "id:duration" (time.ParseDuration): the
// principal id, whose credentials expire that long from now.
func lifetimes(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
	id, d, ok := strings.Cut(c.Token, ":")
	life, err := time.ParseDuration(d)
	if !ok || err != nil {
		return fanout.Principal{}, errors.New("bad token")
	}
	return fanout.Principal{ID: id, ExpiresAt: time.Now().Add(life)}, nil
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// TestSubscribeEndsAtExpiry: a Subscribe stream says when its credentials
// expire, and ends then with close 4002 and UNAUTHENTICATED.
func TestSubscribeEndsAtExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authenticate: lifetimes}})
	ctx := withToken(testCtx(t), "alice:300ms")
	start := time.Now()
	f := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "exp"})
	ex := f.must(t).GetExpiry()
	if ex == nil || ex.ExpiresAt.AsTime().Before(start) {
		t.Fatalf("first frame: got expiry %v, want one after the start", ex)
	}
	f.reply(t)
	c, err := f.end(t)
	if c.Code != uint32(fanout.CloseUnauthorized) || c.Reason != fanout.ReasonExpired || c.Reconnect {
		t.Fatalf("got close %v, want 4002 %q", c, fanout.ReasonExpired)
	}
	wantCode(t, err, codes.Unauthenticated)
	if time.Now().Before(ex.ExpiresAt.AsTime()) {
		t.Fatal("the stream ended before its credentials expired")
	}
}

// TestConnectRefresh: a Connect stream refreshes its credentials with a
// refresh command; another principal's are refused; without a refresh the
// stream ends at expiry with 4002.
func TestConnectRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authenticate: lifetimes}})
	ctx := withToken(testCtx(t), "alice:1h")
	c := connect(t, ctx, e)
	first := c.must(t).GetExpiry()
	if first == nil {
		t.Fatal("no expiry frame first")
	}
	refresh := func(id, token string) *fanoutv1.Reply {
		c.send(t, &fanoutv1.Command{Id: id, Command: &fanoutv1.Command_Refresh{Refresh: &fanoutv1.Refresh{Token: token}}})
		return c.reply(t)
	}
	r := refresh("1", "alice:2h")
	if r.Id != "1" || r.Error != nil || !r.ExpiresAt.AsTime().After(first.ExpiresAt.AsTime()) {
		t.Fatalf("got %v, want an ok reply with a later expiry than %v", r, first.ExpiresAt.AsTime())
	}
	if r := refresh("2", "bob:2h"); r.GetError().GetCode() != "forbidden" || r.ExpiresAt != nil {
		t.Fatalf("another principal: got %v, want forbidden", r)
	}
	if r := refresh("3", "garbage"); r.GetError().GetCode() != "unauthenticated" {
		t.Fatalf("bad credentials: got %v, want unauthenticated", r)
	}
	// Credentials that expire at once: the stream ends with 4002.
	if r := refresh("4", "alice:200ms"); r.Error != nil {
		t.Fatalf("got %v", r)
	}
	cl, err := c.end(t)
	if cl.Code != uint32(fanout.CloseUnauthorized) {
		t.Fatalf("got close %v, want 4002", cl)
	}
	wantCode(t, err, codes.Unauthenticated)
}
