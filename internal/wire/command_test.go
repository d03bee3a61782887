package wire_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

func TestParseCommand(t *testing.T) {
	t.Parallel()
	seq := func(n uint64) *fanout.Position { return &fanout.Position{Epoch: "e", Seq: n} }
	for _, tc := range []struct {
		in   string
		want wire.Command
	}{
		{`{"type":"ping"}`, wire.Command{Type: "ping"}},
		{` {"id":"1","type":"ping"} ` + "\n", wire.Command{ID: "1", Type: "ping"}},
		{`{"id":"1","type":"subscribe","topic":"a"}`, wire.Command{ID: "1", Type: "subscribe", Topic: "a"}},
		{`{"type":"subscribe","topic":"a","snapshot":true}`, wire.Command{Type: "subscribe", Topic: "a", Snapshot: true}},
		{`{"type":"subscribe","topic":"a","since":{"epoch":"e","seq":7}}`, wire.Command{Type: "subscribe", Topic: "a", Since: seq(7)}},
		{`{"type":"subscribe","topic":"a","since":{"seq":0}}`, wire.Command{Type: "subscribe", Topic: "a", Since: &fanout.Position{}}},
		{`{"type":"subscribe","topic":"a","since":null}`, wire.Command{Type: "subscribe", Topic: "a"}},
		{`{"type":"unsubscribe","topic":"a"}`, wire.Command{Type: "unsubscribe", Topic: "a"}},
		{`{"type":"publish","topic":"a","data":{"x": [1, 2]}}`, wire.Command{Type: "publish", Topic: "a", Data: []byte(`{"x":[1,2]}`)}},
		{`{"type":"publish","topic":"a","data":"text"}`, wire.Command{Type: "publish", Topic: "a", Data: []byte(`"text"`)}},
		{`{"type":"publish","topic":"a","data":null}`, wire.Command{Type: "publish", Topic: "a", Data: []byte(`null`)}},
		{`{"type":"publish","topic":"a","data64":"AAH/"}`, wire.Command{Type: "publish", Topic: "a", Data: []byte{0, 1, 0xff}}},
		{`{"type":"publish","topic":"a","data64":""}`, wire.Command{Type: "publish", Topic: "a", Data: []byte{}}},
		{`{"type":"publish","topic":"a","data":1,"key":"k"}`, wire.Command{Type: "publish", Topic: "a", Data: []byte(`1`), Key: "k"}},
	} {
		got, err := wire.ParseCommand([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: got error %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseCommandErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		wantID string
		want   error
	}{
		{``, "", fanout.ErrBadRequest},
		{`null`, "", fanout.ErrBadRequest},
		{`[]`, "", fanout.ErrBadRequest},
		{`{"id":"1"`, "", fanout.ErrBadRequest},
		{`{"id":"1","type":"ping"}}`, "", fanout.ErrBadRequest},
		{`{"id":"1","type":"ping"}]`, "", fanout.ErrBadRequest},
		{`{"id":"1","type":"ping"} {}`, "", fanout.ErrBadRequest},
		{`{"id":"1","type":"ping","x":1}`, "1", fanout.ErrBadRequest},
		{`{"id":1,"type":"ping"}`, "", fanout.ErrBadRequest},
		{`{"id":"2","type":"subscribe","topic":5}`, "2", fanout.ErrBadRequest},
		{`{"id":"3"}`, "3", fanout.ErrBadRequest},
		{`{"id":"4","type":"jump"}`, "4", fanout.ErrBadRequest},
		{`{"id":"` + strings.Repeat("x", wire.MaxIDLength+1) + `","type":"ping"}`, "", fanout.ErrBadRequest},
		{`{"id":"5","type":"subscribe"}`, "5", fanout.ErrInvalidTopic},
		{`{"id":"6","type":"subscribe","topic":"a b"}`, "6", fanout.ErrInvalidTopic},
		{`{"id":"7","type":"publish","topic":".a","data":1}`, "7", fanout.ErrInvalidTopic},
		{`{"id":"8","type":"subscribe","topic":"a","since":{"epoch":"e"}}`, "8", fanout.ErrBadRequest},
		{`{"id":"9","type":"unsubscribe","topic":"a","since":{"seq":1}}`, "9", fanout.ErrBadRequest},
		{`{"id":"10","type":"subscribe","topic":"a","data":1}`, "10", fanout.ErrBadRequest},
		{`{"id":"11","type":"subscribe","topic":"a","key":"k"}`, "11", fanout.ErrBadRequest},
		{`{"id":"12","type":"publish","topic":"a"}`, "12", fanout.ErrBadRequest},
		{`{"id":"13","type":"publish","topic":"a","data":1,"data64":"AA=="}`, "13", fanout.ErrBadRequest},
		{`{"id":"14","type":"publish","topic":"a","data64":"not base64!"}`, "14", fanout.ErrBadRequest},
		{`{"id":"15","type":"subscribe","topic":"a","since":{"seq":-1}}`, "15", fanout.ErrBadRequest},
	} {
		got, err := wire.ParseCommand([]byte(tc.in))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got error %v, want %v", tc.in, err, tc.want)
		}
		if got.ID != tc.wantID {
			t.Errorf("%s: got id %q, want %q", tc.in, got.ID, tc.wantID)
		}
	}
}

func TestPayload(t *testing.T) {
	t.Parallel()
	s := func(v string) *string { return &v }
	for _, tc := range []struct {
		data   json.RawMessage
		data64 *string
		want   []byte
		err    bool
	}{
		{data: json.RawMessage(`{"a":1}`), want: []byte(`{"a":1}`)},
		{data64: s("aGk="), want: []byte("hi")},
		{data64: s(""), want: []byte{}},
		{err: true},
		{data: json.RawMessage(`1`), data64: s("AA=="), err: true},
		{data64: s("aGk"), err: true}, // padding is required
	} {
		got, err := wire.Payload(tc.data, tc.data64)
		if (err != nil) != tc.err || !errors.Is(err, fanout.ErrBadRequest) && tc.err {
			t.Errorf("Payload(%s, %v): got error %v, want error %v", tc.data, tc.data64, err, tc.err)
			continue
		}
		if !tc.err && string(got) != string(tc.want) {
			t.Errorf("Payload(%s, %v): got %q, want %q", tc.data, tc.data64, got, tc.want)
		}
	}
}

// FuzzParseCommand checks that any input either parses into a command that
// keeps the protocol's rules, and that survives a round trip, or fails with
// a documented error.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","type":"ping"}`,
		`{"id":"2","type":"subscribe","topic":"stock:42","since":{"epoch":"ab12","seq":9}}`,
		`{"id":"3","type":"subscribe","topic":"saga/7","snapshot":true}`,
		`{"id":"4","type":"unsubscribe","topic":"a"}`,
		`{"id":"5","type":"publish","topic":"a","data":{"q":[1,"x",null]},"key":"k"}`,
		`{"id":"6","type":"publish","topic":"a","data64":"AAECAw=="}`,
		`{"id":"7","type":"publish","topic":"a","data":"\u2028\n"}`,
		`{"type":"subscribe","topic":"a"}}`,
		`{"id":"\ud800","type":"ping"}`,
		"{\"id\":\"\xff\",\"type\":\"ping\"}",
		`not json`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := wire.ParseCommand(b)
		if len(c.ID) > wire.MaxIDLength {
			t.Fatalf("got id of %d bytes", len(c.ID))
		}
		if err != nil {
			if !errors.Is(err, fanout.ErrBadRequest) && !errors.Is(err, fanout.ErrInvalidTopic) {
				t.Fatalf("got error %v, want bad request or invalid topic", err)
			}
			return
		}
		switch c.Type {
		case wire.CmdPing:
		case wire.CmdSubscribe, wire.CmdUnsubscribe, wire.CmdPublish:
			if err := fanout.ValidateTopic(c.Topic); err != nil {
				t.Fatalf("accepted topic %q: %v", c.Topic, err)
			}
		default:
			t.Fatalf("accepted type %q", c.Type)
		}
		if c.Since != nil && c.Type != wire.CmdSubscribe {
			t.Fatalf("accepted since on %s", c.Type)
		}
		if c.Type == wire.CmdPublish && c.Data == nil {
			t.Fatal("accepted a publish without data")
		}
		if c.Type != wire.CmdPing && c.Type != wire.CmdPublish && (c.Data != nil || c.Key != "") {
			t.Fatalf("accepted data or key on %s", c.Type)
		}
		// Encode the command again (payload as data64) and parse it back.
		m := map[string]any{"id": c.ID, "type": c.Type}
		if c.Type != wire.CmdPing {
			m["topic"] = c.Topic
		}
		if c.Since != nil {
			m["since"] = map[string]any{"epoch": c.Since.Epoch, "seq": c.Since.Seq}
		}
		if c.Snapshot {
			m["snapshot"] = true
		}
		if c.Type == wire.CmdPublish {
			m["data64"] = base64.StdEncoding.EncodeToString(c.Data)
			if c.Key != "" {
				m["key"] = c.Key
			}
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := wire.ParseCommand(enc)
		if err != nil {
			t.Fatalf("re-encoded %s: %v", enc, err)
		}
		// json.Marshal makes strings valid UTF-8; compare what survives.
		if c.Type == wire.CmdPing {
			c.Topic, c.Snapshot, c.Key = "", false, ""
		}
		if !validUTF8(c.ID, c.Key) {
			return
		}
		if len(c.Data) == 0 {
			c.Data, c2.Data = nil, nil
		}
		if c.Since != nil && !validUTF8(c.Since.Epoch) {
			return
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip: got %+v, want %+v", c2, c)
		}
	})
}
