package fanout

import (
	"context"
	"net/http"
)

// Principal is who a session or a publisher acts as, as established by the
// authenticator.
type Principal struct {
	// ID identifies the principal, for instance a user or service name.
	// Empty means anonymous.
	ID string
	// Data is whatever the authenticator wants the authorizer to see
	// (claims, roles). The hub never reads it.
	Data any
}

// Credentials are what a transport found on an incoming connection or
// request, for the authenticator to judge.
type Credentials struct {
	// Token is the bearer token: from an "Authorization: Bearer" header,
	// else a "token" query parameter, else an "access_token" cookie (for
	// browsers, which cannot set headers on WebSocket and SSE requests), or
	// from gRPC "authorization" metadata.
	Token string
	// Header holds the request headers, or the gRPC metadata.
	Header http.Header
	// Request is the HTTP request, when there is one.
	Request *http.Request
	// Transport names the transport: "websocket", "sse", "grpc" or "http".
	Transport string
}

// CredentialsFromRequest extracts credentials from an HTTP request in the
// documented order of [Credentials.Token].
func CredentialsFromRequest(r *http.Request, transport string) *Credentials {
	c := &Credentials{Header: r.Header, Request: r, Transport: transport}
	if a := r.Header.Get("Authorization"); len(a) > 7 && (a[:7] == "Bearer " || a[:7] == "bearer ") {
		c.Token = a[7:]
	} else if t := r.URL.Query().Get("token"); t != "" {
		c.Token = t
	} else if ck, err := r.Cookie("access_token"); err == nil {
		c.Token = ck.Value
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
)

func (a Action) String() string {
	switch a {
	case ActionSubscribe:
		return "subscribe"
	case ActionPublish:
		return "publish"
	}
	return "unknown"
}

// Authenticator turns credentials into a principal, or returns an error
// (wrapped into [ErrUnauthenticated] by the hub). It may be called
// concurrently.
type Authenticator func(ctx context.Context, c *Credentials) (Principal, error)

// Authorizer allows or denies an action on a topic by returning nil or an
// error (wrapped into [ErrForbidden] by the hub). It may be called
// concurrently, once per subscribe or publish, so it should be fast.
type Authorizer func(ctx context.Context, p Principal, topic string, a Action) error
