package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
)

// FuzzFollowTokens checks the token parser with any input: it never
// panics, and accepts exactly the tokens it issued, as their transaction
// or user.
func FuzzFollowTokens(f *testing.F) {
	ft := followTokens{secret: []byte("fuzz"), strict: true}
	_, user := ft.newUser()
	f.Add(user)
	f.Add(ft.issue("3f9a0c1b2d4e5f60"))
	f.Add("3f9a0c1b2d4e5f60.")
	f.Add(".")
	f.Add("")
	f.Add(strings.Repeat("a", 70) + "." + ft.mac(strings.Repeat("a", 70)))
	f.Fuzz(func(t *testing.T, token string) {
		p, err := ft.authenticate(context.Background(), &fanout.Credentials{Token: token})
		if err != nil {
			if !errors.Is(err, errNoToken) && !errors.Is(err, errBadToken) {
				t.Fatalf("got error %v, want errNoToken or errBadToken", err)
			}
			return
		}
		want := ft.issue(p.ID)
		if strings.HasPrefix(p.ID, userPrefix) {
			want = p.ID + "." + ft.mac("user:"+p.ID)
		}
		if token != want {
			t.Fatalf("accepted %q as %q, whose token is %q", token, p.ID, want)
		}
		if err := ft.authorize(context.Background(), p, "saga."+p.ID, fanout.ActionSubscribe); err != nil {
			t.Fatalf("the token's own topic: %v", err)
		}
		if err := ft.authorize(context.Background(), p, "saga."+p.ID, fanout.ActionPublish); err == nil {
			t.Fatal("a follower may publish")
		}
	})
}
