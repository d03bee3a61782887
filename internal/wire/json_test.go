package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/payload"
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
			`{"type":"reply","id":"4","ok":false,"error":{"code":"forbidden","message":"x: forbidden"}}`},
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

// Fuzz inputs longer than these explore nothing that shorter ones do not
// (the encoders work byte by byte), and the fuzzer's minimization of each
// new input costs time quadratic in its length: bounding them keeps the
// targets fast.
const (
	maxFuzzString = 64
	maxFuzzData   = 256
)

func fuzzTooLong(data []byte, ss ...string) bool {
	if len(data) > maxFuzzData {
		return true
	}
	for _, s := range ss {
		if len(s) > maxFuzzString {
			return true
		}
	}
	return false
}

// FuzzAppendMessage checks that any message encodes as one line of valid
// JSON in valid UTF-8 from which a client gets the message back: the bytes
// exactly, through data or data64.
func FuzzAppendMessage(f *testing.F) {
	f.Add("stock:42", "ab12", uint64(7), "", []byte(`{"qty":3}`), "", "")
	f.Add("t", "e", uint64(1), "k", []byte{0xff, 0, '\n'}, "traceparent", "00-1")
	f.Add("t", "", uint64(0), "\xff<\u2028>", []byte("{\n\"a\" :\r\n [1,2]}"), "", "")
	f.Add("t", "e\"\\", uint64(1<<63), "\x00\x1f", []byte("\"\xff\""), "\xfe", "\u2029")
	f.Add("t", "e", uint64(2), "", []byte(" 1 "), "", "")
	f.Add("t", "e", uint64(2), "", []byte(""), "", "")
	f.Fuzz(func(t *testing.T, topic, epoch string, seq uint64, key string, data []byte, hk, hv string) {
		if fuzzTooLong(data, topic, epoch, key, hk, hv) {
			t.Skip()
		}
		m := &fanout.Message{Topic: topic, Position: fanout.Position{Epoch: epoch, Seq: seq}, Key: key, Data: data,
			Time: time.UnixMilli(1700000000000)}
		if hk != "" {
			m.Header = map[string]string{hk: hv}
		}
		b := wire.AppendFrame(nil, fanout.Frame{Type: fanout.FrameMessage, Message: m})
		if bytes.ContainsAny(b, "\n\r") || !utf8.Valid(b) || !json.Valid(b) {
			t.Fatalf("frame %q: not one line of valid JSON in UTF-8", b)
		}
		if topic == "" {
			return // the decoder refuses a msg without a topic; the hub never sends one
		}
		fr, err := wire.ParseFrame(b)
		if err != nil {
			t.Fatalf("frame %q: %v", b, err)
		}
		got := fr.Message
		if fr.Type != wire.FrameMsg || got.Position.Seq != seq || !got.Time.Equal(m.Time) {
			t.Fatalf("got %+v", fr)
		}
		for _, p := range [][2]string{{got.Topic, topic}, {got.Position.Epoch, epoch}, {got.Key, key}} {
			if utf8.ValidString(p[1]) && p[0] != p[1] {
				t.Fatalf("got %q, want %q", p[0], p[1])
			}
		}
		if hk != "" && utf8.ValidString(hk) && utf8.ValidString(hv) && got.Header[hk] != hv {
			t.Fatalf("got header %v, want %q: %q", got.Header, hk, hv)
		}
		if !bytes.Equal(got.Data, data) {
			t.Fatalf("data: got %q, want %q", got.Data, data)
		}
		if payload.IsFrameData(data) == bytes.Contains(b, []byte(`"data64":`)) {
			t.Fatalf("frame %q: data %q in the wrong field", b, data)
		}
	})
}

// FuzzFrameRoundTrip encodes every frame type as the server does, decodes
// it as a client does, and encodes the result again: the same bytes.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add("1", "stock:42", "forbidden \xff", "reason\n", uint64(3), 4000, int64(1700000000123), []byte(`{"a":1}`), "k", "tp", "00")
	f.Add("", "t", "", "", uint64(0), 1000, int64(0), []byte{0xff}, "", "", "")
	f.Add("\u2028", "a/b", "<&>", "\x00", uint64(1<<63), 1, int64(-1), []byte(" 1"), "\xfe", "\xff", "")
	f.Fuzz(func(t *testing.T, id, topic, errText, reason string, seq uint64, code int, ms int64, data []byte, key, hk, hv string) {
		if fuzzTooLong(data, id, topic, errText, reason, key, hk, hv) {
			t.Skip()
		}
		if topic == "" {
			topic = "t" // the hub never sends a msg or snapshot without one
		}
		recovered := seq%2 == 0
		pos := fanout.Position{Epoch: id, Seq: seq}
		m := &fanout.Message{Topic: topic, Position: pos, Key: key, Data: data, Time: time.UnixMilli(ms)}
		if hk != "" {
			m.Header = map[string]string{hk: hv}
		}
		m2 := &fanout.Message{Topic: topic, Position: fanout.Position{Epoch: id, Seq: seq + 1}, Data: []byte(errText)}
		frames := []fanout.Frame{
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Topic: topic, Position: &pos, Recovered: &recovered}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Topic: reason, Err: fmt.Errorf("%s: %w", errText, fanout.ErrBadRequest)}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Err: errors.New(errText)}},
			{Type: fanout.FrameMessage, Message: m},
			{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: topic, Position: pos, Items: []*fanout.Message{m, m2}}},
			{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: topic, Position: pos}},
			{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseCode(code & 0xffff), Reason: reason, Reconnect: recovered}},
			{Type: fanout.FrameSubscribed, Reply: &fanout.Reply{Topic: topic, Position: &pos, Snapshot: recovered}},
			{Type: fanout.FrameUnsubscribed, Reply: &fanout.Reply{Topic: topic}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, ExpiresAt: time.UnixMilli(ms)}},
			{Type: fanout.FrameExpiry, Expiry: &fanout.ExpiryFrame{ExpiresAt: time.UnixMilli(ms)}},
		}
		var all []byte
		for i, fr := range frames {
			b := wire.AppendFrame(nil, fr)
			if bytes.ContainsAny(b, "\n\r") || !utf8.Valid(b) || !json.Valid(b) {
				t.Fatalf("frame %q: not one line of valid JSON in UTF-8", b)
			}
			d, err := wire.ParseFrame(b)
			if err != nil {
				t.Fatalf("frame %q: %v", b, err)
			}
			if b2 := d.Append(nil); !bytes.Equal(b, b2) {
				t.Fatalf("encoded %s\nthen    %s", b, b2)
			}
			if i > 0 {
				all = append(all, '\n')
			}
			all = append(all, b...)
		}
		fs, err := wire.ParseFrames(nil, all, true)
		if err != nil || len(fs) != len(frames) {
			t.Fatalf("batch: got %d frames, %v; want %d", len(fs), err, len(frames))
		}
	})
}

// FuzzParseFrame feeds the frame decoder arbitrary bytes: it never panics,
// fails only with ErrMalformed, and what it accepts encodes to a frame that
// decodes the same.
func FuzzParseFrame(f *testing.F) {
	f.Add([]byte(`{"type":"msg","topic":"t","epoch":"e","seq":1,"data":{"a":1}}`))
	f.Add([]byte(`{"type":"reply","id":"1","ok":false,"error":{"code":"forbidden","message":"no"}}`))
	f.Add([]byte(`{"type":"snapshot","topic":"t","position":{"epoch":"e","seq":2},"items":[{"type":"msg","topic":"t","seq":1,"data64":""}]}`))
	f.Add([]byte(`{"type":"close","code":4000,"reason":"x","reconnect":true}`))
	f.Add([]byte(`{"type":"msg","type":"msg"}`))
	f.Add([]byte(`{"type":"subscribed","topic":"t","position":{"epoch":"e","seq":2},"snapshot":true}`))
	f.Add([]byte(`{"type":"unsubscribed","topic":"t"}`))
	f.Add([]byte(`{"type":"expiry","expires":1700000000000}`))
	f.Add([]byte(`{"type":"reply","id":"1","ok":true,"expires":1700000000000}`))
	f.Add([]byte(`{"type":"join","topic":"room","client":{"principal":"alice","session":"ab:1","info":{"name":"Alice"}}}`))
	f.Add([]byte(`{"type":"leave","topic":"room","client":{"principal":"","session":"ab:2"}}`))
	f.Add([]byte(`{"type":"reply","id":"1","ok":true,"topic":"room","presence":[{"principal":"a","session":"s","info":[1, 2]}]}`))
	f.Add([]byte(`{"type":"reply","id":"2","ok":true,"topic":"room","count":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4*maxFuzzData {
			t.Skip()
		}
		fr, err := wire.ParseFrame(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
			return
		}
		enc := fr.Append(nil)
		fr2, err := wire.ParseFrame(enc)
		if err != nil {
			t.Fatalf("re-encoded %s: %v", enc, err)
		}
		if enc2 := fr2.Append(nil); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoded %s, then %s", enc, enc2)
		}
	})
}

// TestServerSubscriptionFrames pins the frames of server-side
// subscriptions and what the decoder refuses in them.
func TestServerSubscriptionFrames(t *testing.T) {
	t.Parallel()
	pos := &fanout.Position{Epoch: "e", Seq: 7}
	for _, tc := range []struct {
		f    fanout.Frame
		want string
	}{
		{fanout.Frame{Type: fanout.FrameSubscribed, Reply: &fanout.Reply{Topic: "saga/1", Position: pos}},
			`{"type":"subscribed","topic":"saga/1","position":{"epoch":"e","seq":7}}`},
		{fanout.Frame{Type: fanout.FrameSubscribed, Reply: &fanout.Reply{Topic: "saga/1", Position: pos, Snapshot: true}},
			`{"type":"subscribed","topic":"saga/1","position":{"epoch":"e","seq":7},"snapshot":true}`},
		{fanout.Frame{Type: fanout.FrameUnsubscribed, Reply: &fanout.Reply{Topic: "saga/1"}},
			`{"type":"unsubscribed","topic":"saga/1"}`},
	} {
		if got := string(wire.AppendFrame(nil, tc.f)); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
	for _, bad := range []string{
		`{"type":"subscribed","topic":"t"}`,
		`{"type":"subscribed","position":{"seq":1}}`,
		`{"type":"subscribed","topic":"t","position":{"seq":1},"snapshot":1}`,
		`{"type":"unsubscribed"}`,
		`{"type":"unsubscribed","topic":"t","position":{"seq":1}}`,
		`{"type":"unsubscribed","topic":"t","snapshot":true}`,
	} {
		if _, err := wire.ParseFrame([]byte(bad)); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", bad, err)
		}
	}
}
