package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/gofanout/fanout"
)

// followTokens issues and checks the tokens that let a client follow one
// booking: "<tx>.<mac>", where mac is an HMAC-SHA256 of tx under the
// server's secret. Replicas that share the secret accept each other's
// tokens. A token is the bearer credential of every transport (an
// Authorization header, or ?token= where a browser cannot set headers).
type followTokens struct{ secret []byte }

// issue returns the token that follows transaction tx.
func (f followTokens) issue(tx string) string {
	return tx + "." + f.mac(tx)
}

func (f followTokens) mac(tx string) string {
	m := hmac.New(sha256.New, f.secret)
	m.Write([]byte(tx))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var (
	errNoToken  = errors.New("a booking's token is needed")
	errBadToken = errors.New("not a token of this server")
	errNotYours = errors.New("the token follows another booking")
)

// authenticate makes the token's transaction the principal.
func (f followTokens) authenticate(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
	if c.Token == "" {
		return fanout.Principal{}, errNoToken
	}
	tx, mac, ok := strings.Cut(c.Token, ".")
	if !ok || len(tx) > 64 || !hmac.Equal([]byte(mac), []byte(f.mac(tx))) {
		return fanout.Principal{}, errBadToken
	}
	return fanout.Principal{ID: tx}, nil
}

// authorize lets a principal subscribe to its own booking's topic only;
// clients never publish.
func (f followTokens) authorize(_ context.Context, p fanout.Principal, topic string, a fanout.Action) error {
	if a != fanout.ActionSubscribe || topic != Topic(p.ID) {
		return errNotYours
	}
	return nil
}
