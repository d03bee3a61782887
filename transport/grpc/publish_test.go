package fanoutgrpc_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

func TestPublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authorize: allowPublish}})
	ctx := testCtx(t)
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "inv"})
	fs.reply(t)
	res, err := e.pub.Publish(ctx, &fanoutv1.PublishRequest{
		Topic: "inv", Data: []byte{0, 1, 2}, Key: "sku1", Headers: map[string]string{"traceparent": "00-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Position.GetSeq() != 1 || res.Position.GetEpoch() == "" {
		t.Fatalf("got position %v, want seq 1 with an epoch", res.Position)
	}
	m := fs.message(t)
	if m.Seq != 1 || m.Key != "sku1" || string(m.Data) != "\x00\x01\x02" || m.Headers["traceparent"] != "00-1" {
		t.Fatalf("got %v, want the published message", m)
	}
}

func TestPublishIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authorize: allowPublish}})
	ctx := testCtx(t)
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "i"})
	fs.reply(t)
	req := &fanoutv1.PublishRequest{Topic: "i", Data: []byte("once"), IdempotencyKey: "k1"}
	first, err := e.pub.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.pub.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Position.GetSeq() != first.Position.GetSeq() {
		t.Fatalf("retry: got seq %d, want the first publication's %d", again.Position.GetSeq(), first.Position.GetSeq())
	}
	other := &fanoutv1.PublishRequest{Topic: "i", Data: []byte("twice"), IdempotencyKey: "k2"}
	second, err := e.pub.Publish(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	retry, err := e.pub.Publish(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if second.Position.GetSeq() != 2 || retry.Position.GetSeq() != 2 {
		t.Fatalf("got seq %d and %d, want 2 and 2", second.Position.GetSeq(), retry.Position.GetSeq())
	}
	if _, err := e.pub.Publish(ctx, &fanoutv1.PublishRequest{Topic: "i", Data: []byte("end")}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"once", "twice", "end"} {
		if m := fs.message(t); string(m.Data) != want || m.Seq != uint64(i+1) {
			t.Fatalf("got seq %d %q, want seq %d %q once each", m.Seq, m.Data, i+1, want)
		}
	}
}

func TestPublishRefused(t *testing.T) {
	t.Parallel()
	auth := func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
		if c.Token != "svc" {
			return fanout.Principal{}, errNoToken
		}
		return fanout.Principal{ID: "svc"}, nil
	}
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authenticate: auth, Authorize: allowPublish, MaxPayload: 8}})
	ok := metadata.Pairs("authorization", "Bearer svc")
	for _, tc := range []struct {
		name string
		md   metadata.MD
		req  *fanoutv1.PublishRequest
		want codes.Code
	}{
		{"no token", nil, &fanoutv1.PublishRequest{Topic: "t"}, codes.Unauthenticated},
		{"forbidden", ok, &fanoutv1.PublishRequest{Topic: "ro"}, codes.PermissionDenied},
		{"bad topic", ok, &fanoutv1.PublishRequest{Topic: "a*b"}, codes.InvalidArgument},
		{"too large", ok, &fanoutv1.PublishRequest{Topic: "t", Data: []byte("123456789")}, codes.InvalidArgument},
		{"long idempotency key", ok, &fanoutv1.PublishRequest{Topic: "t", IdempotencyKey: strings.Repeat("k", fanout.MaxIdempotencyKeyLength+1)}, codes.InvalidArgument},
		{"many headers", ok, &fanoutv1.PublishRequest{Topic: "t", Headers: manyHeaders(33)}, codes.InvalidArgument},
		{"large headers", ok, &fanoutv1.PublishRequest{Topic: "t", Headers: map[string]string{"h": strings.Repeat("v", 5000)}}, codes.InvalidArgument},
		{"longest idempotency key", ok, &fanoutv1.PublishRequest{Topic: "t", IdempotencyKey: strings.Repeat("k", fanout.MaxIdempotencyKeyLength)}, codes.OK},
		{"ok", ok, &fanoutv1.PublishRequest{Topic: "t", Data: []byte("12345678")}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.pub.Publish(metadata.NewOutgoingContext(testCtx(t), tc.md), tc.req)
			wantCode(t, err, tc.want)
		})
	}
}

func TestPublishDeniedByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	_, err := e.pub.Publish(testCtx(t), &fanoutv1.PublishRequest{Topic: "t", Data: []byte("x")})
	wantCode(t, err, codes.PermissionDenied)
}

func TestPublishAfterShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authorize: allowPublish}})
	if err := e.hub.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	_, err := e.pub.Publish(testCtx(t), &fanoutv1.PublishRequest{Topic: "t", Data: []byte("x")})
	wantCode(t, err, codes.Unavailable)
}

func manyHeaders(n int) map[string]string {
	h := make(map[string]string, n)
	for i := 0; i < n; i++ {
		h[strings.Repeat("h", i+1)] = "v"
	}
	return h
}
