package redis

import (
	"context"
	"fmt"

	"github.com/gofanout/fanout"
	goredis "github.com/redis/go-redis/v9"
)

// contextBound reports whether the client bounds its reads and writes by
// the context's deadline (ContextTimeoutEnabled). Otherwise go-redis waits
// for its own ReadTimeout, and retries, whatever the context says: on a hung
// Redis a call would block for seconds past its deadline.
func contextBound(c goredis.UniversalClient) bool {
	switch c := c.(type) {
	case *goredis.Client:
		return c.Options().ContextTimeoutEnabled
	case *goredis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *goredis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// call runs f and returns its result, or ctx's error as soon as ctx ends.
// When the client does not bound its calls by the context, f runs in a
// goroutine that the caller stops waiting for when ctx ends; it ends by
// itself within the client's timeouts (go-redis does not retry once ctx
// has ended), and Close waits for it. A command abandoned that way may
// still run on Redis later, as any command whose reply was lost.
func (b *Backplane) call(ctx context.Context, op string, f func(ctx context.Context) ([]any, error)) ([]any, error) {
	if b.ctxBound || ctx.Done() == nil {
		return f(ctx)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("redis backplane: %s: %w", op, fanout.ErrClosed)
	}
	b.calls.Add(1)
	b.mu.Unlock()
	type result struct {
		res []any
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer b.calls.Done()
		res, err := f(ctx)
		ch <- result{res, err}
	}()
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// eval runs a script through call.
func (b *Backplane) eval(ctx context.Context, op string, s *goredis.Script, keys []string, args ...any) ([]any, error) {
	return b.call(ctx, op, func(ctx context.Context) ([]any, error) {
		return s.Run(ctx, b.client, keys, args...).Slice()
	})
}
