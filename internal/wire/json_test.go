package wire_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

func validUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

func TestAppendFrame(t *testing.T) {
	t.Parallel()
	ok, notOK := true, false
	pos := &fanout.Position{Epoch: "ab12", Seq: 7}
	msg := func(seq uint64, key, data string) *fanout.Message {
		return &fanout.Message{Topic: "stock:42", Position: fanout.Position{Epoch: "ab12", Seq: seq}, Key: key, Data: []byte(data)}
	}
	for _, tc := range []struct {
		f    fanout.Frame
		want string
	}{
		{fanout.Frame{Type: fanout.FrameMessage, Message: msg(7, "", `{"qty":3}`)},
			`{"type":"msg","topic":"stock:42","epoch":"ab12","seq":7,"data":{"qty":3}}`},
		{fanout.Frame{Type: fanout.FrameMessage, Message: &fanout.Message{
			Topic: "t", Position: fanout.Position{Epoch: "e", Seq: 1}, Key: "k<>", Data: []byte{0xff, 0},
			Time: time.UnixMilli(1700000000123), Header: map[string]string{"traceparent": "00-1"},
		}}, `{"type":"msg","topic":"t","epoch":"e","seq":1,"key":"k\u003c\u003e","time":1700000000123,"header":{"traceparent":"00-1"},"data64":"/wA="}`},
		{fanout.Frame{Type: fanout.FrameMessage, Message: msg(8, "", "{\n  \"a\": 1\n}")},
			`{"type":"msg","topic":"stock:42","epoch":"ab12","seq":8,"data64":"ewogICJhIjogMQp9"}`},
		{fanout.Frame{Type: fanout.FrameMessage, Message: msg(9, "", "")},
			`{"type":"msg","topic":"stock:42","epoch":"ab12","seq":9,"data64":""}`},
		{fanout.Frame{Type: fanout.FrameMessage, Message: msg(10, "", "\"\xff\"")},
			`{"type":"msg","topic":"stock:42","epoch":"ab12","seq":10,"data64":"Iv8i"}`},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "1", Topic: "stock:42", Position: pos}},
			`{"type":"reply","id":"1","ok":true,"topic":"stock:42","position":{"epoch":"ab12","seq":7}}`},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "2", Topic: "a", Position: pos, Recovered: &ok}},
			`{"type":"reply","id":"2","ok":true,"topic":"a","position":{"epoch":"ab12","seq":7},"recovered":true}`},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "3", Topic: "a", Position: pos, Recovered: &notOK}},
			`{"type":"reply","id":"3","ok":true,"topic":"a","position":{"epoch":"ab12","seq":7},"recovered":false}`},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "4", Err: fmt.Errorf("x: %w", fanout.ErrForbidden)}},
			`{"type":"reply","id":"4","ok":false,"error":{"code":"forbidden","message":"x: fanout: forbidden"}}`},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{}},
			`{"type":"reply","id":"","ok":true}`},
		{fanout.Frame{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: "stock:42", Position: *pos,
			Items: []*fanout.Message{msg(3, "a", "1"), msg(7, "b", "2")}}},
			`{"type":"snapshot","topic":"stock:42","position":{"epoch":"ab12","seq":7},"items":[` +
				`{"type":"msg","topic":"stock:42","epoch":"ab12","seq":3,"key":"a","data":1},` +
				`{"type":"msg","topic":"stock:42","epoch":"ab12","seq":7,"key":"b","data":2}]}`},
		{fanout.Frame{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: "e", Position: fanout.Position{}}},
			`{"type":"snapshot","topic":"e","position":{"epoch":"","seq":0},"items":[]}`},
		{fanout.Frame{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseShutdown, Reason: "server shutting down", Reconnect: true}},
			`{"type":"close","code":4000,"reason":"server shutting down","reconnect":true}`},
		{fanout.Frame{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseBadRequest, Reason: "bad\n\"x\""}},
			`{"type":"close","code":4003,"reason":"bad\n\"x\"","reconnect":false}`},
	} {
		got := string(wire.AppendFrame(nil, tc.f))
		if got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("%s is not valid JSON", got)
		}
	}
}

func TestEncodeCachesPerMessage(t *testing.T) {
	t.Parallel()
	m := &fanout.Message{Topic: "t", Position: fanout.Position{Epoch: "e", Seq: 1}, Data: []byte("1")}
	a, b := m.Encode(wire.JSON), m.Encode(wire.JSON)
	if &a[0] != &b[0] {
		t.Fatal("the second Encode encoded again, want the cached bytes")
	}
	if got := string(wire.AppendFrame([]byte("x"), fanout.Frame{Type: fanout.FrameMessage, Message: m})); got != "x"+string(a) {
		t.Fatalf("got %s, want x%s", got, a)
	}
}

func TestAppendFrameUnknownPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("got no panic for an unknown frame type")
		}
	}()
	wire.AppendFrame(nil, fanout.Frame{Type: 99})
}

// wireMsg is a msg frame as a client decodes it.
type wireMsg struct {
	Type   string            `json:"type"`
	Topic  string            `json:"topic"`
	Epoch  string            `json:"epoch"`
	Seq    uint64            `json:"seq"`
	Key    string            `json:"key"`
	Time   int64             `json:"time"`
	Header map[string]string `json:"header"`
	Data   json.RawMessage   `json:"data"`
	Data64 *string           `json:"data64"`
}

// FuzzAppendMessage checks that any message encodes as one line of valid
// JSON in valid UTF-8 from which a client gets the message back: the bytes
// exactly through data64, the same JSON value through data.
func FuzzAppendMessage(f *testing.F) {
	f.Add("stock:42", "ab12", uint64(7), "", []byte(`{"qty":3}`), "", "")
	f.Add("t", "e", uint64(1), "k", []byte{0xff, 0, '\n'}, "traceparent", "00-1")
	f.Add("t", "", uint64(0), "\xff<\u2028>", []byte("{\n\"a\" :\r\n [1,2]}"), "", "")
	f.Add("t", "e\"\\", uint64(1<<63), "\x00\x1f", []byte("\"\xff\""), "\xfe", "\u2029")
	f.Add("t", "e", uint64(2), "", []byte(" 1 "), "", "")
	f.Add("t", "e", uint64(2), "", []byte(""), "", "")
	f.Fuzz(func(t *testing.T, topic, epoch string, seq uint64, key string, data []byte, hk, hv string) {
		m := &fanout.Message{Topic: topic, Position: fanout.Position{Epoch: epoch, Seq: seq}, Key: key, Data: data,
			Time: time.UnixMilli(1700000000000)}
		if hk != "" {
			m.Header = map[string]string{hk: hv}
		}
		b := wire.AppendFrame(nil, fanout.Frame{Type: fanout.FrameMessage, Message: m})
		if bytes.ContainsAny(b, "\n\r") {
			t.Fatalf("frame %q contains a line break", b)
		}
		if !utf8.Valid(b) {
			t.Fatalf("frame %q is not valid UTF-8", b)
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		var w wireMsg
		if err := d.Decode(&w); err != nil {
			t.Fatalf("frame %q: %v", b, err)
		}
		if w.Type != "msg" || w.Seq != seq || w.Time != 1700000000000 {
			t.Fatalf("got %+v", w)
		}
		for _, p := range [][2]string{{w.Topic, topic}, {w.Epoch, epoch}, {w.Key, key}} {
			if utf8.ValidString(p[1]) && p[0] != p[1] {
				t.Fatalf("got %q, want %q", p[0], p[1])
			}
		}
		if hk != "" && utf8.ValidString(hk) && utf8.ValidString(hv) && w.Header[hk] != hv {
			t.Fatalf("got header %v, want %q: %q", w.Header, hk, hv)
		}
		switch {
		case w.Data != nil && w.Data64 != nil:
			t.Fatalf("frame %q has data and data64", b)
		case w.Data64 != nil:
			got, err := base64.StdEncoding.DecodeString(*w.Data64)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("data64 %q: got %q (%v), want %q", *w.Data64, got, err, data)
			}
			if len(data) > 0 && utf8.Valid(data) && json.Valid(data) && !bytes.ContainsAny(data, "\n\r") &&
				len(bytes.TrimSpace(data)) == len(data) {
				t.Fatalf("single-line JSON %q went as data64", data)
			}
		case w.Data != nil:
			// The payload travels byte for byte.
			if !bytes.Equal(w.Data, data) {
				t.Fatalf("data: got %q, want %q", w.Data, data)
			}
		default:
			t.Fatalf("frame %q has no payload", b)
		}
		// Payload, the publishing side, reads back the same bytes.
		p, err := wire.Payload(w.Data, w.Data64)
		if err != nil {
			t.Fatalf("Payload: %v", err)
		}
		if w.Data64 != nil && !bytes.Equal(p, data) {
			t.Fatalf("Payload: got %q, want %q", p, data)
		}
	})
}

// FuzzAppendFrame checks replies, snapshots and close frames with arbitrary
// strings.
func FuzzAppendFrame(f *testing.F) {
	f.Add("1", "stock:42", "forbidden \xff", "reason\n", uint64(3), 4000)
	f.Add("", "", "", "", uint64(0), 1000)
	f.Fuzz(func(t *testing.T, id, topic, errText, reason string, seq uint64, code int) {
		recovered := seq%2 == 0
		frames := []fanout.Frame{
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Topic: topic, Position: &fanout.Position{Epoch: id, Seq: seq}, Recovered: &recovered}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Err: fmt.Errorf("%s: %w", errText, fanout.ErrBadRequest)}},
			{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: topic, Position: fanout.Position{Epoch: id, Seq: seq},
				Items: []*fanout.Message{{Topic: topic, Key: id, Data: []byte(errText)}}}},
			{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseCode(code), Reason: reason, Reconnect: recovered}},
		}
		for _, fr := range frames {
			b := wire.AppendFrame(nil, fr)
			if bytes.ContainsAny(b, "\n\r") || !utf8.Valid(b) || !json.Valid(b) {
				t.Fatalf("frame %q: not one line of valid JSON in UTF-8", b)
			}
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			if fr.Type == fanout.FrameReply && fr.Reply.Err != nil {
				e := v["error"].(map[string]any)
				if e["code"] != "bad_request" {
					t.Fatalf("got code %v, want bad_request", e["code"])
				}
				if validUTF8(errText) && e["message"] != fr.Reply.Err.Error() {
					t.Fatalf("got message %q, want %q", e["message"], fr.Reply.Err.Error())
				}
			}
			if fr.Type == fanout.FrameClose && validUTF8(reason) && v["reason"] != reason {
				t.Fatalf("got reason %q, want %q", v["reason"], reason)
			}
		}
	})
}

func TestPayloadMatchesAppendData(t *testing.T) {
	t.Parallel()
	// What a client publishes as data comes out as the same data.
	for _, in := range []string{`{"a":1}`, `"s"`, `null`, `[1,2]`, `1.5e3`} {
		p, err := wire.Payload(json.RawMessage(in), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(wire.AppendData(nil, p)), `,"data":`+in; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if _, err := wire.Payload(nil, nil); !errors.Is(err, fanout.ErrBadRequest) {
		t.Fatalf("got %v, want ErrBadRequest", err)
	}
}
