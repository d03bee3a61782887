package fanout

import (
	"errors"
	"strings"
	"testing"
)

// TestPrincipalIndexBounded: the index by principal forgets a principal
// with its last session.
func TestPrincipalIndexBounded(t *testing.T) {
	h, err := NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var all []*Session
	for i := range 100 {
		for range 2 {
			s, err := h.NewSession(Principal{ID: strings.Repeat("u", i+1)})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, s)
		}
	}
	anon, _ := h.NewSession(Principal{})
	all = append(all, anon)
	if n := len(h.byPrincipal); n != 100 {
		t.Fatalf("%d principals indexed, want 100", n)
	}
	for _, s := range all {
		s.Close(CloseNormal, "")
	}
	if n := len(h.byPrincipal); n != 0 {
		t.Fatalf("%d principals left in the index after every session closed", n)
	}
}

func TestParseControl(t *testing.T) {
	for _, bad := range []string{
		``, `null`, `[]`, `{}`,
		`{"op":"disconnect","principal":""}`,
		`{"op":"disconnect","principal":"a","code":4007,"x":1}`,
		`{"op":"disconnect","principal":"a","code":1000}`,
		`{"op":"disconnect","principal":"a","code":4007,"topic":"t"}`,
		`{"op":"subscribe","principal":"a","topic":"a b"}`,
		`{"op":"unsubscribe","principal":"a","topic":"t","snapshot":true}`,
		`{"op":"subscribe","principal":"a","topic":"t"} {}`,
		`{"op":"jump","principal":"a"}`,
		`{"op":"subscribe","principal":"a","topic":"t"` + strings.Repeat(" ", MaxControlBytes) + `}`,
	} {
		if _, err := parseControl([]byte(bad)); err == nil {
			t.Errorf("%.80s: accepted", bad)
		}
	}
	m, err := parseControl([]byte(`{"op":"subscribe","origin":"n1","principal":"alice","topic":"saga/1","snapshot":true}`))
	if err != nil || m != (controlMsg{Op: opSubscribe, Origin: "n1", Principal: "alice", Topic: "saga/1", Snapshot: true}) {
		t.Fatalf("got %+v, %v", m, err)
	}
}

// FuzzParseControl: the control decoder never panics, and what it accepts
// encodes to a message that decodes the same.
func FuzzParseControl(f *testing.F) {
	f.Add([]byte(`{"op":"disconnect","origin":"n","principal":"alice","code":4007,"reason":"locked"}`))
	f.Add([]byte(`{"op":"subscribe","origin":"n","principal":"alice","topic":"saga/1","snapshot":true}`))
	f.Add([]byte(`{"op":"unsubscribe","principal":"\u00e9","topic":"t"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseControl(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("got %v, want a bad request", err)
			}
			return
		}
		enc, err := encodeControl(m)
		if errors.Is(err, ErrTooLarge) {
			return // JSON escapes (of "<", say) made it longer than what came
		}
		if err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
		m2, err := parseControl(enc)
		if err != nil || m2 != m {
			t.Fatalf("%s: got %+v, %v; want %+v", enc, m2, err, m)
		}
	})
}
