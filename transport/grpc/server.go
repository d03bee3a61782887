package fanoutgrpc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// Options configures a [Server]. The zero value is valid: every field
// documents its default. New copies the options.
type Options struct {
	// MaxBatchBytes bounds the Frames messages a stream sends: a frame
	// that would take a message past it starts the next one, so a Frames
	// message holds at most MaxBatchBytes, or a single larger frame.
	// Default: 32 KiB. gRPC takes the buffer it marshals a message into
	// from a pool of sizes 256 B, 4 KiB, 16 KiB, 32 KiB and 1 MiB: above
	// 32 KiB every message costs a 1 MiB buffer, which under load is
	// allocated and cleared again and again.
	MaxBatchBytes int
	// Heartbeat is how long a stream may stay silent: after Heartbeat
	// without a frame, the server sends an empty Frames message, which
	// clients skip. It keeps idle streams open through proxies that end
	// silent ones (Envoy's stream idle timeout, load balancers) and lets
	// the server notice a vanished client. Default: 30s; negative
	// disables it.
	Heartbeat time.Duration
}

// Server serves a hub's sessions over gRPC. Register it with a gRPC server.
// It is safe for concurrent use.
//
// A Server has no goroutines of its own: each call runs in the handler
// goroutine gRPC gives it (and, for Connect, a reader goroutine that the
// handler starts), as one session of the hub. [fanout.Hub.Shutdown] ends
// every stream; call it before grpc.Server.GracefulStop, which waits for
// streams but does not end them.
type Server struct {
	hub  *fanout.Hub
	opts Options
}

// New returns a Server for hub.
func New(hub *fanout.Hub, opts *Options) *Server {
	s := &Server{hub: hub}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.MaxBatchBytes <= 0 {
		s.opts.MaxBatchBytes = 32 << 10
	}
	if s.opts.Heartbeat == 0 {
		s.opts.Heartbeat = 30 * time.Second
	}
	return s
}

// Register registers the services fanout.v1.SubscribeService and
// fanout.v1.PublishService with r, typically a *grpc.Server.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	fanoutv1.RegisterSubscribeServiceServer(r, subscribeService{s: s})
	fanoutv1.RegisterPublishServiceServer(r, publishService{s: s})
}

// authenticate judges the credentials of the call in ctx.
func (s *Server) authenticate(ctx context.Context) (fanout.Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	h := make(http.Header, len(md))
	for k, vs := range md {
		k = textproto.CanonicalMIMEHeaderKey(k)
		h[k] = append(h[k], vs...)
	}
	return s.hub.Authenticate(ctx, fanout.CredentialsFromHeader(h, "grpc"))
}

// errorDomain is the domain of the google.rpc.ErrorInfo details that every
// status of the server carries.
const errorDomain = "fanout"

// statusCodes maps the protocol's error codes ([fanout.ErrorCode]) to gRPC
// status codes: the one place where gRPC departs from the error table.
var statusCodes = map[string]codes.Code{
	"invalid_topic":          codes.InvalidArgument,
	"unauthenticated":        codes.Unauthenticated,
	"forbidden":              codes.PermissionDenied,
	"already_subscribed":     codes.AlreadyExists,
	"not_subscribed":         codes.NotFound,
	"too_many_subscriptions": codes.ResourceExhausted,
	"rate_limited":           codes.ResourceExhausted,
	"too_large":              codes.InvalidArgument,
	"bad_request":            codes.InvalidArgument,
	"unavailable":            codes.Unavailable,
	"closed":                 codes.Unavailable,
	"internal":               codes.Internal,
}

// errStatus converts an error of the hub or of a session into a gRPC status
// error, whose message is [fanout.ErrorMessage]'s and whose ErrorInfo
// reason is the protocol's error code in upper case (INVALID_TOPIC,
// FORBIDDEN, ...).
func errStatus(err error) error {
	if err == nil {
		return nil
	}
	wc := fanout.ErrorCode(err)
	if wc == "internal" {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return status.FromContextError(err).Err()
		}
		if _, ok := status.FromError(err); ok {
			return err // already a status, such as a failed Send's
		}
	}
	msg := fanout.ErrorMessage(err)
	if wc == "closed" {
		msg += ": server shutting down; reconnect to another server"
	}
	code, ok := statusCodes[wc]
	if !ok {
		code = codes.Internal
	}
	return withInfo(code, msg, strings.ToUpper(wc), nil)
}

// withInfo returns a status error with ErrorInfo details.
func withInfo(code codes.Code, msg, reason string, md map[string]string) error {
	st := status.New(code, validUTF8(msg))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: md}); err == nil {
		st = d
	}
	return st.Err()
}

// closeCodes maps close codes to the status that ends a stream.
var closeCodes = map[fanout.CloseCode]codes.Code{
	fanout.CloseNormal:       codes.OK,
	fanout.CloseGoingAway:    codes.Canceled,
	fanout.CloseProtocol:     codes.InvalidArgument,
	fanout.CloseTooLarge:     codes.InvalidArgument,
	fanout.CloseInternal:     codes.Internal,
	fanout.CloseShutdown:     codes.Unavailable,
	fanout.CloseSlowConsumer: codes.ResourceExhausted,
	fanout.CloseUnauthorized: codes.Unauthenticated,
	fanout.CloseBadRequest:   codes.InvalidArgument,
	fanout.CloseRateLimited:  codes.ResourceExhausted,
	fanout.CloseResync:       codes.Aborted,
	fanout.CloseTimeout:      codes.DeadlineExceeded,
	fanout.CloseDisconnected: codes.PermissionDenied,
}

// closeStatus is the status that ends a stream after the close frame c. Its
// ErrorInfo has reason SESSION_CLOSED and the close frame's code and
// reconnect hint as metadata, for clients that see only the status.
func closeStatus(c *fanout.CloseFrame) error {
	code, ok := closeCodes[c.Code]
	switch {
	case ok:
	case c.Code >= fanout.CloseAppMin && c.Code <= fanout.CloseAppMax && c.Reconnect:
		code = codes.Aborted // the application's: reconnect and resume
	case c.Code >= fanout.CloseAppMin && c.Code <= fanout.CloseAppMax:
		code = codes.PermissionDenied // the application's: stay away
	default:
		code = codes.Unknown
	}
	if code == codes.OK {
		return nil
	}
	advice := "do not reconnect unchanged"
	switch {
	case c.Code == fanout.CloseShutdown:
		advice = "reconnect to another server and resume"
	case c.Reconnect:
		advice = "reconnect and resume"
	}
	msg := fmt.Sprintf("fanout: closed %d (%s): %s; %s", int(c.Code), c.Code, c.Reason, advice)
	return withInfo(code, msg, "SESSION_CLOSED", map[string]string{
		"close_code": strconv.Itoa(int(c.Code)),
		"reconnect":  strconv.FormatBool(c.Reconnect),
	})
}
