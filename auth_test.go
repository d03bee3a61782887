package fanout_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
)

func TestCredentialsFromHeader(t *testing.T) {
	t.Parallel()
	for a, want := range map[string]string{
		"Bearer abc":     "abc",
		"bearer abc":     "abc",
		"BEARER abc":     "abc",
		"BeArEr abc":     "abc",
		"Bearer   abc  ": "abc",
		"Bearer":         "",
		"Bearer ":        "",
		"Bearerabc":      "",
		"Basic abc":      "",
		"Bearer-x abc":   "",
		"":               "",
	} {
		c := fanout.CredentialsFromHeader(http.Header{"Authorization": {a}}, "grpc")
		if c.Token != want || c.Transport != "grpc" {
			t.Errorf("Authorization %q: got token %q (transport %q), want %q", a, c.Token, c.Transport, want)
		}
	}
}

func FuzzCredentialsFromHeader(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bEARER  x ", "Basic x", "", "Bearer", " Bearer x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, a string) {
		tok := fanout.CredentialsFromHeader(http.Header{"Authorization": {a}}, "http").Token
		if tok == "" {
			return
		}
		scheme, rest, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(rest) != tok {
			t.Fatalf("Authorization %q: got token %q, want one only after a Bearer scheme", a, tok)
		}
	})
}
