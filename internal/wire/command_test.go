package wire_test

import (
	"errors"
	"fmt"
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
		{`{"type":"publish","topic":"a","data":1,"idempotency_key":"e1","header":{"tp":"00","x":""}}`,
			wire.Command{Type: "publish", Topic: "a", Data: []byte(`1`), IdempotencyKey: "e1", Header: map[string]string{"tp": "00", "x": ""}}},
		{`{"type":"publish","topic":"a","data":1,"header":null,"key":null}`, wire.Command{Type: "publish", Topic: "a", Data: []byte(`1`)}},
		{`{"type":"publish","topic":"a","data":1,"header":{}}`, wire.Command{Type: "publish", Topic: "a", Data: []byte(`1`), Header: map[string]string{}}},
		{`{"id":"\u0031","\u0074ype":"ping"}`, wire.Command{ID: "1", Type: "ping"}},
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
		{`{"TYPE":"ping"}`, "", fanout.ErrBadRequest},
		{`{"id":"16","Type":"ping"}`, "16", fanout.ErrBadRequest},
		{`{"id":"17","type":"ping","type":"ping"}`, "17", fanout.ErrBadRequest},
		{`{"id":"18","id":"19","type":"ping"}`, "18", fanout.ErrBadRequest},
		{`{"id":"20","type":"ping","topic":"a"}`, "20", fanout.ErrBadRequest},
		{`{"id":"21","type":"subscribe","topic":"a","since":{"seq":1,"Epoch":"e"}}`, "21", fanout.ErrBadRequest},
		{`{"id":"22","type":"subscribe","topic":"a","since":{"seq":1.5}}`, "22", fanout.ErrBadRequest},
		{`{"id":"23","type":"subscribe","topic":"a","since":{"seq":1,"seq":2}}`, "23", fanout.ErrBadRequest},
		{`{"id":"24","type":"subscribe","topic":"a","snapshot":"yes"}`, "24", fanout.ErrBadRequest},
		{`{"id":"25","type":"unsubscribe","topic":"a","snapshot":true}`, "25", fanout.ErrBadRequest},
		{`{"id":"26","type":"subscribe","topic":"a","idempotency_key":"k"}`, "26", fanout.ErrBadRequest},
		{`{"id":"27","type":"subscribe","topic":"a","header":{"a":"b"}}`, "27", fanout.ErrBadRequest},
		{`{"id":"28","type":"publish","topic":"a","data":1,"header":{"a":1}}`, "28", fanout.ErrBadRequest},
		{`{"id":"29","type":"publish","topic":"a","data":1,"header":{"a":"x","a":"y"}}`, "29", fanout.ErrBadRequest},
		{`{"id":"30","type":"publish","topic":"a","data":1,"header":{"":"x"}}`, "30", fanout.ErrBadRequest},
		{`{"id":"31","type":"publish","topic":"a","data":1,"idempotency_key":"` + strings.Repeat("k", 257) + `"}`, "31", fanout.ErrBadRequest},
		{`{"id":"32","type":"publish","topic":"a","data":1,"header":` + bigHeader(33, 1) + `}`, "32", fanout.ErrBadRequest},
		{`{"id":"33","type":"publish","topic":"a","data":1,"header":` + bigHeader(2, 2100) + `}`, "33", fanout.ErrBadRequest},
		{`{"id":"34","type":"publish","topic":"a","data":1,"Data":1}`, "34", fanout.ErrBadRequest},
		{" {\"id\":\"35\"} x", "", fanout.ErrBadRequest},
	} {
		got, err := wire.ParseCommand([]byte(tc.in))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got error %v, want %v", tc.in, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "Go ") || strings.Count(err.Error(), "fanout:") != 1) {
			t.Errorf("%s: got message %q, want the client's terms, one prefix", tc.in, err)
		}
		if got.ID != tc.wantID {
			t.Errorf("%s: got id %q, want %q", tc.in, got.ID, tc.wantID)
		}
	}
}

// bigHeader returns a header object of n entries with values of size
// bytes.
func bigHeader(n, size int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%q", fmt.Sprint("h", i), strings.Repeat("v", size))
	}
	b.WriteByte('}')
	return b.String()
}

func TestAppendCommand(t *testing.T) {
	t.Parallel()
	since := &fanout.Position{Epoch: "e<", Seq: 7}
	for _, tc := range []struct {
		c    wire.Command
		want string
	}{
		{wire.Command{ID: "1", Type: "ping"}, `{"id":"1","type":"ping"}`},
		{wire.Command{Type: "ping"}, `{"type":"ping"}`},
		{wire.Command{ID: "2", Type: "subscribe", Topic: "a", Since: since}, `{"id":"2","type":"subscribe","topic":"a","since":{"epoch":"e\u003c","seq":7}}`},
		{wire.Command{ID: "3", Type: "subscribe", Topic: "a", Snapshot: true}, `{"id":"3","type":"subscribe","topic":"a","snapshot":true}`},
		{wire.Command{ID: "4", Type: "unsubscribe", Topic: "a"}, `{"id":"4","type":"unsubscribe","topic":"a"}`},
		{wire.Command{ID: "5", Type: "publish", Topic: "a", Data: []byte(`{"x":[1,2]}`), Key: "k", IdempotencyKey: "e1",
			Header: map[string]string{"z": "1", "a": "2"}},
			`{"id":"5","type":"publish","topic":"a","key":"k","idempotency_key":"e1","header":{"a":"2","z":"1"},"data":{"x":[1,2]}}`},
		{wire.Command{ID: "6", Type: "publish", Topic: "a", Data: []byte(`{"x": 1}`)}, `{"id":"6","type":"publish","topic":"a","data64":"eyJ4IjogMX0="}`},
		{wire.Command{ID: "7", Type: "publish", Topic: "a", Data: []byte{}}, `{"id":"7","type":"publish","topic":"a","data64":""}`},
	} {
		if got := string(wire.AppendCommand(nil, tc.c)); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

// FuzzParseCommand feeds the command decoder arbitrary bytes: it never
// panics, fails only with the documented errors, and what it accepts keeps
// the protocol's rules and encodes to a command that decodes the same.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","type":"ping"}`,
		`{"id":"2","type":"subscribe","topic":"stock:42","since":{"epoch":"ab12","seq":9}}`,
		`{"id":"3","type":"subscribe","topic":"saga/7","snapshot":true}`,
		`{"id":"4","type":"unsubscribe","topic":"a"}`,
		`{"id":"8","type":"presence","topic":"room"}`,
		`{"id":"9","type":"presence_count","topic":"room"}`,
		`{"id":"5","type":"publish","topic":"a","data":{"q":[1,"x",null]},"key":"k","idempotency_key":"e","header":{"a":"b"}}`,
		`{"id":"6","type":"publish","topic":"a","data64":"AAECAw=="}`,
		`{"id":"7","type":"publish","topic":"a","data":"\u2028\n"}`,
		`{"type":"subscribe","topic":"a"}}`,
		`{"id":"8","type":"auth","token":"eyJhbGciOi.x.y"}`,
		`{"id":"9","type":"refresh","token":""}`,
		`{"type":"refresh","token":"t","topic":"a"}`,
		`{"type":"ping","token":"t"}`,
		`{"TYPE":"ping","type":"ping"}`,
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
			if c.Topic != "" {
				t.Fatalf("accepted a topic on ping")
			}
		case wire.CmdSubscribe, wire.CmdUnsubscribe, wire.CmdPublish, wire.CmdPresence, wire.CmdPresenceCount:
			if err := fanout.ValidateTopic(c.Topic); err != nil {
				t.Fatalf("accepted topic %q: %v", c.Topic, err)
			}
		case wire.CmdAuth, wire.CmdRefresh:
			if c.Topic != "" || len(c.Token) > wire.MaxTokenLength {
				t.Fatalf("accepted %s with topic %q, token of %d bytes", c.Type, c.Topic, len(c.Token))
			}
		default:
			t.Fatalf("accepted type %q", c.Type)
		}
		if c.Token != "" && c.Type != wire.CmdAuth && c.Type != wire.CmdRefresh {
			t.Fatalf("accepted a token on %s", c.Type)
		}
		if (c.Since != nil || c.Snapshot) && c.Type != wire.CmdSubscribe {
			t.Fatalf("accepted since or snapshot on %s", c.Type)
		}
		if (c.Type == wire.CmdPublish) != (c.Data != nil) {
			t.Fatalf("data %q on %s", c.Data, c.Type)
		}
		if c.Type != wire.CmdPublish && (c.Key != "" || c.IdempotencyKey != "" || c.Header != nil) {
			t.Fatalf("accepted publish fields on %s", c.Type)
		}
		enc := wire.AppendCommand(nil, c)
		c2, err := wire.ParseCommand(enc)
		if err != nil {
			t.Fatalf("re-encoded %s: %v", enc, err)
		}
		if enc2 := wire.AppendCommand(nil, c2); string(enc2) != string(enc) {
			t.Fatalf("encoded %s, then %s", enc, enc2)
		}
	})
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	for _, err := range []error{fanout.ErrInvalidTopic, fanout.ErrForbidden, fanout.ErrBadRequest, fanout.ErrClosed, fanout.ErrUnavailable} {
		if got := wire.Sentinel(fanout.ErrorCode(err)); got != err {
			t.Errorf("Sentinel(%q): got %v, want %v", fanout.ErrorCode(err), got, err)
		}
	}
	if got := wire.Sentinel("internal"); got != nil {
		t.Errorf("Sentinel(internal): got %v, want nil", got)
	}
}

// FuzzCommandRoundTrip encodes every command type as the Go client does,
// decodes it as the server does, and encodes the result again: the same
// command, the same bytes.
func FuzzCommandRoundTrip(f *testing.F) {
	f.Add("1", "stock:42", "ab12", uint64(9), true, []byte(`{"q":[1,"x"]}`), "k", "evt-1", "traceparent", "00-1")
	f.Add("", "a", "", uint64(0), false, []byte{0, 0xff}, "", "", "", "")
	f.Add("<&>", "saga/7", "\u2028", uint64(1<<63), false, []byte(`{"a": 1}`), "\x00", "\"", "h", "")
	f.Fuzz(func(t *testing.T, id, topic, epoch string, seq uint64, snapshot bool, data []byte, key, idem, hk, hv string) {
		if len(data) > maxFuzzData || !validUTF8(id, topic, epoch, key, idem, hk, hv) ||
			len(id) > wire.MaxIDLength || len(idem) > 256 || len(hk)+len(hv) > 4096 {
			t.Skip()
		}
		if fanout.ValidateTopic(topic) != nil {
			topic = "t"
		}
		var header map[string]string
		if hk != "" {
			header = map[string]string{hk: hv}
		}
		since := &fanout.Position{Epoch: epoch, Seq: seq}
		if snapshot {
			since = nil
		}
		for _, c := range []wire.Command{
			{ID: id, Type: wire.CmdPing},
			{ID: id, Type: wire.CmdSubscribe, Topic: topic, Since: since, Snapshot: snapshot},
			{ID: id, Type: wire.CmdUnsubscribe, Topic: topic},
			{ID: id, Type: wire.CmdPublish, Topic: topic, Data: append([]byte{}, data...), Key: key, IdempotencyKey: idem, Header: header},
			{ID: id, Type: wire.CmdAuth, Token: key},
			{ID: id, Type: wire.CmdRefresh, Token: idem},
		} {
			b := wire.AppendCommand(nil, c)
			got, err := wire.ParseCommand(b)
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("%s: got %+v, want %+v", b, got, c)
			}
			if b2 := wire.AppendCommand(nil, got); string(b2) != string(b) {
				t.Fatalf("encoded %s, then %s", b, b2)
			}
		}
	})
}

func TestParseCredentialCommands(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want wire.Command
		err  string
	}{
		{`{"id":"1","type":"auth","token":"abc"}`, wire.Command{ID: "1", Type: wire.CmdAuth, Token: "abc"}, ""},
		{`{"type":"refresh","token":"x.y.z"}`, wire.Command{Type: wire.CmdRefresh, Token: "x.y.z"}, ""},
		{`{"type":"auth"}`, wire.Command{}, `auth needs "token"`},
		{`{"type":"refresh","token":1}`, wire.Command{}, `"token" must be a string`},
		{`{"type":"auth","token":"a","topic":"t"}`, wire.Command{}, `auth has no fields but`},
		{`{"type":"subscribe","topic":"t","token":"a"}`, wire.Command{}, `"token" belongs to auth and refresh`},
		{`{"type":"refresh","token":"` + strings.Repeat("a", wire.MaxTokenLength+1) + `"}`, wire.Command{}, `longer than`},
	} {
		got, err := wire.ParseCommand([]byte(c.in))
		if c.err != "" {
			if !errors.Is(err, fanout.ErrBadRequest) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%.80s: got %v, want bad request %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}
