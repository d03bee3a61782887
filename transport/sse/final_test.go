package sse_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
	"github.com/gofanout/fanout/transport/transporttest"
)

// closes is an observer that reports the close code of every session.
type closes chan fanout.CloseCode

func (c closes) Observe(e fanout.Event) {
	if e.Type == fanout.EventSessionClose {
		select {
		case c <- e.Code:
		default:
			panic("closes: observer channel full")
		}
	}
}

// wantEnd reads the close event of a stream whose topics all ended, and
// the end of the response after it.
func wantEnd(t *testing.T, er *eventReader) {
	t.Helper()
	ev, c := nextEvent(t, er)
	if c.Type != transporttest.EventClose || c.Code != fanout.CloseNormal || c.Reason != "topic ended" || c.Reconnect {
		t.Fatalf("got %+v, want close 1000 \"topic ended\" without reconnect", c)
	}
	if ev.ID != er.lastID || ev.Name != "close" {
		t.Fatalf("got close event %+v, want one without an id", ev)
	}
	if ev, err := er.next(); err != io.EOF || er.cut {
		t.Fatalf("after the close event: got %+v, %v (cut %v); want the end of the response", ev, err, er.cut)
	}
}

// wantOpen checks that a stream still delivers: a message published to
// topic arrives next.
func wantOpen(t *testing.T, hub *fanout.Hub, er *eventReader, topic string) {
	t.Helper()
	p := publish(t, hub, topic, `"still open"`)
	if _, m := nextEvent(t, er); m.Type != transporttest.EventMessage || m.Topic != topic || m.Position != p {
		t.Fatalf("got %+v, want %s at %v: the stream should still be open", m, topic, p)
	}
}

// cursorVersion returns the version byte of cursor c.
func cursorVersion(t *testing.T, c string) byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		t.Fatalf("cursor %q: %v", c, err)
	}
	return b[0]
}

func TestEndOnFinalMessage(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			t.Parallel()
			cl := make(closes, 4)
			hub := newHub(t, &fanout.HubOptions{Observer: cl})
			tr := newTransport(t, sse.New(hub, nil), h2)
			ctx := testContext(t)
			u := streamURL(tr.url, []string{"saga.1"}, nil)
			resp := tr.get(t, ctx, u, nil)
			er := newEventReader(resp.Body, "")
			if _, r := nextEvent(t, er); r.Type != transporttest.EventReply || r.Error != "" {
				t.Fatalf("got %+v, want the ok reply", r)
			}
			publish(t, hub, "saga.1", `"running"`, fanout.WithKey("saga"))
			final := publish(t, hub, "saga.1", `"done"`, fanout.WithKey("saga"), fanout.WithFinal())
			publish(t, hub, "saga.1", `"after the end"`)
			if _, m := nextEvent(t, er); m.Type != transporttest.EventMessage || m.Position.Seq != 1 {
				t.Fatalf("got %+v, want #1", m)
			}
			ev, m := nextEvent(t, er)
			if m.Type != transporttest.EventMessage || m.Position != final || string(m.Data) != `"done"` {
				t.Fatalf("got %+v, want the final message at %v", m, final)
			}
			if !strings.Contains(ev.Data, `"header":{"fanout-final":"true"}`) {
				t.Errorf("got final message %s, want its %s header", ev.Data, fanout.HeaderFinal)
			}
			if v := cursorVersion(t, ev.ID); v != 2 {
				t.Errorf("got cursor version %d after the final message, want 2", v)
			}
			if cur, err := sse.DecodeCursor(ev.ID, []string{"saga.1"}); err != nil || cur["saga.1"] != final {
				t.Errorf("got cursor %v, %v; want saga.1 at %v", cur, err, final)
			}
			wantEnd(t, er)
			if code := <-cl; code != fanout.CloseNormal {
				t.Errorf("got session close %d, want %d", code, fanout.CloseNormal)
			}

			// A browser that reconnects anyway, with the last id, is told
			// to stop: 204 No Content.
			r2, err := tr.open(ctx, u, http.Header{"Last-Event-Id": {ev.ID}})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(r2.Body)
			r2.Body.Close()
			if r2.StatusCode != http.StatusNoContent || len(body) != 0 {
				t.Fatalf("reconnect after the end: got %d %q, want 204 without a body", r2.StatusCode, body)
			}
		})
	}
}

// TestEndAfterEveryTopic: a stream of several topics ends only once each
// of them delivered its final message; what a topic publishes after its
// end is not delivered, and a reconnection follows only the topics that
// did not end.
func TestEndAfterEveryTopic(t *testing.T) {
	t.Parallel()
	hub := newHub(t, nil)
	tr := newTransport(t, sse.New(hub, nil), false)
	ctx := testContext(t)
	topics := []string{"multi.a", "multi.b", "multi.c"}
	u := streamURL(tr.url, topics, nil)
	resp := tr.get(t, ctx, u, nil)
	er := newEventReader(resp.Body, "")
	for range topics {
		if _, r := nextEvent(t, er); r.Type != transporttest.EventReply {
			t.Fatalf("got %+v, want a reply", r)
		}
	}
	fa := publish(t, hub, "multi.a", `"a done"`, fanout.WithFinal())
	if _, m := nextEvent(t, er); m.Position != fa || m.Topic != "multi.a" {
		t.Fatalf("got %+v, want multi.a's final message", m)
	}
	wantOpen(t, hub, er, "multi.b")
	publish(t, hub, "multi.a", `"a after its end"`)
	wantOpen(t, hub, er, "multi.c")
	lastID := er.lastID
	resp.Body.Close()

	// The connection drops: the reconnection follows b and c only.
	fb := publish(t, hub, "multi.b", `"b done"`, fanout.WithFinal())
	resp = tr.get(t, ctx, u, http.Header{"Last-Event-Id": {lastID}})
	er = newEventReader(resp.Body, lastID)
	for _, tp := range []string{"multi.b", "multi.c"} {
		if _, r := nextEvent(t, er); r.Type != transporttest.EventReply || r.Topic != tp || r.Recovered == nil || !*r.Recovered {
			t.Fatalf("got %+v, want a recovered reply for %s", r, tp)
		}
		if tp == "multi.b" {
			if _, m := nextEvent(t, er); m.Position != fb || m.Topic != tp {
				t.Fatalf("got %+v, want multi.b's final message from history", m)
			}
		}
	}
	publish(t, hub, "multi.a", `"a again"`)
	publish(t, hub, "multi.b", `"b after its end"`)
	fc := publish(t, hub, "multi.c", `"c done"`, fanout.WithFinal())
	ev, m := nextEvent(t, er)
	if m.Position != fc || m.Topic != "multi.c" {
		t.Fatalf("got %+v, want multi.c's final message", m)
	}
	cur, err := sse.DecodeCursor(ev.ID, topics)
	if err != nil || cur["multi.a"] != fa || cur["multi.b"] != fb || cur["multi.c"] != fc {
		t.Fatalf("got cursor %v, %v; want every topic at its final message", cur, err)
	}
	wantEnd(t, er)
}

// TestEndAfterSnapshot: a subscriber whose snapshot holds the final
// message ends right after the snapshot; in a stream of several topics,
// only once the others ended too.
func TestEndAfterSnapshot(t *testing.T) {
	t.Parallel()
	hub := newHub(t, nil)
	tr := newTransport(t, sse.New(hub, nil), false)
	ctx := testContext(t)
	publish(t, hub, "snap.a", `"flight confirmed"`, fanout.WithKey("flight"))
	fa := publish(t, hub, "snap.a", `"completed"`, fanout.WithKey("saga"), fanout.WithFinal())
	publish(t, hub, "snap.b", `"running"`, fanout.WithKey("saga"))

	resp := tr.get(t, ctx, streamURL(tr.url, []string{"snap.a"}, url.Values{"snapshot": {"1"}}), nil)
	er := newEventReader(resp.Body, "")
	if _, r := nextEvent(t, er); r.Type != transporttest.EventReply {
		t.Fatalf("got %+v, want the reply", r)
	}
	if _, s := nextEvent(t, er); s.Type != transporttest.EventSnapshot || s.Position != fa || len(s.Items) != 2 {
		t.Fatalf("got %+v, want the snapshot at the final message", s)
	}
	wantEnd(t, er)

	resp = tr.get(t, ctx, streamURL(tr.url, []string{"snap.a", "snap.b"}, url.Values{"snapshot": {"1"}}), nil)
	er = newEventReader(resp.Body, "")
	for _, want := range []transporttest.EventType{transporttest.EventReply, transporttest.EventSnapshot, transporttest.EventReply, transporttest.EventSnapshot} {
		if _, e := nextEvent(t, er); e.Type != want {
			t.Fatalf("got %+v, want a %s", e, want)
		}
	}
	wantOpen(t, hub, er, "snap.b")
	fb := publish(t, hub, "snap.b", `"compensated"`, fanout.WithKey("saga"), fanout.WithFinal())
	if _, m := nextEvent(t, er); m.Position != fb {
		t.Fatalf("got %+v, want snap.b's final message", m)
	}
	wantEnd(t, er)
}

// TestEndOnResume: a stream that resumes from a cursor whose history holds
// the final message ends after replaying it; one that resumes where
// history no longer reaches ends after the snapshot that holds it.
func TestEndOnResume(t *testing.T) {
	t.Parallel()
	hub := newHub(t, nil)
	tr := newTransport(t, sse.New(hub, nil), false)
	ctx := testContext(t)
	tp := "resume.end"
	p1 := publish(t, hub, tp, `"booking"`, fanout.WithKey("flight"))
	publish(t, hub, tp, `"confirmed"`, fanout.WithKey("flight"))
	final := publish(t, hub, tp, `"completed"`, fanout.WithKey("saga"), fanout.WithFinal())
	u := streamURL(tr.url, []string{tp}, url.Values{"snapshot": {"1"}})

	cur := sse.EncodeCursor([]string{tp}, map[string]fanout.Position{tp: p1})
	resp := tr.get(t, ctx, u, http.Header{"Last-Event-Id": {cur}})
	er := newEventReader(resp.Body, cur)
	if _, r := nextEvent(t, er); r.Type != transporttest.EventReply || r.Recovered == nil || !*r.Recovered {
		t.Fatalf("got %+v, want a recovered reply", r)
	}
	for seq := p1.Seq + 1; seq <= final.Seq; seq++ {
		if _, m := nextEvent(t, er); m.Type != transporttest.EventMessage || m.Position.Seq != seq {
			t.Fatalf("got %+v, want #%d from history", m, seq)
		}
	}
	wantEnd(t, er)

	// Another epoch: history cannot answer, the snapshot holds the end.
	cur = sse.EncodeCursor([]string{tp}, map[string]fanout.Position{tp: {Epoch: "gone", Seq: 1}})
	resp = tr.get(t, ctx, u+"&since="+cur, nil)
	er = newEventReader(resp.Body, "")
	if _, r := nextEvent(t, er); r.Type != transporttest.EventReply || r.Recovered == nil || *r.Recovered {
		t.Fatalf("got %+v, want recovered=false", r)
	}
	if _, s := nextEvent(t, er); s.Type != transporttest.EventSnapshot || s.Position != final {
		t.Fatalf("got %+v, want the snapshot at %v", s, final)
	}
	wantEnd(t, er)
}

// cursorV2 builds a version 2 cursor by the letter of docs/PROTOCOL.md:
// topics sorted, epochs numbered in order of first use, then the bit set
// of ended topics (extra bits set beyond the topics when pad is set).
func cursorV2(topics []string, pos map[string]fanout.Position, ended map[string]bool, pad byte) string {
	sorted := slices.Compact(slices.Sorted(slices.Values(topics)))
	var epochs []string
	for _, tp := range sorted {
		if p, ok := pos[tp]; ok && !slices.Contains(epochs, p.Epoch) {
			epochs = append(epochs, p.Epoch)
		}
	}
	body := binary.AppendUvarint(nil, uint64(len(epochs)))
	for _, e := range epochs {
		body = binary.AppendUvarint(body, uint64(len(e)))
		body = append(body, e...)
	}
	for _, tp := range sorted {
		p, ok := pos[tp]
		if !ok {
			body = append(body, 0)
			continue
		}
		body = binary.AppendUvarint(body, uint64(slices.Index(epochs, p.Epoch)+1))
		body = binary.AppendUvarint(body, p.Seq)
	}
	bits := make([]byte, (len(sorted)+7)/8)
	for i, tp := range sorted {
		if ended[tp] {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	if len(bits) > 0 {
		bits[len(bits)-1] |= pad
	}
	body = append(body, bits...)
	var names []byte
	for _, tp := range sorted {
		names = append(append(names, tp...), '\n')
	}
	sum := crc32.ChecksumIEEE(names)
	sum = crc32.Update(sum, crc32.IEEETable, body)
	bin := append([]byte{2, 0, 0, 0, 0}, body...)
	binary.BigEndian.PutUint32(bin[1:5], sum)
	return base64.RawURLEncoding.EncodeToString(bin)
}

// TestCursorVersion2 decodes cursors that mark topics as ended, built from
// the protocol's description, and refuses malformed ones.
func TestCursorVersion2(t *testing.T) {
	t.Parallel()
	topics := []string{"v2.c", "v2.a", "v2.b"}
	pos := map[string]fanout.Position{"v2.a": {Epoch: "e1", Seq: 4}, "v2.b": {Epoch: "e2", Seq: 9}}
	valid := cursorV2(topics, pos, map[string]bool{"v2.b": true}, 0)
	got, err := sse.DecodeCursor(valid, topics)
	if err != nil || !maps.Equal(got, pos) {
		t.Fatalf("got %v, %v; want %v", got, err, pos)
	}
	for name, c := range map[string]string{
		"no ended topic":          cursorV2(topics, pos, nil, 0),
		"ended without position":  cursorV2(topics, pos, map[string]bool{"v2.c": true}, 0),
		"bits beyond the topics":  cursorV2(topics, pos, map[string]bool{"v2.a": true}, 0x80),
		"missing ended bits":      valid[:len(valid)-2],
		"for another set":         cursorV2([]string{"v2.a", "v2.b"}, pos, map[string]bool{"v2.a": true}, 0),
		"trailing byte after set": base64.RawURLEncoding.EncodeToString(append(mustDecode(t, valid), 0)),
	} {
		if _, err := sse.DecodeCursor(c, topics); !errors.Is(err, sse.ErrInvalidCursor) {
			t.Errorf("%s: got %v, want ErrInvalidCursor", name, err)
		}
	}

	// A stream resumed from it follows the topics that did not end.
	hub := newHub(t, nil)
	tr := newTransport(t, sse.New(hub, nil), false)
	ctx := testContext(t)
	pa := publish(t, hub, "v2.a", "1")
	pb := publish(t, hub, "v2.b", "1")
	cur := cursorV2(topics, map[string]fanout.Position{"v2.a": pa, "v2.b": pb}, map[string]bool{"v2.b": true}, 0)
	resp := tr.get(t, ctx, streamURL(tr.url, topics, url.Values{"since": {cur}}), nil)
	er := newEventReader(resp.Body, "")
	for _, tp := range []string{"v2.c", "v2.a"} { // in the order of the query
		if _, r := nextEvent(t, er); r.Type != transporttest.EventReply || r.Topic != tp {
			t.Fatalf("got %+v, want the reply for %s", r, tp)
		}
	}
	publish(t, hub, "v2.b", "ignored")
	fa := publish(t, hub, "v2.a", "end", fanout.WithFinal())
	if _, m := nextEvent(t, er); m.Position != fa {
		t.Fatalf("got %+v, want v2.a's final message", m)
	}
	fc := publish(t, hub, "v2.c", "end", fanout.WithFinal())
	ev, m := nextEvent(t, er)
	if m.Position != fc {
		t.Fatalf("got %+v, want v2.c's final message", m)
	}
	wantEnd(t, er)
	// Every topic ended: a reconnection is told to stop.
	r2, err := tr.open(ctx, streamURL(tr.url, topics, nil), http.Header{"Last-Event-Id": {ev.ID}})
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusNoContent {
		t.Fatalf("got %d, want 204", r2.StatusCode)
	}
}

func mustDecode(t *testing.T, c string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEndNeedsAuthentication: the 204 for a stream whose topics all ended
// is given to authenticated clients only.
func TestEndNeedsAuthentication(t *testing.T) {
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
	p := publish(t, hub, "auth.end", "x", fanout.WithFinal())
	cur := cursorV2([]string{"auth.end"}, map[string]fanout.Position{"auth.end": p}, map[string]bool{"auth.end": true}, 0)
	for token, want := range map[string]int{"": http.StatusUnauthorized, "tok": http.StatusNoContent} {
		resp, err := tr.open(ctx, streamURL(tr.url, []string{"auth.end"}, url.Values{"since": {cur}, "token": {token}}), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("token %q: got %d, want %d", token, resp.StatusCode, want)
		}
	}
}
