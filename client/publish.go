package client

import (
	"context"
	"fmt"
	"maps"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// PublishOption configures one [Client.Publish].
type PublishOption func(*wire.Command)

// WithKey makes the message the topic's current state for key (see
// [fanout.WithKey]).
func WithKey(key string) PublishOption { return func(c *wire.Command) { c.Key = key } }

// WithIdempotencyKey sets the publish's idempotency key, at most 256
// bytes: the server publishes a key once per topic within its idempotency
// window (5 minutes by default) and answers a repeat with the first
// position. Without it, Publish makes a random key of its own, so that
// its own retries are safe; give one to make the caller's retries safe too,
// for instance after ctx ended.
func WithIdempotencyKey(key string) PublishOption {
	return func(c *wire.Command) { c.IdempotencyKey = key }
}

// WithHeader attaches metadata, such as trace context, to the message: at
// most 32 entries and 4 KiB. Publish copies h.
func WithHeader(h map[string]string) PublishOption {
	return func(c *wire.Command) { c.Header = maps.Clone(h) }
}

// Publish publishes data to topic and returns the message's position. The
// server must allow this client to publish.
//
// While the client is reconnecting, Publish waits for the connection. When
// the connection drops after the publish was sent and before its reply,
// Publish sends it again on the next connection with the same idempotency
// key (see [WithIdempotencyKey]), so that the message is published once:
// Publish gives up only when ctx ends or the client stops. After ctx
// ended, the message may or may not have been published.
//
// It fails with a [*ServerError] when the server refuses (errors.Is
// matches [fanout.ErrForbidden], [fanout.ErrTooLarge], ...).
func (c *Client) Publish(ctx context.Context, topic string, data []byte, opts ...PublishOption) (fanout.Position, error) {
	if err := fanout.ValidateTopic(topic); err != nil {
		return fanout.Position{}, fmt.Errorf("client: publish: %w", err)
	}
	n := c.ids.Add(1)
	id := newID(n)
	cmd := wire.Command{ID: id, Type: wire.CmdPublish, Topic: topic, Data: data}
	if cmd.Data == nil {
		cmd.Data = []byte{}
	}
	for _, o := range opts {
		o(&cmd)
	}
	if cmd.IdempotencyKey == "" {
		cmd.IdempotencyKey = newIdempotencyKey()
	}
	p := &publishRequest{seq: n, id: id, cmd: wire.AppendCommand(nil, cmd), res: make(chan publishResult, 1)}
	if err := c.post(request{op: opPublish, pub: p}); err != nil {
		return fanout.Position{}, fmt.Errorf("client: publish %q: %w", topic, err)
	}
	select {
	case r := <-p.res:
		if r.err != nil {
			return fanout.Position{}, fmt.Errorf("client: publish %q: %w", topic, r.err)
		}
		return r.pos, nil
	case <-ctx.Done():
		p.cancelled.Store(true)
		return fanout.Position{}, ctx.Err()
	}
}
