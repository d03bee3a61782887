package nats_test

import (
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
)

func TestEscapeTopic(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ topic, token string }{
		{"orders", "orders"},
		{"orders.eu", "orders~2Eeu"},
		{"a.b.c", "a~2Eb~2Ec"},
		{"user:42/cart@eu=1+2-x_y", "user:42/cart@eu=1+2-x_y"},
		{"*>~ \t", "~2A~3E~7E~20~09"},
	} {
		if got := fnats.EscapeTopic(c.topic); got != c.token {
			t.Errorf("escape %q: got %q, want %q", c.topic, got, c.token)
		}
		if got, err := fnats.UnescapeTopic(c.token); err != nil || got != c.topic {
			t.Errorf("unescape %q: got %q, %v; want %q", c.token, got, err, c.topic)
		}
	}
	for _, bad := range []string{"a.b", "~", "~2", "~2G", "~41", "a b", "x~zz"} {
		if got, err := fnats.UnescapeTopic(bad); err == nil {
			t.Errorf("unescape %q: got %q, want an error", bad, got)
		}
	}
}

// FuzzTopicSubject checks that every topic maps to one valid subject token
// and back, and that distinct topics get distinct tokens.
func FuzzTopicSubject(f *testing.F) {
	for _, s := range []string{"a", "orders.eu", "a..b", "~7E", "x~2Ey", "*", ">", "a b", "\x00\xff", strings.Repeat(".", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		tok := fnats.EscapeTopic(topic)
		if strings.ContainsAny(tok, ".*> \t\r\n") || (topic != "" && tok == "") {
			t.Fatalf("escape %q: got %q, not one subject token", topic, tok)
		}
		back, err := fnats.UnescapeTopic(tok)
		if err != nil || back != topic {
			t.Fatalf("unescape(escape(%q)) = %q, %v; want the topic", topic, back, err)
		}
		if fanout.ValidateTopic(topic) == nil && strings.Contains(tok, "~") != strings.Contains(topic, ".") {
			t.Fatalf("valid topic %q: got token %q, want only dots escaped", topic, tok)
		}
		// Any token unescapeTopic accepts is the escape of what it returns,
		// so two topics never share a token.
		if got, err := fnats.UnescapeTopic(topic); err == nil && fnats.EscapeTopic(got) != topic {
			t.Fatalf("token %q unescapes to %q, which escapes to %q", topic, got, fnats.EscapeTopic(got))
		}
		if k := fnats.KeyToken(topic); topic != "" && (k == "" || strings.ContainsAny(k, ".*> \t\r\n")) {
			t.Fatalf("key token of %q: got %q, not one subject token", topic, k)
		}
	})
}
