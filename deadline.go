package fanout

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errNoAnswer is the cause of a backplane call's context when
// [HubOptions.BackplaneTimeout] passed.
var errNoAnswer = errors.New("no answer from the backplane")

// boundedBackplane bounds every call to a backplane whose context has no
// earlier deadline, so that a hung server fails calls with [ErrUnavailable]
// instead of blocking publishers and subscribers. The backplane must honour
// the deadline, as its contract says.
type boundedBackplane struct {
	Backplane
	timeout time.Duration
}

// bound returns ctx with the hub's deadline, unless it has an earlier one.
func (b boundedBackplane) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= b.timeout {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, b.timeout, errNoAnswer)
}

// check makes err match ErrUnavailable when the hub's deadline ended the
// call.
func (b boundedBackplane) check(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || context.Cause(ctx) != errNoAnswer {
		return err
	}
	return fmt.Errorf("%w: %w within %v: %w", ErrUnavailable, errNoAnswer, b.timeout, err)
}

func (b boundedBackplane) Publish(ctx context.Context, m *Message, idempotencyKey string) (Position, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	p, err := b.Backplane.Publish(ctx, m, idempotencyKey)
	return p, b.check(ctx, err)
}

func (b boundedBackplane) Subscribe(ctx context.Context, topic string) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	return b.check(ctx, b.Backplane.Subscribe(ctx, topic))
}

func (b boundedBackplane) Unsubscribe(ctx context.Context, topic string) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	return b.check(ctx, b.Backplane.Unsubscribe(ctx, topic))
}

func (b boundedBackplane) History(ctx context.Context, topic string, after Position) (History, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	h, err := b.Backplane.History(ctx, topic, after)
	return h, b.check(ctx, err)
}

func (b boundedBackplane) Snapshot(ctx context.Context, topic string) (Snapshot, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	s, err := b.Backplane.Snapshot(ctx, topic)
	return s, b.check(ctx, err)
}

func (b boundedBackplane) Delete(ctx context.Context, topic string) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	return b.check(ctx, b.Backplane.Delete(ctx, topic))
}
