package fanout

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors returned by the hub, its sessions and backplanes. Match them with
// errors.Is: they are usually wrapped with the operation that failed.
var (
	// ErrClosed: the hub, session or backplane is closed (or shutting down).
	ErrClosed = errors.New("fanout: closed")
	// ErrInvalidTopic: a topic name breaks the rules of [ValidateTopic].
	ErrInvalidTopic = errors.New("fanout: invalid topic")
	// ErrUnauthenticated: the authenticator rejected the credentials.
	ErrUnauthenticated = errors.New("fanout: unauthenticated")
	// ErrForbidden: the authorizer denied the action on the topic.
	ErrForbidden = errors.New("fanout: forbidden")
	// ErrAlreadySubscribed: the session is already subscribed to the topic.
	ErrAlreadySubscribed = errors.New("fanout: already subscribed")
	// ErrNotSubscribed: the session is not subscribed to the topic.
	ErrNotSubscribed = errors.New("fanout: not subscribed")
	// ErrTooManySubscriptions: the session reached its subscription limit.
	ErrTooManySubscriptions = errors.New("fanout: too many subscriptions")
	// ErrRateLimited: the session sent commands faster than its limit.
	ErrRateLimited = errors.New("fanout: rate limited")
	// ErrTooLarge: a payload is larger than allowed.
	ErrTooLarge = errors.New("fanout: too large")
	// ErrBadRequest: a command is malformed.
	ErrBadRequest = errors.New("fanout: bad request")
	// ErrUnavailable: the backplane cannot be reached just now; retry later.
	ErrUnavailable = errors.New("fanout: backplane unavailable")
)

// The error table: for each library error, its wire code and what an HTTP
// answer carries. Transports take all of it from here, through
// [ErrorCode], [ErrorMessage], [HTTPStatus] and [WriteError]; gRPC maps
// the wire code to its own status codes.
var errorTable = []struct {
	err    error
	code   string
	status int
	header string // a header every answer with this error carries: "Name: value"
}{
	{ErrInvalidTopic, "invalid_topic", http.StatusBadRequest, ""},
	{ErrUnauthenticated, "unauthenticated", http.StatusUnauthorized, "WWW-Authenticate: Bearer"},
	{ErrForbidden, "forbidden", http.StatusForbidden, ""},
	{ErrAlreadySubscribed, "already_subscribed", http.StatusConflict, ""},
	{ErrNotSubscribed, "not_subscribed", http.StatusConflict, ""},
	{ErrTooManySubscriptions, "too_many_subscriptions", http.StatusBadRequest, ""},
	{ErrRateLimited, "rate_limited", http.StatusTooManyRequests, ""},
	{ErrTooLarge, "too_large", http.StatusRequestEntityTooLarge, ""},
	{ErrBadRequest, "bad_request", http.StatusBadRequest, ""},
	{ErrUnavailable, "unavailable", http.StatusServiceUnavailable, retryAfter},
	{ErrClosed, "closed", http.StatusServiceUnavailable, retryAfter},
}

// retryAfter is the Retry-After of an answer that asks the client to come
// back: a server shutting down (closed) or a backplane that cannot be
// reached (unavailable).
const retryAfter = "Retry-After: 2"

// errorRow returns the index of err's row in errorTable, or -1 for an
// internal error.
func errorRow(err error) int {
	for i, r := range errorTable {
		if errors.Is(err, r.err) {
			return i
		}
	}
	return -1
}

// ErrorCode returns the wire protocol's error code for err: one of
// "invalid_topic", "unauthenticated", "forbidden", "already_subscribed",
// "not_subscribed", "too_many_subscriptions", "rate_limited", "too_large",
// "bad_request", "unavailable", "closed" or "internal".
func ErrorCode(err error) string {
	if i := errorRow(err); i >= 0 {
		return errorTable[i].code
	}
	return "internal"
}

// ErrorMessage returns what a client is told about err: its text without
// the package's "fanout: " prefix, or "internal error" for an error that is
// none of this package's, whose text may tell of the server's internals.
func ErrorMessage(err error) string {
	i := errorRow(err)
	if i < 0 {
		return "internal error"
	}
	s := errorTable[i].err.Error()
	return strings.Replace(err.Error(), s, strings.TrimPrefix(s, "fanout: "), 1)
}

// ErrorForCode returns the error whose wire code is code, the inverse of
// [ErrorCode], for clients that turn an error reply back into a sentinel;
// nil for "internal" and for codes this release does not know.
func ErrorForCode(code string) error {
	for _, r := range errorTable {
		if r.code == code {
			return r.err
		}
	}
	return nil
}

// HTTPStatus returns the HTTP status that answers err: 400 (invalid_topic,
// bad_request, too_many_subscriptions), 401 (unauthenticated), 403
// (forbidden), 409 (already_subscribed, not_subscribed), 413 (too_large),
// 429 (rate_limited), 503 (closed, unavailable) or 500 (internal).
func HTTPStatus(err error) int {
	if i := errorRow(err); i >= 0 {
		return errorTable[i].status
	}
	return http.StatusInternalServerError
}

// WriteError answers an HTTP request with status and the protocol's one
// error body, {"error":{"code":...,"message":...}} with err's [ErrorCode]
// and [ErrorMessage], adding "WWW-Authenticate: Bearer" for
// unauthenticated and "Retry-After: 2" for closed and unavailable (unless
// the caller set a Retry-After).
func WriteError(w http.ResponseWriter, status int, err error) {
	code, msg := "internal", "internal error"
	hd := w.Header()
	if i := errorRow(err); i >= 0 {
		r := errorTable[i]
		code, msg = r.code, ErrorMessage(err)
		if k, v, ok := strings.Cut(r.header, ": "); ok && hd.Get(k) == "" {
			hd.Set(k, v)
		}
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, msg
	b, _ := json.Marshal(body)
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	hd.Del("Content-Length")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// CloseCode says why the server closed a session. The numbers are WebSocket
// close codes; other transports carry the same numbers in their own close
// frames (see docs/PROTOCOL.md).
type CloseCode int

// Close codes. Codes from 4000 are fanout's own.
const (
	CloseNormal       CloseCode = 1000 // the session ended normally
	CloseGoingAway    CloseCode = 1001 // the client went away
	CloseProtocol     CloseCode = 1002 // the client broke the protocol
	CloseTooLarge     CloseCode = 1009 // a client frame exceeded the read limit
	CloseInternal     CloseCode = 1011 // an unexpected server error
	CloseShutdown     CloseCode = 4000 // the server is draining: reconnect at once, elsewhere
	CloseSlowConsumer CloseCode = 4001 // the client did not keep up: reconnect and resume
	CloseUnauthorized CloseCode = 4002 // credentials rejected or expired ([ReasonExpired]), or none in time: refresh before reconnecting
	CloseBadRequest   CloseCode = 4003 // malformed or unknown commands: do not retry unchanged
	CloseRateLimited  CloseCode = 4004 // too many commands: reconnect after a backoff
	CloseResync       CloseCode = 4005 // the server lost track of a topic: reconnect and resume
	CloseTimeout      CloseCode = 4006 // the client stopped answering pings
	CloseDisconnected CloseCode = 4007 // server code disconnected the principal (Hub.Disconnect): do not reconnect
)

// Close codes from CloseAppMin to CloseAppMax are the application's own,
// for [Hub.Disconnect]: clients reconnect, after a backoff, after the codes
// below 4500, and stop after 4500 and above. Codes from 4000 below
// CloseAppMin are fanout's.
const (
	CloseAppMin CloseCode = 4100
	CloseAppMax CloseCode = 4999
)

// Reconnect reports whether a client should reconnect after this close.
func (c CloseCode) Reconnect() bool {
	switch c {
	case CloseUnauthorized, CloseBadRequest, CloseProtocol, CloseTooLarge, CloseDisconnected:
		return false
	}
	return c < 4500 || c > CloseAppMax
}

// String returns the code's short name, as used in close reasons.
func (c CloseCode) String() string {
	switch c {
	case CloseNormal:
		return "normal"
	case CloseGoingAway:
		return "going away"
	case CloseProtocol:
		return "protocol error"
	case CloseTooLarge:
		return "frame too large"
	case CloseInternal:
		return "internal error"
	case CloseShutdown:
		return "shutdown"
	case CloseSlowConsumer:
		return "slow consumer"
	case CloseUnauthorized:
		return "unauthorized"
	case CloseBadRequest:
		return "bad request"
	case CloseRateLimited:
		return "rate limited"
	case CloseResync:
		return "resync"
	case CloseTimeout:
		return "timeout"
	case CloseDisconnected:
		return "disconnected"
	}
	return fmt.Sprintf("close code %d", int(c))
}
