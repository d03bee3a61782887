package redis_test

import (
	"bytes"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
)

func sameRecord(a, b *fanout.Message) bool {
	return a.Topic == b.Topic && a.Position == b.Position && a.Key == b.Key &&
		bytes.Equal(a.Data, b.Data) && maps.Equal(a.Header, b.Header) &&
		a.Time.Equal(b.Time) && a.Time.IsZero() == b.Time.IsZero()
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range []*fanout.Message{
		{Topic: "t", Position: fanout.Position{Epoch: "e", Seq: 1}, Data: []byte{}},
		{Topic: "t", Position: fanout.Position{Epoch: "abc", Seq: 1 << 60}, Key: "k k", Data: []byte("\x00 \xff"),
			Time: time.Unix(1700000000, 123456789), Header: map[string]string{"a": "", "": "b"}},
		{Topic: "t", Position: fanout.Position{Epoch: "e", Seq: 7}, Data: bytes.Repeat([]byte("x"), 70000), Time: time.Unix(-5, 3)},
	} {
		got, err := fanoutredis.DecodeRecord("t", fanoutredis.AppendRecord(nil, m))
		if err != nil {
			t.Fatalf("decode %v: %v", m.Position, err)
		}
		if !sameRecord(got, m) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	t.Parallel()
	for _, rec := range []string{"", "e", "e 1", "e 0 \x00\x00\x00", "e x \x00\x00\x00", "e 1 \x02\x00\x00",
		"e 1 \x00\x05ab", "e 1 \x01\x00", "e 1 \x00\x00\x09", "e 1 \x00\x00\x01\x01a\x05"} {
		if m, err := fanoutredis.DecodeRecord("t", []byte(rec)); err == nil {
			t.Errorf("decode %q: got %+v, want an error", rec, m)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte("e 1 \x00\x00\x00"))
	f.Add([]byte("abc 42 \x01\x01k\x80\x80\x80\x80\x10\x01\x01a\x01bdata"))
	f.Add([]byte("e 18446744073709551615 \x00\x00\x02\x00\x00\x00\x00"))
	f.Add([]byte("e 1 \x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, rec []byte) {
		m, err := fanoutredis.DecodeRecord("t", rec)
		if err != nil {
			return
		}
		again, err := fanoutredis.DecodeRecord("t", fanoutredis.AppendRecord(nil, m))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !sameRecord(again, m) {
			t.Fatalf("re-encoded record: got %+v, want %+v", again, m)
		}
	})
}

func FuzzRecordRoundTrip(f *testing.F) {
	f.Add("e", uint64(1), "", []byte(""), "", "", int64(0), false)
	f.Add("x1y", uint64(99), "sku 1", []byte("\x00\xff"), "traceparent", "00-1", int64(1700000000123456789), true)
	f.Fuzz(func(t *testing.T, epoch string, seq uint64, key string, data []byte, hk, hv string, ns int64, hasTime bool) {
		if strings.Contains(epoch, " ") || seq == 0 {
			return
		}
		m := &fanout.Message{Topic: "t", Position: fanout.Position{Epoch: epoch, Seq: seq}, Key: key, Data: data}
		if data == nil {
			m.Data = []byte{}
		}
		if hasTime {
			m.Time = time.Unix(0, ns)
		}
		if hk != "" || hv != "" {
			m.Header = map[string]string{hk: hv}
		}
		got, err := fanoutredis.DecodeRecord("t", fanoutredis.AppendRecord(nil, m))
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !sameRecord(got, m) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	})
}
