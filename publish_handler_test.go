package fanout_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
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

// request sends a request to srv with the given headers and returns the
// status, the decoded answer and the response headers.
func request(t *testing.T, srv *httptest.Server, method, path, body string, hdr http.Header) (int, publishAnswer, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
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
		t.Fatalf("%s %s: got %d with Content-Type %q, want application/json (body %q)", method, path, resp.StatusCode, ct, b)
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	var a publishAnswer
	if err := d.Decode(&a); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	if a.Error != nil {
		for _, leak := range []string{"fanout:", "Go struct", "publishRequest"} {
			if strings.Contains(a.Error.Message, leak) {
				t.Errorf("message %q: want no %q in what a client reads", a.Error.Message, leak)
			}
		}
	}
	return resp.StatusCode, a, resp.Header
}

func TestPublishHandlerContentType(t *testing.T) {
	t.Parallel()
	_, srv := publishServer(t, nil, nil)
	body := `{"topic":"a","data":1}`
	for _, tc := range []struct {
		ct     string // "-": no Content-Type header
		status int
	}{
		{"application/json", 200},
		{"application/json; charset=utf-8", 200},
		{"Application/JSON; Charset=UTF-8", 200},
		{"-", 415},
		{"", 415},
		{"text/plain", 415},
		{"text/plain; charset=utf-8", 415},
		{"application/x-www-form-urlencoded", 415},
		{"multipart/form-data; boundary=x", 415},
		{"application/json; charset=latin1", 415},
		{"application/json; boundary=x", 415},
		{"application/jsonx", 415},
	} {
		h := http.Header{"Authorization": {"Bearer svc"}}
		if tc.ct != "-" {
			h["Content-Type"] = []string{tc.ct}
		}
		status, a, _ := request(t, srv, "POST", "", body, h)
		if status != tc.status {
			t.Errorf("Content-Type %q: got %d %+v, want %d", tc.ct, status, a.Error, tc.status)
			continue
		}
		if status == 415 && a.Error.Code != "bad_request" {
			t.Errorf("Content-Type %q: got code %q, want bad_request", tc.ct, a.Error.Code)
		}
	}
}

// TestPublishHandlerCrossOriginCookie refuses what a page of another site
// can make a browser send: a cookie-authenticated publish.
func TestPublishHandlerCrossOriginCookie(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	newServer := func(po *fanout.PublishHandlerOptions) *httptest.Server {
		h := newHub(t, &fanout.HubOptions{
			Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
				calls.Add(1)
				if c.Token != "svc" {
					return fanout.Principal{}, errors.New("unknown service")
				}
				return fanout.Principal{ID: "inventory"}, nil
			},
			Authorize: func(context.Context, fanout.Principal, string, fanout.Action) error { return nil },
		})
		srv := httptest.NewServer(fanout.NewPublishHandler(h, po))
		t.Cleanup(srv.Close)
		return srv
	}
	srv := newServer(nil)
	self := srv.URL // the request's own origin
	body := `{"topic":"t","data":"="}`
	cookie := "access_token=svc"

	// The request of the report: a cross-site form with enctype text/plain.
	status, a, _ := request(t, srv, "POST", "", body, http.Header{
		"Origin": {"https://evil.example"}, "Content-Type": {"text/plain"}, "Cookie": {cookie},
	})
	if status != 415 {
		t.Fatalf("cross-site text/plain form: got %d %+v, want 415", status, a.Error)
	}
	for _, tc := range []struct {
		name   string
		hdr    http.Header
		status int
	}{
		{"cookie from another origin", http.Header{"Origin": {"https://evil.example"}, "Cookie": {cookie}}, 403},
		{"cookie from null origin", http.Header{"Origin": {"null"}, "Cookie": {cookie}}, 403},
		{"cookie from another port", http.Header{"Origin": {self + "0"}, "Cookie": {cookie}}, 403},
		{"cookie, cross-site fetch", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Cookie": {cookie}}, 403},
		{"cookie, same origin", http.Header{"Origin": {self}, "Cookie": {cookie}}, 200},
		{"cookie, same-origin fetch", http.Header{"Origin": {self}, "Sec-Fetch-Site": {"same-origin"}, "Cookie": {cookie}}, 200},
		{"cookie, no origin (a service)", http.Header{"Cookie": {cookie}}, 200},
		{"bearer header from another origin", http.Header{"Origin": {"https://evil.example"}, "Authorization": {"Bearer svc"}, "Cookie": {cookie}}, 200},
	} {
		calls.Store(0)
		tc.hdr["Content-Type"] = []string{"application/json"}
		status, a, _ := request(t, srv, "POST", "", body, tc.hdr)
		if status != tc.status {
			t.Errorf("%s: got %d %+v, want %d", tc.name, status, a.Error, tc.status)
			continue
		}
		if status == 403 {
			if a.Error.Code != "forbidden" {
				t.Errorf("%s: got code %q, want forbidden", tc.name, a.Error.Code)
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("%s: the authenticator ran %d times, want 0", tc.name, n)
			}
		}
	}

	// Listed origins may use the cookie.
	allowed := newServer(&fanout.PublishHandlerOptions{CookieOrigins: []string{"https://admin.example"}})
	for origin, want := range map[string]int{"https://admin.example": 200, "https://ADMIN.example": 200, "http://admin.example": 403, "https://evil.example": 403} {
		status, a, _ := request(t, allowed, "POST", "", body, http.Header{
			"Origin": {origin}, "Sec-Fetch-Site": {"cross-site"}, "Content-Type": {"application/json"}, "Cookie": {cookie},
		})
		if status != want {
			t.Errorf("CookieOrigins, origin %s: got %d %+v, want %d", origin, status, a.Error, want)
		}
	}
}

// TestPublishHandlerReadmeSetup serves the handler as the README mounts it:
// whatever the method, the answer is the documented JSON.
func TestPublishHandlerReadmeSetup(t *testing.T) {
	t.Parallel()
	hub := newHub(t, &fanout.HubOptions{
		Authorize: func(context.Context, fanout.Principal, string, fanout.Action) error { return nil },
	})
	mux := http.NewServeMux()
	mux.Handle("/publish", fanout.NewPublishHandler(hub, nil)) // the README's line
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, m := range []string{"GET", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		status, a, hdr := request(t, srv, m, "/publish", "", nil)
		if status != 405 || a.Error == nil || a.Error.Code != "bad_request" || hdr.Get("Allow") != "POST" {
			t.Errorf("%s: got %d %+v with Allow %q, want 405 bad_request with Allow POST", m, status, a.Error, hdr.Get("Allow"))
		}
	}
	status, a, _ := request(t, srv, "POST", "/publish", `{"topic":"a","data":1}`, http.Header{"Content-Type": {"application/json"}})
	if status != 200 || a.Position == nil || a.Position.Seq != 1 {
		t.Fatalf("POST: got %d %+v, want 200 at seq 1", status, a)
	}
}

func TestPublishHandlerBearerCaseInsensitive(t *testing.T) {
	t.Parallel()
	_, srv := publishServer(t, nil, nil)
	for _, a := range []string{"Bearer svc", "bearer svc", "BEARER svc", "bEArer svc"} {
		status, ans, _ := request(t, srv, "POST", "", `{"topic":"a","data":1}`, http.Header{
			"Authorization": {a}, "Content-Type": {"application/json"},
		})
		if status != 200 {
			t.Errorf("Authorization %q: got %d %+v, want 200", a, status, ans.Error)
		}
	}
}

// TestPublishHandlerMessages checks what a client reads: its own input
// named, once, without the library's prefix or Go internals.
func TestPublishHandlerMessages(t *testing.T) {
	t.Parallel()
	_, srv := publishServer(t, &fanout.HubOptions{MaxPayload: 10}, nil)
	for _, tc := range []struct {
		body, want string
	}{
		{`{"topic":"a b","data":1}`, `invalid topic: "a b" has a forbidden character at byte 1`},
		{`{"topic":"a","data":"0123456789"}`, `publish "a": too large: 12 bytes, limit 10`},
		{`{"topic":"locked","data":1}`, `forbidden: publish "locked": not for you`},
	} {
		_, a, _ := request(t, srv, "POST", "", tc.body, http.Header{
			"Authorization": {"Bearer svc"}, "Content-Type": {"application/json"},
		})
		if a.Error == nil || a.Error.Message != tc.want {
			t.Errorf("%s: got %+v, want message %q", tc.body, a.Error, tc.want)
		}
	}
	_, a, _ := request(t, srv, "POST", "", `{"topic":"a","data":1}`, http.Header{
		"Authorization": {"Bearer nope"}, "Content-Type": {"application/json"},
	})
	if a.Error == nil || a.Error.Message != "unauthenticated: unknown service" {
		t.Errorf("wrong token: got %+v, want message %q", a.Error, "unauthenticated: unknown service")
	}
}

// TestPublishHandlerTypeErrorMessage sends a field of the wrong type: the
// message names the field as the client wrote it, and says nothing of Go
// (request checks that).
func TestPublishHandlerTypeErrorMessage(t *testing.T) {
	t.Parallel()
	_, srv := publishServer(t, nil, nil)
	_, a, _ := request(t, srv, "POST", "", `{"topic":1,"data":1}`, http.Header{
		"Authorization": {"Bearer svc"}, "Content-Type": {"application/json"},
	})
	if a.Error == nil || a.Error.Code != "bad_request" || !strings.Contains(a.Error.Message, "topic") {
		t.Errorf("topic of the wrong type: got %+v, want bad_request naming topic", a.Error)
	}
}

// FuzzPublishHandlerHeaders sends any Content-Type, Origin, Sec-Fetch-Site
// and credentials: the handler answers one of its documented statuses with
// the JSON body, publishes only an application/json body, and never takes
// the cookie from another origin.
func FuzzPublishHandlerHeaders(f *testing.F) {
	f.Add("application/json", "", "", "", "access_token=svc")
	f.Add("application/json; charset=utf-8", "https://evil.example", "", "", "access_token=svc")
	f.Add("text/plain", "https://evil.example", "cross-site", "", "access_token=svc")
	f.Add("application/json", "http://example.com", "same-origin", "Bearer svc", "")
	f.Add("Application/JSON; charset=\"UTF-8\"", "null", "cross-site", "bearer svc", "access_token=svc")
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Token != "svc" {
				return fanout.Principal{}, errors.New("unknown service")
			}
			return fanout.Principal{ID: "svc"}, nil
		},
		Authorize: func(context.Context, fanout.Principal, string, fanout.Action) error { return nil },
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { hub.Close() })
	h := fanout.NewPublishHandler(hub, nil)
	f.Fuzz(func(t *testing.T, ct, origin, fetchSite, authz, cookie string) {
		r := httptest.NewRequest("POST", "http://example.com/publish", strings.NewReader(`{"topic":"f","data":1}`))
		for k, v := range map[string]string{"Content-Type": ct, "Origin": origin, "Sec-Fetch-Site": fetchSite, "Authorization": authz, "Cookie": cookie} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("got Content-Type %q, want application/json", w.Header().Get("Content-Type"))
		}
		switch w.Code {
		case 200:
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/json" {
				t.Fatalf("Content-Type %q: published, want 415", ct)
			}
			if fanout.CredentialsFromRequest(r, "http").Token == "svc" && !strings.HasPrefix(strings.ToLower(authz), "bearer ") &&
				(fetchSite == "cross-site" || origin != "" && !sameHost(origin, "example.com")) {
				t.Fatalf("origin %q, Sec-Fetch-Site %q: published with the cookie's credentials, want 403", origin, fetchSite)
			}
		case 401, 403, 415:
		default:
			t.Fatalf("got status %d (%s)", w.Code, w.Body)
		}
	})
}

// sameHost reports whether origin names host, as a browser's Origin
// header of a page of that host does.
func sameHost(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}
