package websocket_test

import (
	"context"
	"testing"

	"github.com/gofanout/fanout"
)

// TestFieldNamesExact: field names match exactly as documented, and a
// member given twice is refused.
func TestFieldNamesExact(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	c := s.dial(t, nil)
	for _, tc := range []struct{ cmd, id string }{
		{`{"TYPE":"ping"}`, ""},
		{`{"id":"1","Type":"ping"}`, "1"},
		{`{"id":"2","type":"subscribe","Topic":"t"}`, "2"},
		{`{"id":"3","type":"ping","type":"ping"}`, "3"},
		{`{"id":"4","type":"subscribe","topic":"t","topic":"u"}`, "4"},
		{`{"id":"5","type":"subscribe","topic":"t","since":{"seq":1,"seq":2}}`, "5"},
		{`{"id":"6","type":"subscribe","topic":"t","since":{"SEQ":1}}`, "6"},
	} {
		c.send(tc.cmd)
		c.wantError(tc.id, "bad_request")
	}
	c.reply(`{"id":"7","type":"ping"}`)
}

func allowPublish(context.Context, fanout.Principal, string, fanout.Action) error { return nil }

// TestPublishIdempotencyKey: a publish retried with the same idempotency
// key publishes once and is answered with the first position.
func TestPublishIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := newServer(t, &fanout.HubOptions{Authorize: allowPublish}, nil)
	sub := s.dial(t, nil)
	sub.subscribe(`{"type":"subscribe","topic":"orders"}`)
	pub := s.dial(t, nil)
	for _, id := range []string{"1", "2"} {
		r := pub.reply(`{"id":"` + id + `","type":"publish","topic":"orders","data":{"n":1},"idempotency_key":"evt-981"}`)
		if !r.OK || r.Position == nil || r.Position.Seq != 1 {
			t.Fatalf("publish %s: got %+v, want ok at seq 1", id, r)
		}
	}
	r := pub.reply(`{"id":"3","type":"publish","topic":"orders","data":{"n":2},"idempotency_key":"evt-982"}`)
	if !r.OK || r.Position == nil || r.Position.Seq != 2 {
		t.Fatalf("got %+v, want ok at seq 2", r)
	}
	sub.wantMsg("orders", 1, `{"n":1}`)
	sub.wantMsg("orders", 2, `{"n":2}`)
}

// TestPublishHeader: a publish's header reaches the subscribers.
func TestPublishHeader(t *testing.T) {
	t.Parallel()
	s := newServer(t, &fanout.HubOptions{Authorize: allowPublish}, nil)
	sub := s.dial(t, nil)
	sub.subscribe(`{"type":"subscribe","topic":"traced"}`)
	pub := s.dial(t, nil)
	r := pub.reply(`{"id":"1","type":"publish","topic":"traced","data":1,"key":"k","header":{"traceparent":"00-4bf9-01","tenant":"a"}}`)
	if !r.OK {
		t.Fatalf("got %+v, want ok", r)
	}
	f := sub.wantMsg("traced", 1, "1")
	if m := f.Message; m.Key != "k" || len(m.Header) != 2 || m.Header["traceparent"] != "00-4bf9-01" || m.Header["tenant"] != "a" {
		t.Fatalf("got key %q header %v, want k and both header entries", m.Key, m.Header)
	}
	for i, cmd := range []string{
		`{"id":"2","type":"publish","topic":"traced","data":1,"header":{"a":1}}`,
		`{"id":"3","type":"publish","topic":"traced","data":1,"header":{"a":"x","a":"y"}}`,
		`{"id":"4","type":"publish","topic":"traced","data":1,"header":["a"]}`,
	} {
		pub.send(cmd)
		pub.wantError(string(rune('2'+i)), "bad_request")
	}
}
