package fanout

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Principal is who a session or a publisher acts as, as established by the
// authenticator.
//
// It marshals to JSON as {"id","data","info","expires_at"}, without data
// and info when they are empty and without expires_at when it is zero.
type Principal struct {
	// ID identifies the principal, for instance a user or service name.
	// Empty means anonymous.
	ID string `json:"id"`
	// Data is whatever the authenticator wants the authorizer to see
	// (claims, roles). The hub never reads it.
	Data any `json:"data,omitempty"`
	// ExpiresAt is when the credentials stop being valid; zero means never.
	// A session whose principal expires is closed with [CloseUnauthorized]
	// at that time, unless the client refreshed its credentials before
	// (see [Session.Refresh]); an authenticator that returns a time already
	// past refuses the credentials.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Info is what other clients see of the principal in presence and in
	// join and leave frames: a JSON value (a display name, an avatar), at
	// most [MaxClientInfo] bytes; a longer one is left out. Empty means
	// none.
	Info json.RawMessage `json:"info,omitempty"`
}

// Credentials are what a transport found on an incoming connection or
// request, for the authenticator to judge.
type Credentials struct {
	// Token is the bearer token: from an "Authorization: Bearer" header,
	// else a "token" query parameter, else an "access_token" cookie (for
	// browsers, which cannot set headers on WebSocket and SSE requests), or
	// from gRPC "authorization" metadata. The WebSocket transport also
	// takes it from a Sec-WebSocket-Protocol entry, and from the "auth" and
	// "refresh" commands. A token in the query is visible to proxies and
	// in access logs: prefer the others.
	Token string
	// Header holds the request headers, or the gRPC metadata. It is nil for
	// the credentials of an "auth" or "refresh" command.
	Header http.Header
	// Request is the HTTP request, when there is one.
	Request *http.Request
	// Transport names the transport: "websocket", "sse", "grpc" or "http".
	Transport string
}

// CredentialsFromRequest extracts credentials from an HTTP request in the
// documented order of [Credentials.Token].
func CredentialsFromRequest(r *http.Request, transport string) *Credentials {
	c, _ := credentialsFromRequest(r, transport)
	return c
}

// credentialsFromRequest is CredentialsFromRequest, and reports whether
// the token came from the access_token cookie: a credential that a browser
// attaches to requests that pages of other sites make.
func credentialsFromRequest(r *http.Request, transport string) (c *Credentials, fromCookie bool) {
	c = CredentialsFromHeader(r.Header, transport)
	c.Request = r
	if c.Token != "" {
		return c, false
	}
	if t := r.URL.Query().Get("token"); t != "" {
		c.Token = t
	} else if ck, err := r.Cookie("access_token"); err == nil && ck.Value != "" {
		c.Token = ck.Value
		return c, true
	}
	return c, false
}

// CredentialsFromHeader returns credentials with the headers h (HTTP
// headers, or gRPC metadata in canonical form) and the token of its
// "Authorization: Bearer" header, the scheme matched in any case (RFC
// 7235).
func CredentialsFromHeader(h http.Header, transport string) *Credentials {
	c := &Credentials{Header: h, Transport: transport}
	if scheme, tok, ok := strings.Cut(h.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		c.Token = strings.TrimSpace(tok)
	}
	return c
}

// Action is what a principal wants to do with a topic.
type Action int

const (
	// ActionSubscribe is receiving a topic's messages.
	ActionSubscribe Action = iota + 1
	// ActionPublish is publishing to a topic from a client or a service.
	ActionPublish
	// ActionInspect is reading what a node serves, through
	// [NewInspectHandler]; the topic is empty. An authorizer that allows
	// every action but publishing allows this one too: check for it.
	ActionInspect
	// ActionPresence is reading a topic's presence (who is subscribed)
	// with the presence and presence_count commands. An authorizer that
	// allows every action but publishing allows this one too: check for
	// it.
	ActionPresence
)

func (a Action) String() string {
	switch a {
	case ActionSubscribe:
		return "subscribe"
	case ActionPublish:
		return "publish"
	case ActionInspect:
		return "inspect"
	case ActionPresence:
		return "presence"
	}
	return "unknown"
}

// Authenticator turns credentials into a principal, or returns an error
// (wrapped into [ErrUnauthenticated] by the hub). The client reads the
// error's text ("unauthenticated: token expired"), so it should say what
// is wrong with the credentials, not how checking them failed. It may be
// called concurrently.
type Authenticator func(ctx context.Context, c *Credentials) (Principal, error)

// Authorizer allows or denies an action on a topic by returning nil or an
// error (wrapped into [ErrForbidden] by the hub; the client reads its
// text). It may be called concurrently, once per subscribe or publish, so
// it should be fast.
type Authorizer func(ctx context.Context, p Principal, topic string, a Action) error
