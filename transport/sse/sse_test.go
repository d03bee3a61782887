package sse_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
	"github.com/gofanout/fanout/transport/transporttest"
)

func newHub(t testing.TB, o *fanout.HubOptions) *fanout.Hub {
	t.Helper()
	h, err := fanout.NewHub(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// get opens a stream and fails the test unless it starts.
func (tr *transport) get(t testing.TB, ctx context.Context, rawURL string, header http.Header) *http.Response {
	t.Helper()
	resp, err := tr.open(ctx, rawURL, header)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %v, want 200", rawURL, refusal(resp))
	}
	return resp
}

func parse(t testing.TB, ev event) transporttest.Event {
	t.Helper()
	e, err := transporttest.ParseJSON([]byte(ev.Data))
	if err != nil {
		t.Fatal(err)
	}
	if e.Type.String() != ev.Name {
		t.Fatalf("got a %s frame in a %q event", e.Type, ev.Name)
	}
	return e
}

func nextEvent(t testing.TB, er *eventReader) (event, transporttest.Event) {
	t.Helper()
	ev, err := er.next()
	if err != nil {
		t.Fatalf("next event: %v", err)
	}
	return ev, parse(t, ev)
}

func publish(t testing.TB, h *fanout.Hub, topic, data string, opts ...fanout.PublishOption) fanout.Position {
	t.Helper()
	p, err := h.Publish(context.Background(), topic, []byte(data), opts...)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return p
}

func TestStreamFormat(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			t.Parallel()
			hub := newHub(t, nil)
			tr := newTransport(t, sse.New(hub, &sse.Options{Retry: 5 * time.Second}), h2)
			ctx := testContext(t)
			topics := []string{"fmt.b", "fmt.a"}
			pa := publish(t, hub, "fmt.a", `"before"`)
			resp := tr.get(t, ctx, streamURL(tr.url, topics, nil), nil)
			if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
				t.Fatalf("got HTTP/%d, want HTTP/%d", resp.ProtoMajor, want)
			}
			for k, want := range map[string]string{
				"Content-Type":      "text/event-stream",
				"Cache-Control":     "no-cache",
				"X-Accel-Buffering": "no",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("header %s: got %q, want %q", k, got, want)
				}
			}
			if got, want := resp.Header.Get("Connection"), map[bool]string{false: "keep-alive", true: ""}[h2]; got != want {
				t.Errorf("header Connection: got %q, want %q", got, want)
			}
			if got := bodyOf(t, resp.Body, len("retry: 5000\n\n")); got != "retry: 5000\n\n" {
				t.Fatalf("stream starts with %q, want the retry field", got)
			}
			er := newEventReader(resp.Body, "")
			// One reply per topic, in the order of the query, each with
			// the cursor so far.
			for i, tp := range topics {
				ev, r := nextEvent(t, er)
				if r.Type != transporttest.EventReply || r.Topic != tp || r.Error != "" || r.Recovered != nil {
					t.Fatalf("got %+v, want an ok reply for %s", r, tp)
				}
				cur, err := sse.DecodeCursor(ev.ID, topics)
				if err != nil {
					t.Fatalf("reply id %q: %v", ev.ID, err)
				}
				if len(cur) != i+1 || cur[tp] != r.Position {
					t.Fatalf("reply %d: got cursor %v, want %s at %v and %d topics", i, cur, tp, r.Position, i+1)
				}
			}
			publish(t, hub, "fmt.b", `{"x":1}`)
			pa2 := publish(t, hub, "fmt.a", "binary\x00")
			ev, m := nextEvent(t, er)
			if m.Type != transporttest.EventMessage || m.Topic != "fmt.b" || string(m.Data) != `{"x":1}` {
				t.Fatalf("got %+v, want fmt.b #1", m)
			}
			ev, m = nextEvent(t, er)
			if m.Topic != "fmt.a" || m.Position != pa2 || string(m.Data) != "binary\x00" {
				t.Fatalf("got %+v, want fmt.a at %v", m, pa2)
			}
			cur, err := sse.DecodeCursor(ev.ID, []string{"fmt.a", "fmt.b"})
			if err != nil {
				t.Fatal(err)
			}
			if cur["fmt.a"] != pa2 || cur["fmt.b"].Seq != 1 || pa2.Seq != pa.Seq+1 {
				t.Fatalf("got cursor %v, want fmt.a at %v and fmt.b at 1", cur, pa2)
			}
		})
	}
}

// TestResumeAcrossDrops reads streams as a browser does, cuts the connection
// at random byte offsets (between events and in the middle of them) while
// publishing goes on, reconnects with the last event id, and checks that
// every topic's messages arrive exactly once, in order.
func TestResumeAcrossDrops(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			t.Parallel()
			testResumeAcrossDrops(t, h2)
		})
	}
}

// cutReader returns io.EOF once limit bytes were read, when limit >= 0.
type cutReader struct {
	r     io.Reader
	limit int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.limit == 0 {
		return 0, io.EOF
	}
	if c.limit > 0 && len(p) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.r.Read(p)
	if c.limit > 0 {
		c.limit -= n
	}
	return n, err
}

func testResumeAcrossDrops(t *testing.T, h2 bool) {
	hub := newHub(t, nil)
	tr := newTransport(t, sse.New(hub, nil), h2)
	ctx := testContext(t)
	topics := []string{"drop.a", "drop.b", "drop.c"}
	const total = 1200
	// The publisher runs at most ahead messages ahead of the reader, so
	// that what is missed while disconnected stays within history.
	const ahead = 300
	credits := make(chan struct{}, ahead)
	for range ahead {
		credits <- struct{}{}
	}
	start, stop := make(chan struct{}), make(chan struct{})
	published := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(7, 8))
		select {
		case <-start: // the first stream has subscribed
		case <-stop:
			published <- nil
			return
		}
		for range total {
			select {
			case <-credits:
			case <-stop:
				published <- nil
				return
			}
			tp := topics[rng.IntN(len(topics))]
			if _, err := hub.Publish(ctx, tp, []byte(`{"v":"payload"}`)); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	t.Cleanup(func() {
		close(stop)
		<-published
	})

	next := map[string]uint64{}
	for _, tp := range topics {
		next[tp] = 1
	}
	rng := rand.New(rand.NewPCG(1, 2))
	received, lastID := 0, ""
	var conns, midEvent, clean int
	for conns = 0; received < total; conns++ {
		h := http.Header{}
		if lastID != "" {
			h.Set("Last-Event-ID", lastID)
		}
		resp := tr.get(t, ctx, streamURL(tr.url, topics, nil), h)
		if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
			t.Fatalf("got HTTP/%d, want HTTP/%d", resp.ProtoMajor, want)
		}
		// Cut at a random byte, or cleanly after a random number of events.
		cut := &cutReader{r: resp.Body, limit: -1}
		cutAt, afterEvents := 1+rng.IntN(6000), -1
		if rng.IntN(3) == 0 {
			afterEvents = 1 + rng.IntN(40)
		}
		if conns > 0 && afterEvents < 0 {
			cut.limit = cutAt
		}
		er := newEventReader(cut, lastID)
		replies, events := 0, 0
		for received < total && events != afterEvents {
			ev, err := er.next()
			if err != nil {
				if err != io.EOF || cut.limit != 0 {
					t.Fatalf("connection %d: %v", conns, err)
				}
				if er.cut {
					midEvent++
				}
				break
			}
			events++
			e := parse(t, ev)
			switch e.Type {
			case transporttest.EventReply:
				replies++
				// A reconnection resumes every topic: the first stream
				// made an id before any cut.
				if conns > 0 && (e.Recovered == nil || !*e.Recovered) {
					t.Fatalf("connection %d: got reply %+v, want recovered=true", conns, e)
				}
				if conns == 0 && replies == len(topics) {
					if afterEvents < 0 {
						cut.limit = cutAt
					}
					close(start)
				}
			case transporttest.EventMessage:
				if e.Position.Seq != next[e.Topic] {
					t.Fatalf("connection %d: got %s #%d, want #%d", conns, e.Topic, e.Position.Seq, next[e.Topic])
				}
				next[e.Topic]++
				received++
				credits <- struct{}{}
				// The id holds every topic's position.
				cur, err := sse.DecodeCursor(ev.ID, topics)
				if err != nil {
					t.Fatalf("id %q: %v", ev.ID, err)
				}
				for _, tp := range topics {
					if got, want := cur[tp].Seq, next[tp]-1; got != want || (tp == e.Topic && cur[tp] != e.Position) {
						t.Fatalf("id after %s #%d: got %s at %v, want seq %d", e.Topic, e.Position.Seq, tp, cur[tp], want)
					}
				}
			default:
				t.Fatalf("connection %d: got %+v", conns, e)
			}
		}
		if events == afterEvents {
			clean++
		}
		lastID = er.lastID
		resp.Body.Close()
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	published <- nil
	// Nothing more is pending: after resuming, the next message of each
	// topic is a new one.
	resp := tr.get(t, ctx, streamURL(tr.url, topics, nil), http.Header{"Last-Event-Id": {lastID}})
	er := newEventReader(resp.Body, lastID)
	for range topics {
		if _, r := nextEvent(t, er); r.Type != transporttest.EventReply || r.Recovered == nil || !*r.Recovered {
			t.Fatalf("got %+v, want recovered reply", r)
		}
	}
	for _, tp := range topics {
		publish(t, hub, tp, `"fence"`)
		if _, m := nextEvent(t, er); m.Topic != tp || m.Position.Seq != next[tp] || string(m.Data) != `"fence"` {
			t.Fatalf("got %+v, want the fence %s #%d", m, tp, next[tp])
		}
	}
	t.Logf("%d messages over %d connections: %d cut in the middle of an event, %d between events", total, conns, midEvent, clean)
	if midEvent == 0 || clean == 0 {
		t.Errorf("got %d cuts in the middle of an event and %d between events, want some of each", midEvent, clean)
	}
}

// TestSnapshotStreamResume: with snapshot=1, a reconnection after the
// snapshot resumes (no second snapshot); a reconnection after the reply
// but before the snapshot starts afresh, with the snapshot.
func TestSnapshotStreamResume(t *testing.T) {
	t.Parallel()
	hub := newHub(t, nil)
	tr := newTransport(t, sse.New(hub, nil), false)
	ctx := testContext(t)
	tp := "stock.42"
	publish(t, hub, tp, `{"qty":5}`, fanout.WithKey("42"))
	last := publish(t, hub, tp, `{"qty":4}`, fanout.WithKey("42"))
	u := streamURL(tr.url, []string{tp}, url.Values{"snapshot": {"1"}})

	resp := tr.get(t, ctx, u, nil)
	er := newEventReader(resp.Body, "")
	replyEv, r := nextEvent(t, er)
	if r.Type != transporttest.EventReply || r.Position != last {
		t.Fatalf("got %+v, want reply at %v", r, last)
	}
	if cur, err := sse.DecodeCursor(replyEv.ID, []string{tp}); err != nil || len(cur) != 0 {
		t.Fatalf("reply id: got %v, %v; want no position before the snapshot", cur, err)
	}
	snapEv, s := nextEvent(t, er)
	if s.Type != transporttest.EventSnapshot || s.Position != last || len(s.Items) != 1 || string(s.Items[0].Data) != `{"qty":4}` {
		t.Fatalf("got %+v, want the snapshot at %v", s, last)
	}
	if cur, err := sse.DecodeCursor(snapEv.ID, []string{tp}); err != nil || cur[tp] != last {
		t.Fatalf("snapshot id: got %v, %v; want %s at %v", cur, err, tp, last)
	}
	resp.Body.Close()

	// Cut after the reply: the topic has no position, so it starts afresh.
	publish(t, hub, tp, `{"qty":3}`, fanout.WithKey("42"))
	resp = tr.get(t, ctx, u, http.Header{"Last-Event-Id": {replyEv.ID}})
	er = newEventReader(resp.Body, replyEv.ID)
	if _, r := nextEvent(t, er); r.Type != transporttest.EventReply || r.Recovered != nil {
		t.Fatalf("got %+v, want a fresh reply", r)
	}
	if _, s := nextEvent(t, er); s.Type != transporttest.EventSnapshot || s.Position.Seq != 3 {
		t.Fatalf("got %+v, want the snapshot at #3", s)
	}
	resp.Body.Close()

	// Cut after the snapshot: resume after it, without a snapshot.
	resp = tr.get(t, ctx, u, http.Header{"Last-Event-Id": {snapEv.ID}})
	er = newEventReader(resp.Body, snapEv.ID)
	if _, r := nextEvent(t, er); r.Type != transporttest.EventReply || r.Recovered == nil || !*r.Recovered {
		t.Fatalf("got %+v, want a recovered reply", r)
	}
	if _, m := nextEvent(t, er); m.Type != transporttest.EventMessage || m.Position.Seq != 3 {
		t.Fatalf("got %+v, want #3", m)
	}
}

func TestForgedCursor(t *testing.T) {
	t.Parallel()
	hub := newHub(t, nil)
	tr := newTransport(t, sse.New(hub, nil), false)
	ctx := testContext(t)
	topics := []string{"forge.a", "forge.b"}
	pos := map[string]fanout.Position{"forge.a": {Epoch: "ep", Seq: 3}, "forge.b": {Epoch: "ep", Seq: 9}}
	valid := sse.EncodeCursor(topics, pos)
	flip := []byte(valid)
	for i := 8; ; i++ { // swap a letter's case: valid base64, other bits
		if c := flip[i] | 0x20; c >= 'a' && c <= 'z' {
			flip[i] ^= 0x20
			break
		}
	}
	forged := map[string]string{
		"garbage":         "hello world",
		"not base64url":   "AAAA+/==",
		"empty payload":   "AQ",
		"bit flip":        string(flip),
		"truncated":       valid[:len(valid)-3],
		"appended":        valid + "AA",
		"other topics":    sse.EncodeCursor([]string{"forge.a"}, pos),
		"unknown version": "AgAAAAAA",
		"too long":        strings.Repeat("A", 17<<10),
	}
	for name, id := range forged {
		for _, how := range []string{"header", "since"} {
			h, extra := http.Header{}, url.Values{}
			if how == "header" {
				h.Set("Last-Event-ID", id)
			} else {
				extra.Set("since", id)
			}
			resp, err := tr.open(ctx, streamURL(tr.url, topics, extra), h)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" {
				resp.Body.Close()
				t.Fatalf("%s cursor in %s: got status %d %q, want 400 JSON", name, how, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || body.Error.Code != "bad_request" || !strings.Contains(body.Error.Message, "cursor") {
				t.Fatalf("%s cursor in %s: got body %+v (%v), want a bad_request about the cursor", name, how, body, err)
			}
		}
	}
	// The valid cursor works in any topic order, and the header wins over
	// the since parameter.
	publishN := func(tp string, n int) {
		for range n {
			publish(t, hub, tp, "1")
		}
	}
	publishN("forge.a", 3)
	publishN("forge.b", 9)
	ea := publish(t, hub, "forge.a", "1").Epoch
	eb := publish(t, hub, "forge.b", "1").Epoch
	cur := sse.EncodeCursor(topics, map[string]fanout.Position{"forge.a": {Epoch: ea, Seq: 3}, "forge.b": {Epoch: eb, Seq: 9}})
	resp := tr.get(t, ctx, streamURL(tr.url, []string{"forge.b", "forge.a"}, url.Values{"since": {"garbage"}}), http.Header{"Last-Event-Id": {cur}})
	er := newEventReader(resp.Body, "")
	got := map[string]uint64{}
	for range 4 {
		_, e := nextEvent(t, er)
		if e.Type == transporttest.EventMessage {
			got[e.Topic] = e.Position.Seq
		}
	}
	if got["forge.a"] != 4 || got["forge.b"] != 10 {
		t.Fatalf("got last messages %v, want forge.a #4 and forge.b #10", got)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	hub := newHub(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Token != "tok" || c.Transport != "sse" {
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
	tr := newTransport(t, sse.New(hub, &sse.Options{Retry: 1500 * time.Millisecond}), false)
	ctx := testContext(t)
	status := func(rawURL string, h http.Header) *http.Response {
		t.Helper()
		resp, err := tr.open(ctx, rawURL, h)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := status(tr.url+"?topic=a", nil); r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("no token: got %d %q, want 401 Bearer", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	if r := status(tr.url+"?topic=a&topic=secret&token=tok", nil); r.StatusCode != 403 {
		t.Fatalf("forbidden topic: got %d, want 403", r.StatusCode)
	}
	// The token as a query parameter, a cookie, a header.
	for _, h := range []http.Header{nil, {"Cookie": {"access_token=tok"}}, {"Authorization": {"Bearer tok"}}} {
		u := tr.url + "?topic=a"
		if h == nil {
			u += "&token=tok"
		}
		resp := tr.get(t, ctx, u, h)
		resp.Body.Close()
	}
	if err := hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if r := status(tr.url+"?topic=a&token=tok", nil); r.StatusCode != 503 || r.Header.Get("Retry-After") != "2" {
		t.Fatalf("after shutdown: got %d Retry-After %q, want 503 and 2", r.StatusCode, r.Header.Get("Retry-After"))
	}
}

// hidingWriter is a middleware's ResponseWriter that hides the server's
// Flush, and, with unwrap, gives it back through Unwrap.
type hidingWriter struct{ w http.ResponseWriter }

func (h hidingWriter) Header() http.Header         { return h.w.Header() }
func (h hidingWriter) Write(b []byte) (int, error) { return h.w.Write(b) }
func (h hidingWriter) WriteHeader(code int)        { h.w.WriteHeader(code) }

type unwrappingWriter struct{ hidingWriter }

func (u unwrappingWriter) Unwrap() http.ResponseWriter { return u.w }

func TestMiddlewareWithoutFlush(t *testing.T) {
	t.Parallel()
	hub := newHub(t, nil)
	h := sse.New(hub, nil)
	ctx := testContext(t)
	hiding := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(hidingWriter{w}, r)
	}), false)
	resp, err := hiding.open(ctx, hiding.url+"?topic=mw", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("got status %d, want 500", resp.StatusCode)
	}
	unwrapping := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(unwrappingWriter{hidingWriter{w}}, r)
	}), false)
	resp = unwrapping.get(t, ctx, unwrapping.url+"?topic=mw", nil)
	er := newEventReader(resp.Body, "")
	if _, r := nextEvent(t, er); r.Type != transporttest.EventReply {
		t.Fatalf("got %+v, want the reply", r)
	}
	publish(t, hub, "mw", "1")
	if _, m := nextEvent(t, er); m.Type != transporttest.EventMessage {
		t.Fatalf("got %+v, want the message", m)
	}
}
