package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
)

// testServer is the example on a loopback HTTP server.
type testServer struct {
	*server
	url string
}

func newTestServer(t *testing.T, cfg config) *testServer {
	t.Helper()
	if cfg.Catalog == nil {
		cfg.Catalog = defaultCatalog()
	}
	s, err := newServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.seed(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := testenv.NewServer(t, s, &testenv.ServerOptions{
		Stop: func() { s.hub.Close(); s.ws.Close() }, // ends the WebSocket and SSE connections
	})
	return &testServer{server: s, url: srv.URL}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (ts *testServer) do(t *testing.T, method, path, body string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, string(b)}
}

func event(sku string, qty, ts int64) string {
	return fmt.Sprintf(`{"ProductId":%q,"NewQuantity":%d,"Timestamp":%d}`, sku, qty, ts)
}

func TestEventValidation(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, config{})
	cases := []struct {
		name string
		body string
		want int
	}{
		{"valid", event("SKU-1", 5, 1700000000000), http.StatusOK},
		{"valid with an unknown field", `{"ProductId":"SKU-2","NewQuantity":0,"Timestamp":1700000000001,"Warehouse":"W1"}`, http.StatusOK},
		{"lower-case names", `{"productId":"SKU-3","newQuantity":1,"timestamp":1700000000001}`, http.StatusOK},
		{"empty body", ``, http.StatusBadRequest},
		{"not JSON", `ProductId=SKU-1`, http.StatusBadRequest},
		{"array", `[]`, http.StatusBadRequest},
		{"null", `null`, http.StatusBadRequest},
		{"trailing data", event("SKU-1", 5, 1700000000002) + `{}`, http.StatusBadRequest},
		{"missing ProductId", `{"NewQuantity":5,"Timestamp":1700000000000}`, http.StatusBadRequest},
		{"empty ProductId", `{"ProductId":"","NewQuantity":5,"Timestamp":1700000000000}`, http.StatusBadRequest},
		{"unknown product", event("SKU-999", 5, 1700000000000), http.StatusBadRequest},
		{"product that is no topic", event("SKU 1", 5, 1700000000000), http.StatusBadRequest},
		{"missing NewQuantity", `{"ProductId":"SKU-1","Timestamp":1700000000000}`, http.StatusBadRequest},
		{"negative NewQuantity", event("SKU-1", -1, 1700000000000), http.StatusBadRequest},
		{"fractional NewQuantity", `{"ProductId":"SKU-1","NewQuantity":1.5,"Timestamp":1700000000000}`, http.StatusBadRequest},
		{"NewQuantity as a string", `{"ProductId":"SKU-1","NewQuantity":"5","Timestamp":1700000000000}`, http.StatusBadRequest},
		{"null NewQuantity", `{"ProductId":"SKU-1","NewQuantity":null,"Timestamp":1700000000000}`, http.StatusBadRequest},
		{"huge NewQuantity", `{"ProductId":"SKU-1","NewQuantity":99999999999999999999,"Timestamp":1700000000000}`, http.StatusBadRequest},
		{"missing Timestamp", `{"ProductId":"SKU-1","NewQuantity":5}`, http.StatusBadRequest},
		{"zero Timestamp", event("SKU-1", 5, 0), http.StatusBadRequest},
		{"Timestamp as a date", `{"ProductId":"SKU-1","NewQuantity":5,"Timestamp":"2024-01-01T00:00:00Z"}`, http.StatusBadRequest},
		{"too large", `{"ProductId":"SKU-1","NewQuantity":5,"Timestamp":1700000000000,"Pad":"` + strings.Repeat("x", maxEventBytes) + `"}`, http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		res := ts.do(t, http.MethodPost, "/events", c.body, nil)
		if res.status != c.want {
			t.Errorf("%s: got %d %s, want %d", c.name, res.status, res.body, c.want)
		}
		if ct := res.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type: got %q, want application/json", c.name, ct)
		}
	}
}

func TestEventAuth(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, config{Token: "s3cret"})
	body := event("SKU-1", 3, 1700000000000)
	cases := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"wrong token", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"basic auth", map[string]string{"Authorization": "Basic czNjcmV0"}, http.StatusUnauthorized},
		{"right token", map[string]string{"Authorization": "Bearer s3cret"}, http.StatusOK},
	}
	for _, c := range cases {
		res := ts.do(t, http.MethodPost, "/events", body, c.header)
		if res.status != c.want {
			t.Errorf("%s: got %d %s, want %d", c.name, res.status, res.body, c.want)
		}
		if c.want == http.StatusUnauthorized && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate: got %q, want Bearer", c.name, res.header.Get("WWW-Authenticate"))
		}
	}
	// Browsers need no token: the page, the client and subscribing.
	for _, path := range []string{"/", "/app.js", "/fanout.js", "/api/products"} {
		if res := ts.do(t, http.MethodGet, path, "", nil); res.status != http.StatusOK {
			t.Errorf("GET %s: got %d, want 200", path, res.status)
		}
	}
	c := dial(t, ts, "")
	c.send(t, `{"id":"1","type":"subscribe","topic":"inventory.SKU-1"}`)
	if f := c.next(t); f["ok"] != true {
		t.Errorf("anonymous subscribe: got %v, want ok", f)
	}
}

// position decodes the position of a successful POST /events.
func position(t *testing.T, res response) fanout.Position {
	t.Helper()
	if res.status != http.StatusOK {
		t.Fatalf("POST /events: got %d %s, want 200", res.status, res.body)
	}
	var b struct {
		Position struct {
			Epoch string
			Seq   uint64
		}
	}
	if err := json.Unmarshal([]byte(res.body), &b); err != nil {
		t.Fatal(err)
	}
	return fanout.Position{Epoch: b.Position.Epoch, Seq: b.Position.Seq}
}

func TestEventOrderAndRetries(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, config{})
	now := time.Now().UnixMilli() + 1000
	p1 := position(t, ts.do(t, http.MethodPost, "/events", event("SKU-4", 9, now), nil))
	if p1.Seq != 2 { // the seed was 1
		t.Errorf("first event: got seq %d, want 2", p1.Seq)
	}
	// The service retries: same event, same position, nothing published.
	if p := position(t, ts.do(t, http.MethodPost, "/events", event("SKU-4", 9, now), nil)); p != p1 {
		t.Errorf("retry: got %v, want %v", p, p1)
	}
	// Older than what was published: refused, so stock never goes back.
	if res := ts.do(t, http.MethodPost, "/events", event("SKU-4", 1, now-1), nil); res.status != http.StatusConflict {
		t.Errorf("stale event: got %d %s, want 409", res.status, res.body)
	}
	// Same millisecond, another quantity: a new change.
	p2 := position(t, ts.do(t, http.MethodPost, "/events", event("SKU-4", 8, now), nil))
	if p2.Seq != 3 {
		t.Errorf("same timestamp, new quantity: got seq %d, want 3", p2.Seq)
	}
	// A retry of the first event now is no longer the latest state: its
	// position is answered from the idempotency window, and the server's
	// record stays at 8.
	if p := position(t, ts.do(t, http.MethodPost, "/events", event("SKU-4", 9, now), nil)); p != p1 {
		t.Errorf("late retry: got %v, want %v", p, p1)
	}
	snap := snapshot(t, ts, "inventory.SKU-4")
	if len(snap) != 1 || snap[0].NewQuantity != 8 {
		t.Errorf("snapshot: got %+v, want quantity 8", snap)
	}
}

// snapshot subscribes with snapshot=true and returns the topic's events.
func snapshot(t *testing.T, ts *testServer, topic string) []stockEvent {
	t.Helper()
	c := dial(t, ts, "")
	c.send(t, fmt.Sprintf(`{"id":"s","type":"subscribe","topic":%q,"snapshot":true}`, topic))
	if f := c.next(t); f["type"] != "reply" || f["ok"] != true {
		t.Fatalf("subscribe %s: got %v, want an ok reply", topic, f)
	}
	f := c.next(t)
	if f["type"] != "snapshot" {
		t.Fatalf("got %v, want a snapshot", f)
	}
	var evs []stockEvent
	for _, it := range f["items"].([]any) {
		b, _ := json.Marshal(it.(map[string]any)["data"])
		var ev stockEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestSeedShowsEveryProduct(t *testing.T) {
	t.Parallel()
	catalog, err := parseStock(defaultCatalog(), "SKU-1=11,SKU-3=0,SKU-5=1000")
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, config{Catalog: catalog})
	want := map[string]int64{"SKU-1": 11, "SKU-2": 8, "SKU-3": 0, "SKU-4": 5, "SKU-5": 1000}
	for sku, q := range want {
		snap := snapshot(t, ts, "inventory."+sku)
		if len(snap) != 1 || snap[0].ProductId != sku || snap[0].NewQuantity != q {
			t.Errorf("%s: got %+v, want one event with quantity %d", sku, snap, q)
		}
	}
	var products []product
	if err := json.Unmarshal([]byte(ts.do(t, http.MethodGet, "/api/products", "", nil).body), &products); err != nil {
		t.Fatal(err)
	}
	if len(products) != 5 || products[0].SKU != "SKU-1" || products[0].Topic != "inventory.SKU-1" || products[0].Name == "" {
		t.Errorf("products: got %+v, want the catalogue with topics", products)
	}
}

func TestLiveUpdateOverWebSocket(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, config{})
	c := dial(t, ts, "")
	c.send(t, `{"id":"a","type":"subscribe","topic":"inventory.SKU-2","snapshot":true}`)
	c.send(t, `{"id":"b","type":"subscribe","topic":"inventory.SKU-3"}`)
	c.send(t, `{"id":"c","type":"subscribe","topic":"payroll.secret"}`)
	c.send(t, `{"id":"d","type":"publish","topic":"inventory.SKU-2","data":{"NewQuantity":1}}`)
	got := map[string]map[string]any{}
	for len(got) < 5 {
		f := c.next(t)
		if f["type"] == "join" { // its own, on inventory topics
			continue
		}
		key := fmt.Sprint(f["type"], f["id"])
		got[key] = f
	}
	if f := got["replya"]; f["ok"] != true {
		t.Errorf("subscribe: got %v, want ok", f)
	}
	if f := got["replyc"]; f["ok"] != false || f["error"].(map[string]any)["code"] != "forbidden" {
		t.Errorf("subscribe to another topic: got %v, want forbidden", f)
	}
	if f := got["replyd"]; f["ok"] != false || f["error"].(map[string]any)["code"] != "forbidden" {
		t.Errorf("publish from a browser: got %v, want forbidden", f)
	}
	position(t, ts.do(t, http.MethodPost, "/events", event("SKU-2", 3, time.Now().UnixMilli()+1000), nil))
	f := c.next(t)
	for f["type"] == "join" {
		f = c.next(t)
	}
	if f["type"] != "msg" || f["topic"] != "inventory.SKU-2" || f["key"] != "SKU-2" || f["seq"] != float64(2) {
		t.Fatalf("got %v, want the event as message 2 of inventory.SKU-2 keyed SKU-2", f)
	}
	if d := f["data"].(map[string]any); d["ProductId"] != "SKU-2" || d["NewQuantity"] != float64(3) {
		t.Errorf("data: got %v, want the event", d)
	}
}

func TestSSEStream(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.url+"/sse?topic=inventory.SKU-5&snapshot=1", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type: got %q, want text/event-stream", ct)
	}
	sc := bufio.NewScanner(res.Body)
	var events []string
	for sc.Scan() && len(events) < 2 {
		if line := sc.Text(); strings.HasPrefix(line, "event: ") {
			events = append(events, strings.TrimPrefix(line, "event: "))
		}
	}
	if strings.Join(events, ",") != "reply,snapshot" {
		t.Errorf("events: got %v, want reply, snapshot", events)
	}
}

func TestParseStock(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		want    map[string]int64
		wantErr bool
	}{
		{"", map[string]int64{"SKU-1": 24, "SKU-3": 0}, false},
		{"SKU-1=3, SKU-3=7", map[string]int64{"SKU-1": 3, "SKU-3": 7}, false},
		{"SKU-1", nil, true},
		{"SKU-1=-1", nil, true},
		{"SKU-1=x", nil, true},
		{"SKU-9=1", nil, true},
		{"SKU-1=2000000000000", nil, true},
	}
	for _, c := range cases {
		got, err := parseStock(defaultCatalog(), c.in)
		if (err != nil) != c.wantErr {
			t.Errorf("%q: got error %v, want error %v", c.in, err, c.wantErr)
			continue
		}
		for _, p := range got {
			if q, ok := c.want[p.SKU]; ok && p.Stock != q {
				t.Errorf("%q: %s: got %d, want %d", c.in, p.SKU, p.Stock, q)
			}
		}
	}
	if d := defaultCatalog(); d[0].Stock != 24 {
		t.Errorf("parseStock changed the default catalogue: got %d, want 24", d[0].Stock)
	}
}

func TestNewServerRejectsBadCatalogs(t *testing.T) {
	t.Parallel()
	cases := map[string][]product{
		"empty":     {},
		"duplicate": {{SKU: "A"}, {SKU: "A"}},
		"bad SKU":   {{SKU: "A B"}},
	}
	for name, cat := range cases {
		if _, err := newServer(config{Catalog: cat}); err == nil {
			t.Errorf("%s: got no error, want one", name)
		}
	}
}

func TestSimulate(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s, err := newServer(config{Catalog: defaultCatalog()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.hub.Close()
		ctx := context.Background()
		if err := s.seed(ctx); err != nil {
			t.Fatal(err)
		}
		sess, err := s.hub.NewSession(fanout.Principal{})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close(fanout.CloseNormal, "")
		for _, p := range s.catalog {
			if err := sess.Subscribe(ctx, fanout.SubscribeRequest{Topic: p.Topic}); err != nil {
				t.Fatal(err)
			}
		}
		simCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.simulate(simCtx, time.Second, rand.New(rand.NewPCG(1, 2)))
		}()
		time.Sleep(3500 * time.Millisecond) // three ticks, in the bubble's fake time
		synctest.Wait()
		stop()
		<-done

		frames, err := sess.Next(ctx, make([]fanout.Frame, 0, 64))
		if err != nil {
			t.Fatal(err)
		}
		var msgs int
		for _, f := range frames {
			if f.Type != fanout.FrameMessage {
				continue
			}
			msgs++
			ev, err := parseEvent(f.Message.Data)
			if err != nil {
				t.Errorf("simulated event %s: %v", f.Message.Data, err)
			}
			if f.Message.Key != ev.ProductId || f.Message.Topic != topicPrefix+ev.ProductId {
				t.Errorf("simulated event %s on %s keyed %q: want its product's topic and key", f.Message.Data, f.Message.Topic, f.Message.Key)
			}
		}
		if msgs != 3 {
			t.Errorf("got %d simulated changes in 3.5 ticks, want 3", msgs)
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(event("SKU-1", 5, 1700000000000)))
	f.Add([]byte(`{"ProductId":"SKU-1","NewQuantity":1.5,"Timestamp":1}`))
	f.Add([]byte(`{"productid":"x","newquantity":0,"timestamp":1,"extra":[1,2]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"ProductId":"SKU-1","NewQuantity":"5","Timestamp":1}{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := parseEvent(b)
		if err != nil {
			return
		}
		if ev.ProductId == "" || ev.NewQuantity < 0 || ev.NewQuantity > maxQuantity || ev.Timestamp <= 0 {
			t.Fatalf("accepted an invalid event %+v from %q", ev, b)
		}
		again, err := parseEvent(ev.payload())
		if err != nil || again != ev {
			t.Fatalf("payload %s: got %+v, %v, want %+v", ev.payload(), again, err, ev)
		}
	})
}

// wsClient is a raw WebSocket client of the protocol.
type wsClient struct {
	conn    *websocket.Conn
	pending [][]byte
}

func dial(t *testing.T, ts *testServer, token string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(ts.url, "http") + "/ws"
	if token != "" {
		u += "?token=" + token
	}
	conn, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &wsClient{conn: conn}
}

func (c *wsClient) send(t *testing.T, cmd string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
}

// next returns the next frame; one WebSocket message may carry several.
func (c *wsClient) next(t *testing.T) map[string]any {
	t.Helper()
	for len(c.pending) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, b, err := c.conn.Read(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(line) > 0 {
				c.pending = append(c.pending, line)
			}
		}
	}
	var f map[string]any
	if err := json.Unmarshal(c.pending[0], &f); err != nil {
		t.Fatal(err)
	}
	c.pending = c.pending[1:]
	return f
}

func TestGenericPublishIsForTheServiceOnly(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, config{Token: "s3cret"})
	body := `{"topic":"inventory.SKU-1","key":"SKU-1","data":{"ProductId":"SKU-1","NewQuantity":77,"Timestamp":1}}`
	cases := []struct {
		name   string
		body   string
		header map[string]string
		want   int
	}{
		{"no token", body, nil, http.StatusForbidden},
		{"wrong token", body, map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"other topic", `{"topic":"payroll","data":1}`, map[string]string{"Authorization": "Bearer s3cret"}, http.StatusForbidden},
		{"service", body, map[string]string{"Authorization": "Bearer s3cret"}, http.StatusOK},
	}
	for _, c := range cases {
		if c.header == nil {
			c.header = map[string]string{}
		}
		c.header["Content-Type"] = "application/json"
		res := ts.do(t, http.MethodPost, "/publish", c.body, c.header)
		if res.status != c.want {
			t.Errorf("%s: got %d %s, want %d", c.name, res.status, res.body, c.want)
		}
	}
	if snap := snapshot(t, ts, "inventory.SKU-1"); len(snap) != 1 || snap[0].NewQuantity != 77 {
		t.Errorf("snapshot after the generic publish: got %+v, want quantity 77", snap)
	}
}

// TestErrorBodies: the API endpoints answer errors, wrong methods included,
// with fanout's one error body.
func TestErrorBodies(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, config{Token: "s3cret"})
	for _, c := range []struct {
		method, path, body string
		header             map[string]string
		status             int
		code               string
	}{
		{http.MethodGet, "/publish", "", nil, http.StatusMethodNotAllowed, "bad_request"},
		{http.MethodGet, "/events", "", nil, http.StatusMethodNotAllowed, "bad_request"},
		{http.MethodPost, "/events", event("SKU-1", 1, 1), nil, http.StatusUnauthorized, "unauthenticated"},
		{http.MethodPost, "/events", "{", map[string]string{"Authorization": "Bearer s3cret"}, http.StatusBadRequest, "bad_request"},
		{http.MethodPost, "/publish", `{"topic":"inventory.SKU-1","data":1}`, map[string]string{"Authorization": "Bearer s3cret"}, http.StatusUnsupportedMediaType, "bad_request"},
	} {
		res := ts.do(t, c.method, c.path, c.body, c.header)
		var b struct {
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		d := json.NewDecoder(strings.NewReader(res.body))
		d.DisallowUnknownFields()
		if err := d.Decode(&b); err != nil || b.Error == nil || b.Error.Message == "" {
			t.Errorf("%s %s: body %q: want {\"error\":{\"code\",\"message\"}} (%v)", c.method, c.path, res.body, err)
			continue
		}
		if res.status != c.status || b.Error.Code != c.code || res.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: got %d %s (%s), want %d %s", c.method, c.path, res.status, b.Error.Code, res.header.Get("Content-Type"), c.status, c.code)
		}
		if res.status == http.StatusMethodNotAllowed && res.header.Get("Allow") != http.MethodPost {
			t.Errorf("%s %s: got Allow %q, want POST", c.method, c.path, res.header.Get("Allow"))
		}
	}
}

// TestViewers: inventory topics keep presence and deliver join and leave,
// so a page shows how many people look at each product: a second session
// on SKU-1 is a join for the first one and a count of 2 at GET
// /api/viewers, and its leave brings the count back to 1.
func TestViewers(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, config{})
	viewers := func(sku string) int {
		t.Helper()
		res := ts.do(t, http.MethodGet, "/api/viewers?sku="+sku, "", nil)
		var b struct {
			SKU     string
			Viewers int
		}
		if err := json.Unmarshal([]byte(res.body), &b); err != nil || res.status != http.StatusOK || b.SKU != sku {
			t.Fatalf("GET /api/viewers?sku=%s: got %d %s (%v)", sku, res.status, res.body, err)
		}
		return b.Viewers
	}
	// frame skips to the next frame of type typ.
	frame := func(c *wsClient, typ string) map[string]any {
		t.Helper()
		for {
			if f := c.next(t); f["type"] == typ {
				return f
			}
		}
	}
	a := dial(t, ts, "")
	a.send(t, `{"id":"a","type":"subscribe","topic":"inventory.SKU-1"}`)
	frame(a, "reply")
	frame(a, "join") // its own
	if n := viewers("SKU-1"); n != 1 {
		t.Fatalf("viewers of SKU-1: got %d, want 1", n)
	}
	b := dial(t, ts, "")
	b.send(t, `{"id":"b","type":"subscribe","topic":"inventory.SKU-1"}`)
	if f := frame(a, "join"); f["topic"] != "inventory.SKU-1" {
		t.Fatalf("got %v, want a join of inventory.SKU-1", f)
	}
	if n := viewers("SKU-1"); n != 2 {
		t.Fatalf("viewers of SKU-1: got %d, want 2", n)
	}
	if n := viewers("SKU-2"); n != 0 {
		t.Fatalf("viewers of SKU-2: got %d, want 0", n)
	}
	// The presence_count command answers the same over WebSocket.
	a.send(t, `{"id":"n","type":"presence_count","topic":"inventory.SKU-1"}`)
	if f := frame(a, "reply"); f["id"] != "n" || f["count"] != float64(2) {
		t.Fatalf("presence_count: got %v, want 2", f)
	}
	b.conn.CloseNow()
	frame(a, "leave")
	if n := viewers("SKU-1"); n != 1 {
		t.Fatalf("viewers of SKU-1 after a leave: got %d, want 1", n)
	}
	if res := ts.do(t, http.MethodGet, "/api/viewers?sku=SKU-99", "", nil); res.status != http.StatusBadRequest {
		t.Fatalf("unknown product: got %d, want 400", res.status)
	}
}
