package fanout_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gofanout/fanout"
)

// switchableBackplane is the in-memory backplane with a switch that makes
// Publish fail as a backplane that lost its server does.
type switchableBackplane struct {
	fanout.Backplane
	down atomic.Bool
}

func (b *switchableBackplane) Publish(ctx context.Context, m *fanout.Message, key string) (fanout.Position, error) {
	if b.down.Load() {
		return fanout.Position{}, fmt.Errorf("test backplane: %w", fanout.ErrUnavailable)
	}
	return b.Backplane.Publish(ctx, m, key)
}

// publishServer serves NewPublishHandler for a hub whose services
// authenticate with the token "svc" and may publish to any topic but
// "locked".
func publishServer(t *testing.T, ho *fanout.HubOptions, po *fanout.PublishHandlerOptions) (*fanout.Hub, *httptest.Server) {
	t.Helper()
	var o fanout.HubOptions
	if ho != nil {
		o = *ho
	}
	o.Authenticate = func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
		if c.Transport != "http" || c.Token != "svc" {
			return fanout.Principal{}, errors.New("unknown service")
		}
		return fanout.Principal{ID: "inventory"}, nil
	}
	o.Authorize = func(_ context.Context, p fanout.Principal, topic string, a fanout.Action) error {
		if a == fanout.ActionPublish && (p.ID != "inventory" || topic == "locked") {
			return errors.New("not for you")
		}
		return nil
	}
	h := newHub(t, &o)
	srv := httptest.NewServer(fanout.NewPublishHandler(h, po))
	t.Cleanup(srv.Close)
	return h, srv
}

type publishAnswer struct {
	Topic    string `json:"topic"`
	Position *struct {
		Epoch string `json:"epoch"`
		Seq   uint64 `json:"seq"`
	} `json:"position"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func post(t *testing.T, srv *httptest.Server, method, token, body string) (int, publishAnswer, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("got Content-Type %q, want application/json (body %s)", ct, b)
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	var a publishAnswer
	if err := d.Decode(&a); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	return resp.StatusCode, a, resp.Header
}

func TestPublishHandlerErrors(t *testing.T) {
	t.Parallel()
	bp := &switchableBackplane{Backplane: fanout.NewMemoryBroker(nil).Node()}
	h, srv := publishServer(t, &fanout.HubOptions{MaxPayload: 100, Backplane: bp},
		&fanout.PublishHandlerOptions{MaxBodyBytes: 1024})
	for _, tc := range []struct {
		name, method, token, body string
		status                    int
		code                      string
	}{
		{"get", "GET", "svc", "", 405, "bad_request"},
		{"put", "PUT", "svc", `{"topic":"a","data":1}`, 405, "bad_request"},
		{"no token", "POST", "", `{"topic":"a","data":1}`, 401, "unauthenticated"},
		{"wrong token", "POST", "nope", `{"topic":"a","data":1}`, 401, "unauthenticated"},
		{"forbidden topic", "POST", "svc", `{"topic":"locked","data":1}`, 403, "forbidden"},
		{"empty body", "POST", "svc", ``, 400, "bad_request"},
		{"not json", "POST", "svc", `topic=a`, 400, "bad_request"},
		{"unknown field", "POST", "svc", `{"topic":"a","data":1,"ttl":5}`, 400, "bad_request"},
		{"trailing data", "POST", "svc", `{"topic":"a","data":1}}`, 400, "bad_request"},
		{"two bodies", "POST", "svc", `{"topic":"a","data":1} {"topic":"a","data":1}`, 400, "bad_request"},
		{"no payload", "POST", "svc", `{"topic":"a"}`, 400, "bad_request"},
		{"data and data64", "POST", "svc", `{"topic":"a","data":1,"data64":"AA=="}`, 400, "bad_request"},
		{"bad base64", "POST", "svc", `{"topic":"a","data64":"A"}`, 400, "bad_request"},
		{"no topic", "POST", "svc", `{"data":1}`, 400, "invalid_topic"},
		{"bad topic", "POST", "svc", `{"topic":"a b","data":1}`, 400, "invalid_topic"},
		{"long idempotency key", "POST", "svc", `{"topic":"a","data":1,"idempotency_key":"` + strings.Repeat("k", 257) + `"}`, 400, "bad_request"},
		{"body too large", "POST", "svc", `{"topic":"a","data":"` + strings.Repeat("x", 1100) + `"}`, 413, "too_large"},
		{"payload too large", "POST", "svc", `{"topic":"a","data":"` + strings.Repeat("x", 200) + `"}`, 413, "too_large"},
	} {
		status, a, hdr := post(t, srv, tc.method, tc.token, tc.body)
		if status != tc.status || a.Error == nil || a.Error.Code != tc.code || a.Error.Message == "" {
			t.Errorf("%s: got %d %+v, want %d with code %s", tc.name, status, a.Error, tc.status, tc.code)
		}
		if status == 405 && hdr.Get("Allow") != "POST" {
			t.Errorf("%s: got Allow %q, want POST", tc.name, hdr.Get("Allow"))
		}
		if status == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: got no WWW-Authenticate header", tc.name)
		}
	}

	// Nothing of the above was published.
	if status, a, _ := post(t, srv, "POST", "svc", `{"topic":"a","data":1}`); status != 200 || a.Position.Seq != 1 {
		t.Fatalf("got %d %+v, want 200 at seq 1", status, a)
	}

	bp.down.Store(true)
	if status, a, _ := post(t, srv, "POST", "svc", `{"topic":"a","data":1}`); status != 503 || a.Error.Code != "unavailable" {
		t.Fatalf("backplane down: got %d %+v, want 503 unavailable", status, a.Error)
	}
	bp.down.Store(false)

	h.Close()
	if status, a, _ := post(t, srv, "POST", "svc", `{"topic":"a","data":1}`); status != 503 || a.Error.Code != "closed" {
		t.Fatalf("hub closed: got %d %+v, want 503 closed", status, a.Error)
	}
}

func TestPublishHandlerPublishes(t *testing.T) {
	t.Parallel()
	h, srv := publishServer(t, nil, nil)
	s := newSession(t, h)
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "stock:42"}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	next(t, s, &buf) // the reply

	status, a, _ := post(t, srv, "POST", "svc", `{"topic":"stock:42","data":{"qty": 3},"key":"sku-42"}`)
	if status != 200 || a.Error != nil || a.Topic != "stock:42" || a.Position == nil || a.Position.Seq != 1 || a.Position.Epoch == "" {
		t.Fatalf("got %d %+v, want 200 with topic and position seq 1", status, a)
	}
	f := next(t, s, &buf)
	if f.Message == nil || string(f.Message.Data) != `{"qty":3}` || f.Message.Key != "sku-42" || f.Message.Position.Epoch != a.Position.Epoch {
		t.Fatalf("got %+v, want the published message", f.Message)
	}

	raw := []byte{0, 0xff, '\n'}
	status, a, _ = post(t, srv, "POST", "svc", `{"topic":"stock:42","data64":"`+base64.StdEncoding.EncodeToString(raw)+`"}`)
	if status != 200 || a.Position.Seq != 2 {
		t.Fatalf("got %d %+v, want 200 at seq 2", status, a)
	}
	if f := next(t, s, &buf); f.Message == nil || string(f.Message.Data) != string(raw) {
		t.Fatalf("got %+v, want data %v", f.Message, raw)
	}

	// The query token works too, for services that cannot set headers.
	resp, err := srv.Client().Post(srv.URL+"?token=svc", "application/json", strings.NewReader(`{"topic":"x","data":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("query token: got %d, want 200", resp.StatusCode)
	}
}

func TestPublishHandlerIdempotentRetry(t *testing.T) {
	t.Parallel()
	h, srv := publishServer(t, nil, nil)
	body := `{"topic":"saga:9","data":{"step":"hotel","status":"failed"},"idempotency_key":"evt-981"}`
	s1, a1, _ := post(t, srv, "POST", "svc", body)
	s2, a2, _ := post(t, srv, "POST", "svc", body)
	if s1 != 200 || s2 != 200 {
		t.Fatalf("got statuses %d and %d, want 200 twice", s1, s2)
	}
	if *a1.Position != *a2.Position || a1.Position.Seq != 1 {
		t.Fatalf("got positions %+v and %+v, want the same, seq 1", *a1.Position, *a2.Position)
	}
	// Another key publishes anew.
	if _, a3, _ := post(t, srv, "POST", "svc", `{"topic":"saga:9","data":2,"idempotency_key":"evt-982"}`); a3.Position.Seq != 2 {
		t.Fatalf("got %+v, want seq 2", a3.Position)
	}
	// History holds one message for the retried publish.
	s := newSession(t, h)
	since := fanout.Position{Epoch: a1.Position.Epoch}
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "saga:9", Since: &since}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	if f := next(t, s, &buf); f.Reply == nil || f.Reply.Position.Seq != 2 || !*f.Reply.Recovered {
		t.Fatalf("got %+v, want a recovered reply at seq 2", f.Reply)
	}
	for seq, data := range []string{`{"step":"hotel","status":"failed"}`, `2`} {
		f := next(t, s, &buf)
		if f.Message == nil || f.Message.Position.Seq != uint64(seq+1) || string(f.Message.Data) != data {
			t.Fatalf("got %+v, want seq %d with data %s", f.Message, seq+1, data)
		}
	}
}

func TestPublishHandlerDefaultAuthorizer(t *testing.T) {
	t.Parallel()
	// Without an authorizer, publishing from outside the process is denied.
	h := newHub(t, nil)
	srv := httptest.NewServer(fanout.NewPublishHandler(h, nil))
	t.Cleanup(srv.Close)
	if status, a, _ := post(t, srv, "POST", "", `{"topic":"a","data":1}`); status != 403 || a.Error.Code != "forbidden" {
		t.Fatalf("got %d %+v, want 403 forbidden", status, a.Error)
	}
}
