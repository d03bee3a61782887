package fanout_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// The types a host serialises marshal to the wire protocol's field names.
func TestJSONFieldNames(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{fanout.Position{Epoch: "e", Seq: 3}, `{"epoch":"e","seq":3}`},
		{fanout.Topic{Name: "a", Subscribers: 2, Position: fanout.Position{Epoch: "e", Seq: 3}},
			`{"topic":"a","subscribers":2,"position":{"epoch":"e","seq":3}}`},
		{fanout.Principal{ID: "u"}, `{"id":"u"}`},
		{&fanout.Message{Topic: "a", Position: fanout.Position{Epoch: "e", Seq: 1}, Key: "k", Data: []byte("x"),
			Time: time.Unix(0, 0).UTC(), Header: map[string]string{"h": "v"}},
			`{"topic":"a","position":{"epoch":"e","seq":1},"key":"k","data64":"eA==","time":"1970-01-01T00:00:00Z","header":{"h":"v"}}`},
	} {
		b, err := json.Marshal(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("%T: got %s, want %s", c.v, b, c.want)
		}
	}
}

// An idle hub's topics encode as an empty list, not null.
func TestTopicsEmptyJSON(t *testing.T) {
	h, err := fanout.NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, _ := json.Marshal(h.Topics())
	if string(b) != "[]" {
		t.Errorf("got %s, want []", b)
	}
	s, _ := h.NewSession(fanout.Principal{})
	defer s.Close(fanout.CloseNormal, "")
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	if ts := h.Topics(); len(ts) != 1 || ts[0].Name != "a" {
		t.Errorf("got %+v, want topic a", ts)
	}
}
