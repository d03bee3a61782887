package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
)

// TestPublishInputLimits: a message's key and header have sizes, enforced
// by Hub.Publish and so on every path that publishes.
func TestPublishInputLimits(t *testing.T) {
	t.Parallel()
	h := newHub(t, nil)
	headers := func(n, size int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprintf("h%02d", i)] = strings.Repeat("v", size)
		}
		return m
	}
	for _, c := range []struct {
		name string
		opts []fanout.PublishOption
		want error // nil: accepted
	}{
		{"key of 256 bytes", []fanout.PublishOption{fanout.WithKey(strings.Repeat("k", 256))}, nil},
		{"key of 257 bytes", []fanout.PublishOption{fanout.WithKey(strings.Repeat("k", 257))}, fanout.ErrTooLarge},
		{"key of 900 KB", []fanout.PublishOption{fanout.WithKey(strings.Repeat("k", 900_000))}, fanout.ErrTooLarge},
		{"key not UTF-8", []fanout.PublishOption{fanout.WithKey("a\xffb")}, fanout.ErrBadRequest},
		{"16 headers", []fanout.PublishOption{fanout.WithHeader(headers(16, 10))}, nil},
		{"17 headers", []fanout.PublishOption{fanout.WithHeader(headers(17, 10))}, fanout.ErrTooLarge},
		{"15 headers and final", []fanout.PublishOption{fanout.WithHeader(headers(15, 10)), fanout.WithFinal()}, nil},
		{"16 headers and final", []fanout.PublishOption{fanout.WithHeader(headers(16, 10)), fanout.WithFinal()}, fanout.ErrTooLarge},
		{"4 KiB of header", []fanout.PublishOption{fanout.WithHeader(headers(4, 1024-3))}, nil},
		{"more than 4 KiB of header", []fanout.PublishOption{fanout.WithHeader(headers(4, 1024-2))}, fanout.ErrTooLarge},
		{"idempotency key of 256 bytes", []fanout.PublishOption{fanout.WithIdempotencyKey(strings.Repeat("i", 256))}, nil},
		{"idempotency key of 257 bytes", []fanout.PublishOption{fanout.WithIdempotencyKey(strings.Repeat("i", 257))}, fanout.ErrBadRequest},
		{"header name empty", []fanout.PublishOption{fanout.WithHeader(map[string]string{"": "v"})}, fanout.ErrBadRequest},
		{"header value not UTF-8", []fanout.PublishOption{fanout.WithHeader(map[string]string{"a": "\xc3"})}, fanout.ErrBadRequest},
	} {
		_, err := h.Publish(context.Background(), "limits", []byte("x"), c.opts...)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: got %v, want success", c.name, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: got %v, want an error matching %v", c.name, err, c.want)
		case c.want != nil && len(err.Error()) > 200:
			t.Errorf("%s: error of %d bytes: it must not echo the input", c.name, len(err.Error()))
		}
	}
}

// TestPublishInputLimitsOptions: the limits are options.
func TestPublishInputLimitsOptions(t *testing.T) {
	t.Parallel()
	h := newHub(t, &fanout.HubOptions{MaxKeyLength: 4, MaxHeaders: 1, MaxHeaderBytes: 8})
	ctx := context.Background()
	if _, err := h.Publish(ctx, "t", nil, fanout.WithKey("abcd"), fanout.WithHeader(map[string]string{"abcd": "efgh"})); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	if _, err := h.Publish(ctx, "t", nil, fanout.WithKey("abcde")); !errors.Is(err, fanout.ErrTooLarge) {
		t.Fatalf("key over MaxKeyLength: got %v, want ErrTooLarge", err)
	}
	if _, err := h.Publish(ctx, "t", nil, fanout.WithHeader(map[string]string{"a": "1", "b": "2"})); !errors.Is(err, fanout.ErrTooLarge) {
		t.Fatalf("headers over MaxHeaders: got %v, want ErrTooLarge", err)
	}
	if _, err := h.Publish(ctx, "t", nil, fanout.WithHeader(map[string]string{"abcd": "efghi"})); !errors.Is(err, fanout.ErrTooLarge) {
		t.Fatalf("header over MaxHeaderBytes: got %v, want ErrTooLarge", err)
	}
}
