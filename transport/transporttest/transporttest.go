// Package transporttest is the conformance suite that every fanout transport
// runs: WebSocket, Server-Sent Events, gRPC, and any third-party transport.
//
// A transport's test gives [Run] a constructor that serves a [fanout.Hub]
// over a real loopback server and returns a [Transport], whose clients speak
// the transport's real wire protocol and translate what they receive into
// the normalized [Event]s of this package. Run then checks the promises every
// transport makes (ordered delivery, topic isolation, resume, snapshots,
// authentication and authorization, slow consumers, shutdown, bad input),
// each scenario in a parallel subtest with a fresh hub and its own topics:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T, hub *fanout.Hub) transporttest.Transport {
//			srv := httptest.NewServer(mytransport.New(hub, nil))
//			t.Cleanup(srv.Close)
//			return &adapter{url: srv.URL}
//		}, transporttest.Features{Commands: true})
//	}
//
// Capabilities a transport lacks are declared in [Features]; the scenarios
// that need them are skipped with the reason. The suite starts no goroutine
// that outlives its subtest, so a transport package's main_test.go should run
// goleak.VerifyTestMain to prove that the transport leaks none either.
package transporttest

import (
	"context"
	"errors"

	"github.com/gofanout/fanout"
)

// Transport is a server under test, as seen by its clients. The suite calls
// newTransport once per scenario, with a fresh hub; the transport registers
// with t.Cleanup whatever it must shut down (servers, client connection
// pools). Cleanups run in reverse order, so the clients of a scenario are
// closed before the transport's server, and the hub last.
//
// Dial may be called concurrently.
type Transport interface {
	// Dial opens one client connection with the given subscriptions.
	//
	// Dial returns once the connection is established and its
	// subscriptions were requested; their replies arrive as events. When
	// the server refuses the connection before any event (an HTTP status,
	// a gRPC status), Dial (or the first [Client.Next]) returns an error
	// that matches the fanout sentinel for the refusal:
	// [fanout.ErrUnauthenticated] for 401 or codes.Unauthenticated,
	// [fanout.ErrForbidden] for 403 or codes.PermissionDenied,
	// [fanout.ErrBadRequest] for 400 or codes.InvalidArgument,
	// [fanout.ErrClosed] or [fanout.ErrUnavailable] for 503 or
	// codes.Unavailable.
	Dial(ctx context.Context, opts DialOptions) (Client, error)
}

// DialOptions says how a client connects.
type DialOptions struct {
	// Subscriptions are made when the connection opens, in order. A
	// transport whose subscriptions are part of its request (SSE, a gRPC
	// server stream) puts them there; a transport with commands sends one
	// subscribe command per subscription. The suite sets Snapshot alike
	// on every subscription of one Dial.
	Subscriptions []Subscription
	// Token is the bearer credential the client presents, in the way the
	// transport documents for [fanout.CredentialsFromRequest] or gRPC
	// metadata. Empty means none.
	Token string
}

// Subscription is one subscribe request.
type Subscription struct {
	Topic string
	// Since, when set, resumes after that position.
	Since *fanout.Position
	// Snapshot asks for the topic's current state first.
	Snapshot bool
}

// Client is one open connection. Next is called from one goroutine at a
// time; Subscribe, Unsubscribe and Publish may be called concurrently with
// Next; Close may be called at any time, from any goroutine, more than once.
type Client interface {
	// Next returns the next event the server sent, in the order it was
	// sent. It returns ctx's error when ctx ends first. After an
	// [EventClose] (or, for transports without close frames, after the
	// stream ended), Next returns an error matching io.EOF. When the
	// connection broke without a close, or after Close, Next returns
	// another non-nil error. Refusals that a transport can only report on
	// the stream match the sentinels listed at [Transport.Dial].
	Next(ctx context.Context) (Event, error)
	// Subscribe sends a subscribe command with id on the open connection;
	// its reply arrives as an [EventReply]. Only transports with
	// [Features.Commands]; others return [ErrUnsupported].
	Subscribe(ctx context.Context, id string, sub Subscription) error
	// Unsubscribe sends an unsubscribe command, as Subscribe does.
	Unsubscribe(ctx context.Context, id, topic string) error
	// Publish sends a publish command; its reply arrives as an
	// [EventReply] carrying the message's position. Only transports with
	// [Features.Publish]; others return [ErrUnsupported].
	Publish(ctx context.Context, id, topic string, data []byte) error
	// Close ends the connection from the client side, as a client that
	// goes away would, and returns after the client's goroutines ended.
	Close() error
}

// ErrUnsupported is what a [Client] returns for a command its transport
// does not have.
var ErrUnsupported = errors.New("transporttest: unsupported by this transport")

// EventType says what an [Event] is.
type EventType int

// Event types, one per logical server frame of docs/PROTOCOL.md.
const (
	EventReply    EventType = iota + 1 // the answer to a subscribe, unsubscribe or publish
	EventMessage                       // one message of a topic
	EventSnapshot                      // a topic's state per key
	EventClose                         // the server ends the connection
)

func (t EventType) String() string {
	switch t {
	case EventReply:
		return "reply"
	case EventMessage:
		return "msg"
	case EventSnapshot:
		return "snapshot"
	case EventClose:
		return "close"
	}
	return "unknown"
}

// Event is one server frame, normalized across transports. Which fields
// are set depends on Type.
type Event struct {
	Type EventType

	// ID is a reply's command id. Replies to subscriptions made by Dial
	// may carry any id.
	ID string
	// Topic is set on messages, snapshots, and every reply to a command
	// that names a topic (each subscription made by Dial is answered by a
	// reply with its topic).
	Topic string
	// Error is a failed reply's error code, as given by
	// [fanout.ErrorCode]; empty when the reply is ok.
	Error string
	// Position is a message's position, a snapshot's position, or the
	// position a subscribe or publish reply carries.
	Position fanout.Position
	// Recovered is set on replies to a subscribe with Since.
	Recovered *bool

	// Key and Data are a message's key and payload, the exact bytes that
	// were published.
	Key  string
	Data []byte
	// Items are a snapshot's messages, each an EventMessage.
	Items []Event

	// Code, Reason and Reconnect describe a close. A transport without
	// close frames maps its ending to the equivalent fanout close code.
	Code      fanout.CloseCode
	Reason    string
	Reconnect bool
}

// Features declares what a transport can do. Scenarios that need a feature
// the transport lacks are skipped with the reason.
type Features struct {
	// Commands: a client can subscribe and unsubscribe on an open
	// connection ([Client.Subscribe], [Client.Unsubscribe]).
	Commands bool
	// Publish: a client can publish over its connection
	// ([Client.Publish]).
	Publish bool
}

// BadInputs is implemented by a [Transport] that can send its server
// malformed or hostile input. The suite runs each case in its own subtest,
// against a fresh transport, and then checks that the hub still serves a
// new client.
type BadInputs interface {
	BadInputs() []BadInput
}

// BadInput is one malformed request of a transport's own wire format.
type BadInput struct {
	// Name names the subtest.
	Name string
	// Want is the fanout sentinel error the server's answer must match:
	// [fanout.ErrBadRequest], [fanout.ErrInvalidTopic],
	// [fanout.ErrTooLarge], ...
	Want error
	// WantClose, when not zero, is the close code the server may answer
	// with instead of an error.
	WantClose fanout.CloseCode
	// Send sends the input over a real connection and returns the server's
	// answer: either an error matching Want (a refusal), or the event that
	// answered the input (a reply whose Error is [fanout.ErrorCode] of
	// Want, or a close with code WantClose). Send closes what it opened.
	Send func(ctx context.Context) (Event, error)
}
