package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
)

// TestErrorTable checks each library error's row: the wire code, the HTTP
// status and the headers of the one error body.
func TestErrorTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		code   string
		status int
		header map[string]string
	}{
		{fanout.ErrInvalidTopic, "invalid_topic", 400, nil},
		{fanout.ErrUnauthenticated, "unauthenticated", 401, map[string]string{"WWW-Authenticate": "Bearer"}},
		{fanout.ErrForbidden, "forbidden", 403, nil},
		{fanout.ErrAlreadySubscribed, "already_subscribed", 409, nil},
		{fanout.ErrNotSubscribed, "not_subscribed", 409, nil},
		{fanout.ErrTooManySubscriptions, "too_many_subscriptions", 400, nil},
		{fanout.ErrRateLimited, "rate_limited", 429, nil},
		{fanout.ErrTooLarge, "too_large", 413, nil},
		{fanout.ErrBadRequest, "bad_request", 400, nil},
		{fanout.ErrUnavailable, "unavailable", 503, map[string]string{"Retry-After": "2"}},
		{fanout.ErrClosed, "closed", 503, map[string]string{"Retry-After": "2"}},
		{errors.New("redis: connection refused at 10.0.0.7:6379"), "internal", 500, nil},
	} {
		err := fmt.Errorf("publish %q: %w", "t", tc.err)
		if got := fanout.ErrorCode(err); got != tc.code {
			t.Errorf("%v: got code %q, want %q", tc.err, got, tc.code)
		}
		if got := fanout.HTTPStatus(err); got != tc.status {
			t.Errorf("%v: got status %d, want %d", tc.err, got, tc.status)
		}
		w := httptest.NewRecorder()
		fanout.WriteError(w, fanout.HTTPStatus(err), err)
		want := fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`+"\n", tc.code, fanout.ErrorMessage(err))
		if w.Code != tc.status || w.Body.String() != want {
			t.Errorf("%v: got %d %s, want %d %s", tc.err, w.Code, w.Body, tc.status, want)
		}
		for k, v := range map[string]string{"Content-Type": "application/json", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
			if got := w.Header().Get(k); got != v {
				t.Errorf("%v: got %s %q, want %q", tc.err, k, got, v)
			}
		}
		for _, k := range []string{"WWW-Authenticate", "Retry-After"} {
			if got := w.Header().Get(k); got != tc.header[k] {
				t.Errorf("%v: got %s %q, want %q", tc.err, k, got, tc.header[k])
			}
		}
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("publish %q: %w: 12 bytes, limit 10", "a", fanout.ErrTooLarge), `publish "a": too large: 12 bytes, limit 10`},
		{fmt.Errorf("%w: empty name", fanout.ErrInvalidTopic), `invalid topic: empty name`},
		{fanout.ErrClosed, "closed"},
		// An error the table does not know may tell of the server's
		// internals: the client is told only that it happened.
		{errors.New("dial tcp 10.0.0.7:6379: connection refused"), "internal error"},
	} {
		if got := fanout.ErrorMessage(tc.err); got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.err, got, tc.want)
		}
	}
	// A caller's Retry-After wins.
	w := httptest.NewRecorder()
	w.Header().Set("Retry-After", "7")
	fanout.WriteError(w, http.StatusServiceUnavailable, fanout.ErrClosed)
	if got := w.Header().Get("Retry-After"); got != "7" {
		t.Errorf("got Retry-After %q, want the caller's 7", got)
	}
}

// TestErrorsSayThePrefixOnce: the errors of the hub and its sessions name
// the package once, however deep the operation that failed.
func TestErrorsSayThePrefixOnce(t *testing.T) {
	t.Parallel()
	h := newHub(t, &fanout.HubOptions{MaxPayload: 4})
	ctx := context.Background()
	s := newSession(t, h)
	var errs []error
	_, err := h.Publish(ctx, "a b", []byte("x"))
	errs = append(errs, err)
	_, err = h.Publish(ctx, "a", []byte("12345"))
	errs = append(errs, err)
	errs = append(errs, s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "a."}))
	h.Close()
	_, err = h.Publish(ctx, "a", []byte("x"))
	errs = append(errs, err)
	_, err = h.NewSession(fanout.Principal{})
	errs = append(errs, err)
	errs = append(errs, s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "b"}))
	for i, err := range errs {
		if err == nil {
			t.Errorf("error %d: got nil", i)
			continue
		}
		if n := strings.Count(err.Error(), "fanout:"); n != 1 {
			t.Errorf("%q: says \"fanout:\" %d times, want once", err, n)
		}
		if m := fanout.ErrorMessage(err); strings.Contains(m, "fanout:") {
			t.Errorf("%q: the client reads %q, want no prefix", err, m)
		}
	}
}
