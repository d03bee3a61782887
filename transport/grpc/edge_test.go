package fanoutgrpc_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// TestBearerCaseInsensitive takes the scheme in any case (RFC 7235), as the
// HTTP transports do.
func TestBearerCaseInsensitive(t *testing.T) {
	t.Parallel()
	auth := func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
		if c.Token != "svc" {
			return fanout.Principal{}, errNoToken
		}
		return fanout.Principal{ID: "svc"}, nil
	}
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authenticate: auth, Authorize: allowPublish}})
	for _, a := range []string{"Bearer svc", "bearer svc", "BEARER svc", "bEaReR svc", "Bearer  svc "} {
		ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", a)
		if _, err := e.pub.Publish(ctx, &fanoutv1.PublishRequest{Topic: "t", Data: []byte("x")}); err != nil {
			t.Errorf("authorization %q: %v", a, err)
		}
	}
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Basic svc")
	_, err := e.pub.Publish(ctx, &fanoutv1.PublishRequest{Topic: "t", Data: []byte("x")})
	wantCode(t, err, codes.Unauthenticated)
}

// TestStatusMessages: what a client reads names its input once, without
// the package prefix, and the ErrorInfo reason is the wire code.
func TestStatusMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authorize: allowPublish, MaxPayload: 4}})
	for _, tc := range []struct {
		req    *fanoutv1.PublishRequest
		code   codes.Code
		reason string
		msg    string
	}{
		{&fanoutv1.PublishRequest{Topic: "a*b"}, codes.InvalidArgument, "INVALID_TOPIC", `invalid topic: "a*b" has a forbidden character at byte 1`},
		{&fanoutv1.PublishRequest{Topic: "t", Data: []byte("12345")}, codes.InvalidArgument, "TOO_LARGE", `publish "t": too large: 5 bytes, limit 4`},
		{&fanoutv1.PublishRequest{Topic: "ro", Data: []byte("1")}, codes.PermissionDenied, "FORBIDDEN", ""},
	} {
		_, err := e.pub.Publish(testCtx(t), tc.req)
		wantCode(t, err, tc.code)
		if r, _ := errorInfo(t, err); r != tc.reason {
			t.Errorf("%s: got reason %q, want %q", tc.req.Topic, r, tc.reason)
		}
		m := status.Convert(err).Message()
		if strings.Contains(m, "fanout:") || tc.msg != "" && m != tc.msg {
			t.Errorf("%s: got message %q, want %q", tc.req.Topic, m, tc.msg)
		}
	}
}
