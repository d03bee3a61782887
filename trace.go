package fanout

import (
	"context"
	"maps"
)

// The W3C Trace Context headers (https://www.w3.org/TR/trace-context/).
// A message carries its trace context under these names in its header, so
// that it reaches every node and every client with the message.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Tracer follows messages for distributed tracing; package otel implements
// it with OpenTelemetry. The root package knows no tracing library: a
// Tracer reads and writes the trace context in the message's header.
//
// The hub calls StartPublish in [Hub.Publish] (and for every transport's
// publish) once the message passed its checks, before the backplane. m's
// Header is the hub's own copy, never nil: StartPublish may set
// [HeaderTraceparent] and [HeaderTracestate] there (they do not count
// against the header limits) and reads there the trace context of the
// publishing HTTP request when ctx has none. It returns the function the
// hub calls with the backplane's outcome, when m.Position is set.
//
// The hub calls Delivered once per message and node, when the backplane
// hands the message over live, with the number of local subscriptions it
// reached; m must not be modified. Both methods may be called
// concurrently and must be fast.
type Tracer interface {
	StartPublish(ctx context.Context, m *Message) (end func(err error))
	Delivered(m *Message, subscribers int)
}

// traceKey is the context key of the trace headers of an HTTP publish.
type traceKey struct{}

// traceHeaders is the W3C trace context of a publishing request.
type traceHeaders struct{ parent, state string }

// withRequestTrace returns ctx carrying the trace context headers of an
// HTTP request that publishes, if it has them.
func withRequestTrace(ctx context.Context, parent, state string) context.Context {
	if parent == "" {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, traceHeaders{parent, state})
}

// startTrace gives m the trace context of a publishing request and starts
// the tracer's span. The message's header is copied first: it may be the
// publisher's map.
func (h *Hub) startTrace(ctx context.Context, m *Message) func(error) {
	th, _ := ctx.Value(traceKey{}).(traceHeaders)
	tr := h.opts.Tracer
	if tr == nil && th.parent == "" {
		return nil
	}
	hd := make(map[string]string, len(m.Header)+2)
	maps.Copy(hd, m.Header)
	if _, ok := hd[HeaderTraceparent]; !ok && th.parent != "" && len(th.parent) <= 55 && len(th.state) <= 512 {
		hd[HeaderTraceparent] = th.parent
		if th.state != "" {
			hd[HeaderTracestate] = th.state
		}
	}
	m.Header = hd
	if tr == nil {
		return nil
	}
	return tr.StartPublish(ctx, m)
}
