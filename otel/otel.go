// Package fanoutotel traces fanout messages with OpenTelemetry: give a
// [Tracer] to the hub as [fanout.HubOptions.Tracer].
//
//	hub, err := fanout.NewHub(&fanout.HubOptions{Tracer: fanoutotel.New(nil)})
//
// Each publish gets a producer span, "publish <topic>", whose parent is
// the span in the publisher's context ([fanout.Hub.Publish] with a context
// that carries a span, a gRPC publish under an OpenTelemetry interceptor),
// or else the W3C trace context of the HTTP publish request (its
// traceparent header). The span's context travels with the message in its
// header (traceparent, tracestate) through every backplane, to every node
// and to every client, which reads it in the message's header. Each node
// that delivers a traced message live starts a consumer span, "deliver
// <topic>", child of the publish span, with the number of local
// subscriptions it reached.
//
// It lives in its own package so that importing fanout does not compile
// OpenTelemetry.
package fanoutotel

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/gofanout/fanout"
)

// Options configures a [Tracer]. The zero value is valid.
type Options struct {
	// TracerProvider makes the spans. Default: otel.GetTracerProvider(),
	// the global provider.
	TracerProvider trace.TracerProvider
	// Propagator carries the span context in the message's header.
	// Default: propagation.TraceContext{}, the W3C traceparent and
	// tracestate headers, which the wire protocol documents.
	Propagator propagation.TextMapPropagator
}

// scope is the instrumentation scope of the spans.
const scope = "github.com/gofanout/fanout/otel"

// Tracer is a [fanout.Tracer]. It is safe for concurrent use.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// New returns a tracer; opts may be nil.
func New(opts *Options) *Tracer {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	return &Tracer{tracer: o.TracerProvider.Tracer(scope), prop: o.Propagator}
}

// StartPublish implements [fanout.Tracer].
func (t *Tracer) StartPublish(ctx context.Context, m *fanout.Message) func(error) {
	carrier := propagation.MapCarrier(m.Header)
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = t.prop.Extract(ctx, carrier)
	}
	ctx, span := t.tracer.Start(ctx, "publish "+m.Topic,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "fanout"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", m.Topic),
			attribute.Int("messaging.message.body.size", len(m.Data)),
		))
	t.prop.Inject(ctx, carrier)
	return func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, fanout.ErrorCode(err))
		} else {
			span.SetAttributes(
				attribute.String("fanout.epoch", m.Position.Epoch),
				attribute.Int64("fanout.seq", int64(m.Position.Seq)),
			)
		}
		span.End()
	}
}

// Delivered implements [fanout.Tracer].
func (t *Tracer) Delivered(m *fanout.Message, subscribers int) {
	ctx := t.prop.Extract(context.Background(), propagation.MapCarrier(m.Header))
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return // published without a trace: no trace starts here
	}
	_, span := t.tracer.Start(ctx, "deliver "+m.Topic,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "fanout"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", m.Topic),
			attribute.Int64("fanout.seq", int64(m.Position.Seq)),
			attribute.Int("fanout.subscribers", subscribers),
		))
	span.End()
}

var _ fanout.Tracer = (*Tracer)(nil)
