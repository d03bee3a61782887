package fanout

import (
	"errors"
	"fmt"
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

// ErrorCode returns the wire protocol's error code for err: one of
// "invalid_topic", "unauthenticated", "forbidden", "already_subscribed",
// "not_subscribed", "too_many_subscriptions", "rate_limited", "too_large",
// "bad_request", "unavailable", "closed" or "internal".
func ErrorCode(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

var errorCodes = []struct {
	err  error
	code string
}{
	{ErrInvalidTopic, "invalid_topic"},
	{ErrUnauthenticated, "unauthenticated"},
	{ErrForbidden, "forbidden"},
	{ErrAlreadySubscribed, "already_subscribed"},
	{ErrNotSubscribed, "not_subscribed"},
	{ErrTooManySubscriptions, "too_many_subscriptions"},
	{ErrRateLimited, "rate_limited"},
	{ErrTooLarge, "too_large"},
	{ErrBadRequest, "bad_request"},
	{ErrUnavailable, "unavailable"},
	{ErrClosed, "closed"},
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
	CloseUnauthorized CloseCode = 4002 // credentials rejected or expired: refresh before reconnecting
	CloseBadRequest   CloseCode = 4003 // malformed or unknown commands: do not retry unchanged
	CloseRateLimited  CloseCode = 4004 // too many commands: reconnect after a backoff
	CloseResync       CloseCode = 4005 // the server lost track of a topic: reconnect and resume
	CloseTimeout      CloseCode = 4006 // the client stopped answering pings
)

// Reconnect reports whether a client should reconnect after this close.
func (c CloseCode) Reconnect() bool {
	switch c {
	case CloseUnauthorized, CloseBadRequest, CloseProtocol, CloseTooLarge:
		return false
	}
	return true
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
	}
	return fmt.Sprintf("close code %d", int(c))
}

func HTTPStatus(err error) int                                { return 0 }
func ErrorMessage(err error) string                           { return "" }
func WriteError(w interface{}, status int, err error)        {}
