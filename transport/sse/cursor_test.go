package sse_test

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		topics []string
		pos    map[string]fanout.Position
	}{
		{[]string{"a"}, map[string]fanout.Position{"a": {Epoch: "e1", Seq: 0}}},
		{[]string{"a"}, map[string]fanout.Position{}},
		{[]string{"a", "b", "c"}, map[string]fanout.Position{"a": {Epoch: "e1", Seq: 1 << 62}, "c": {Epoch: "", Seq: 7}}},
		{[]string{"z", "y", "x", "y"}, map[string]fanout.Position{"x": {Epoch: "e1", Seq: 3}, "y": {Epoch: "e2", Seq: 4}, "z": {Epoch: "e1", Seq: 5}}},
		{[]string{"t"}, map[string]fanout.Position{"t": {Epoch: strings.Repeat("é", 127), Seq: 1}}},
	} {
		c := sse.EncodeCursor(tc.topics, tc.pos)
		if strings.ContainsAny(c, "\r\n\x00+/=") {
			t.Fatalf("cursor %q: not an unpadded base64url id field", c)
		}
		got, err := sse.DecodeCursor(c, tc.topics)
		if err != nil {
			t.Fatalf("decode %q: %v", c, err)
		}
		if !maps.Equal(got, tc.pos) {
			t.Fatalf("got %v, want %v", got, tc.pos)
		}
		// The order of the topics does not matter; their set does.
		rev := append([]string(nil), tc.topics...)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		if got, err := sse.DecodeCursor(c, rev); err != nil || !maps.Equal(got, tc.pos) {
			t.Fatalf("reversed topics: got %v, %v; want %v", got, err, tc.pos)
		}
		if _, err := sse.DecodeCursor(c, append(tc.topics, "extra")); !errors.Is(err, sse.ErrInvalidCursor) {
			t.Fatalf("another topic set: got %v, want ErrInvalidCursor", err)
		}
	}
}

// TestCursorCorruption changes every character of a cursor in turn: each
// change is rejected, or (when it only touches the unused low bits of the
// last base64 character) decodes to the same positions.
func TestCursorCorruption(t *testing.T) {
	t.Parallel()
	topics := []string{"a", "b", "c"}
	pos := map[string]fanout.Position{"a": {Epoch: "0123456789ab", Seq: 42}, "b": {Epoch: "ffff", Seq: 1000000}}
	c := sse.EncodeCursor(topics, pos)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range c {
		for _, r := range alphabet + "+/=. " {
			if byte(r) == c[i] {
				continue
			}
			bad := c[:i] + string(r) + c[i+1:]
			got, err := sse.DecodeCursor(bad, topics)
			if err == nil && !maps.Equal(got, pos) {
				t.Fatalf("cursor %q (changed at %d) decoded to %v, want an error", bad, i, got)
			}
			if err != nil && !errors.Is(err, sse.ErrInvalidCursor) {
				t.Fatalf("got %v, want ErrInvalidCursor", err)
			}
		}
	}
	for n := range len(c) {
		if _, err := sse.DecodeCursor(c[:n], topics); err == nil {
			t.Fatalf("truncated to %d: accepted", n)
		}
	}
}

// FuzzDecodeCursor feeds the decoder arbitrary cursors: it never panics,
// and whatever it accepts encodes to a cursor that decodes the same.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(sse.EncodeCursor([]string{"a", "b"}, map[string]fanout.Position{"a": {Epoch: "e", Seq: 9}}), "a,b")
	f.Add(sse.EncodeCursor([]string{"x"}, map[string]fanout.Position{"x": {Epoch: "", Seq: 0}}), "x")
	f.Add(sse.EncodeCursor([]string{"p", "q", "r"}, map[string]fanout.Position{"p": {Epoch: "1", Seq: 1}, "q": {Epoch: "2", Seq: 2}, "r": {Epoch: "1", Seq: 3}}), "p,q,r")
	f.Add(cursorV2([]string{"a", "b"}, map[string]fanout.Position{"a": {Epoch: "e", Seq: 9}, "b": {Epoch: "e", Seq: 2}}, map[string]bool{"b": true}, 0), "a,b")
	f.Add("AQAAAAAA", "a")
	f.Add("", "a")
	f.Add("AP____8P", "t")
	f.Add("AQ", "")
	f.Fuzz(func(t *testing.T, cursor, topicList string) {
		topics := strings.Split(topicList, ",")
		got, err := sse.DecodeCursor(cursor, topics)
		if err != nil {
			if !errors.Is(err, sse.ErrInvalidCursor) {
				t.Fatalf("got %v, want ErrInvalidCursor", err)
			}
			return
		}
		for tp := range got {
			found := false
			for _, x := range topics {
				found = found || x == tp
			}
			if !found {
				t.Fatalf("decoded a position for %q, not a topic of %q", tp, topicList)
			}
		}
		again, err := sse.DecodeCursor(sse.EncodeCursor(topics, got), topics)
		if err != nil || !maps.Equal(again, got) {
			t.Fatalf("re-encoded: got %v, %v; want %v", again, err, got)
		}
	})
}

// FuzzCursorRoundTrip encodes arbitrary positions and decodes them back.
func FuzzCursorRoundTrip(f *testing.F) {
	f.Add("a,b,c", "e1", uint64(5), "e2", uint64(0), uint8(3))
	f.Add("t", "", uint64(1<<63), "", uint64(1), uint8(1))
	f.Fuzz(func(t *testing.T, topicList, e1 string, s1 uint64, e2 string, s2 uint64, mask uint8) {
		if len(e1) > 1024 || len(e2) > 1024 {
			t.Skip("epochs are at most 1024 bytes")
		}
		topics := strings.Split(topicList, ",")
		pos := map[string]fanout.Position{}
		for i, tp := range topics {
			if mask&(1<<(i%8)) == 0 {
				continue
			}
			if i%2 == 0 {
				pos[tp] = fanout.Position{Epoch: e1, Seq: s1 + uint64(i)}
			} else {
				pos[tp] = fanout.Position{Epoch: e2, Seq: s2}
			}
		}
		c := sse.EncodeCursor(topics, pos)
		got, err := sse.DecodeCursor(c, topics)
		if err != nil {
			t.Fatalf("decode %q: %v", c, err)
		}
		if !maps.Equal(got, pos) {
			t.Fatalf("got %v, want %v", got, pos)
		}
	})
}
