package sse_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
)

// errorAnswer reads the one error body, strictly, and checks that its
// message speaks to the client.
func errorAnswer(t *testing.T, resp *http.Response) (code, message string) {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d: got Content-Type %q, want application/json", resp.StatusCode, ct)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := d.Decode(&body); err != nil || body.Error == nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("body %s: want {\"error\":{\"code\",\"message\"}} (%v)", b, err)
	}
	if strings.Contains(body.Error.Message, "fanout:") {
		t.Errorf("message %q: want no package prefix", body.Error.Message)
	}
	return body.Error.Code, body.Error.Message
}

// TestErrorBodies answers every refused stream with the one error body.
func TestErrorBodies(t *testing.T) {
	t.Parallel()
	hub := newHub(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Token != "tok" {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "u"}, nil
		},
		Authorize: func(_ context.Context, _ fanout.Principal, tp string, _ fanout.Action) error {
			if tp == "secret" {
				return errors.New("no")
			}
			return nil
		},
	})
	tr := newTransport(t, sse.New(hub, &sse.Options{Retry: 3 * time.Second}), false)
	ctx := testContext(t)
	for _, tc := range []struct {
		name, method, query string
		status              int
		code, message       string
	}{
		{"post", "POST", "?topic=a&token=tok", 405, "bad_request", "bad request: method POST, use GET"},
		{"no topic", "GET", "?token=tok", 400, "bad_request", "bad request: no topic parameter"},
		{"bad topic", "GET", "?topic=a.&token=tok", 400, "invalid_topic", `invalid topic: "a." starts or ends with a dot`},
		{"bad token", "GET", "?topic=a&token=nope", 401, "unauthenticated", "unauthenticated: bad token"},
		{"forbidden topic", "GET", "?topic=secret&token=tok", 403, "forbidden", `forbidden: subscribe "secret": no`},
	} {
		req, err := http.NewRequestWithContext(ctx, tc.method, tr.url+tc.query, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		code, msg := errorAnswer(t, resp)
		if resp.StatusCode != tc.status || code != tc.code || msg != tc.message {
			t.Errorf("%s: got %d %s %q, want %d %s %q", tc.name, resp.StatusCode, code, msg, tc.status, tc.code, tc.message)
		}
		if resp.StatusCode == 405 && resp.Header.Get("Allow") != "GET" {
			t.Errorf("%s: got Allow %q, want GET", tc.name, resp.Header.Get("Allow"))
		}
	}
	hub.Close()
	resp, err := tr.open(ctx, tr.url+"?topic=a&token=tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := errorAnswer(t, resp); resp.StatusCode != 503 || code != "closed" || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("closed hub: got %d %s with Retry-After %q, want 503 closed with the stream's retry, 3", resp.StatusCode, code, resp.Header.Get("Retry-After"))
	}
}

func TestBearerCaseInsensitive(t *testing.T) {
	t.Parallel()
	hub := newHub(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Token != "tok" {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "u"}, nil
		},
	})
	tr := newTransport(t, sse.New(hub, nil), false)
	ctx := testContext(t)
	for _, a := range []string{"Bearer tok", "bearer tok", "BEARER tok", "beaRER tok"} {
		resp := tr.get(t, ctx, tr.url+"?topic=a", http.Header{"Authorization": {a}})
		resp.Body.Close()
	}
}
