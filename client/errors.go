package client

import (
	"errors"
	"fmt"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// Errors of the client. Match them with errors.Is.
var (
	// ErrClosed: the client or the subscription was closed.
	ErrClosed = errors.New("client: closed")
	// ErrAlreadySubscribed: the client already has a subscription to the
	// topic.
	ErrAlreadySubscribed = errors.New("client: already subscribed")
)

// CloseError is why the client stopped when the server closed the
// connection with a code that forbids reconnecting unchanged
// ([fanout.CloseUnauthorized], [fanout.CloseBadRequest],
// [fanout.CloseProtocol], [fanout.CloseTooLarge]) or with a server-side
// disconnect ([fanout.CloseDisconnected], an application's code from 4500
// to 4999). A handshake refused with
// HTTP 401 or 403 counts as [fanout.CloseUnauthorized].
type CloseError struct {
	Code   fanout.CloseCode
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" || e.Reason == e.Code.String() {
		return fmt.Sprintf("client: server closed the connection: %d %s", int(e.Code), e.Code)
	}
	return fmt.Sprintf("client: server closed the connection: %d %s: %s", int(e.Code), e.Code, e.Reason)
}

// ServerError is a command the server refused. It matches, with errors.Is,
// the fanout error of its code: [fanout.ErrForbidden] for "forbidden",
// [fanout.ErrInvalidTopic] for "invalid_topic", and so on (see
// [fanout.ErrorCode]).
type ServerError struct {
	// Code is the wire error code, such as "forbidden".
	Code string
	// Message is the server's explanation.
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("client: server: %s: %s", e.Code, e.Message)
}

// serverError is the error of a failed reply.
func serverError(f *wire.Frame) *ServerError {
	return &ServerError{Code: f.Error.Code, Message: f.Error.Message}
}

// Unwrap returns the fanout sentinel error of e.Code, or nil.
func (e *ServerError) Unwrap() error { return wire.Sentinel(e.Code) }

// transient reports whether a refused subscribe may succeed when retried
// unchanged on a new connection.
func transient(code string) bool {
	switch code {
	case "unavailable", "internal", "closed", "rate_limited", "already_subscribed", "not_subscribed":
		return true
	}
	return false
}
