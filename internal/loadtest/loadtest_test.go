package loadtest

import (
	"testing"
	"time"
)

func TestStamps(t *testing.T) {
	at := time.Unix(1765000000, 123456789)
	p := Stamp(at)
	if len(p) != PayloadSize {
		t.Fatalf("payload of %d bytes, want %d", len(p), PayloadSize)
	}
	msg := []byte(`{"type":"msg","topic":"bench","data":` + string(p) + "}\n" + `{"type":"msg","data":` + string(p) + `,"x":"T12"}`)
	var got []int64
	if n := Stamps(msg, func(ns int64) { got = append(got, ns) }); n != 2 || len(got) != 2 || got[0] != at.UnixNano() || got[1] != at.UnixNano() {
		t.Fatalf("got %d stamps %v, want 2 of %d", n, got, at.UnixNano())
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 5000}, {0.99, 9900}, {0.999, 9990}, {1, 10000}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -0.04 || d > 0.04 {
			t.Errorf("quantile %v: got %d µs, want %d within 4 %%", c.q, got, c.want)
		}
	}
	for us := int64(0); us < 1<<20; us = us*5/4 + 1 {
		i := bucket(us)
		if lower(i) > us || lower(i+1) <= us {
			t.Fatalf("%d µs in bucket %d of [%d, %d)", us, i, lower(i), lower(i+1))
		}
	}
	r, err := ParseResult(NewResult(&h, 3, 2, 1).String() + "\n")
	if err != nil || r.Received != 3 || r.Messages != 2 || r.Closed != 1 || r.Max != 10000 {
		t.Fatalf("got %+v, %v", r, err)
	}
}
