package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gofanout/fanout"
)

// followTokens issues and checks the example's two kinds of tokens, both
// "<id>.<mac>" with an HMAC-SHA256 under the server's secret, so that
// replicas that share the secret accept each other's tokens:
//
//   - a user's token, "u-<hex>.<mac>": the page's user (see [Server.token]),
//     the principal of its connections, whose WebSocket sessions the server
//     subscribes to the sagas the user starts;
//   - a booking's token, "<tx>.<mac>" (with -secret only): follows that one
//     booking, for clients that are not its user (follow, a shared link).
//
// A token is the bearer credential of every transport: an Authorization
// header (gRPC, gRPC-Web, Connect, POST /bookings), the WebSocket's first
// message, or the access_token cookie of SSE; never a URL.
type followTokens struct {
	secret []byte
	// strict: -secret was given. Every client needs a token, POST
	// /bookings answers a booking's token, and a principal subscribes only
	// to its own booking (a booking's token) or to the bookings it started
	// (a user's token, while the saga runs: owner). Otherwise anonymous
	// clients follow any booking, and the secret is random, for the user
	// tokens of this process only.
	strict bool
	// owner returns the user who started transaction tx, "" when unknown.
	owner func(tx string) string
}

// userPrefix starts every user's ID, never a transaction's (hex).
const userPrefix = "u-"

// issue returns the token that follows transaction tx.
func (f followTokens) issue(tx string) string {
	return tx + "." + f.mac(tx)
}

// newUser returns a new user's ID and token.
func (f followTokens) newUser() (id, token string) {
	var b [8]byte
	rand.Read(b[:])
	id = userPrefix + hex.EncodeToString(b[:])
	return id, id + "." + f.mac("user:"+id)
}

func (f followTokens) mac(s string) string {
	m := hmac.New(sha256.New, f.secret)
	m.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var (
	errNoToken  = errors.New("a booking's token is needed")
	errBadToken = errors.New("not a token of this server")
	errNotYours = errors.New("the token follows another booking")
)

// parse returns the principal ID of a token: a user's or a transaction's.
func (f followTokens) parse(token string) (string, error) {
	id, mac, ok := strings.Cut(token, ".")
	if !ok || len(id) > 64 {
		return "", errBadToken
	}
	signed := id
	if strings.HasPrefix(id, userPrefix) {
		signed = "user:" + id
	}
	if !hmac.Equal([]byte(mac), []byte(f.mac(signed))) {
		return "", errBadToken
	}
	return id, nil
}

// authenticate makes the token's user or transaction the principal; a
// client without a token is anonymous, unless the server is strict.
func (f followTokens) authenticate(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
	if c.Token == "" {
		if f.strict {
			return fanout.Principal{}, errNoToken
		}
		return fanout.Principal{}, nil
	}
	id, err := f.parse(c.Token)
	if err != nil {
		return fanout.Principal{}, err
	}
	return fanout.Principal{ID: id}, nil
}

// authorize, on a strict server, lets a booking's token subscribe to its
// own booking's topic and read its presence, and a user the topics of the
// bookings the user started; clients never publish.
func (f followTokens) authorize(_ context.Context, p fanout.Principal, topic string, a fanout.Action) error {
	if a != fanout.ActionSubscribe && a != fanout.ActionPresence {
		return errNotYours
	}
	if topic == Topic(p.ID) {
		return nil
	}
	if tx, ok := strings.CutPrefix(topic, Topic("")); ok && strings.HasPrefix(p.ID, userPrefix) && f.owner != nil && f.owner(tx) == p.ID {
		return nil
	}
	return errNotYours
}

// userCookie keeps the page's user, as the user's token: HttpOnly, so
// that the page's scripts never read it; they ask GET /token.
const userCookie = "saga_user"

// user returns the user who sent r (its Authorization header, else its
// user cookie), "" for none.
func (f followTokens) user(r *http.Request) string {
	token := ""
	if c := fanout.CredentialsFromHeader(r.Header, ""); c != nil && c.Token != "" {
		token = c.Token
	} else if ck, err := r.Cookie(userCookie); err == nil {
		token = ck.Value
	}
	id, err := f.parse(token)
	if err != nil || !strings.HasPrefix(id, userPrefix) {
		return ""
	}
	return id
}

// serveToken answers GET /token: {"user": …, "token": …}, the user of the
// user cookie, or a new user (and the cookie) when it has none. The page's
// client calls it for its token; it answers no-store.
func (f followTokens) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		fanout.WriteError(w, http.StatusMethodNotAllowed, fanout.ErrBadRequest)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	var id, token string
	if ck, err := r.Cookie(userCookie); err == nil {
		if uid, err := f.parse(ck.Value); err == nil && strings.HasPrefix(uid, userPrefix) {
			id, token = uid, ck.Value
		}
	}
	if id == "" {
		id, token = f.newUser()
		http.SetCookie(w, &http.Cookie{
			Name: userCookie, Value: token, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		User  string `json:"user"`
		Token string `json:"token"`
	}{id, token})
}
