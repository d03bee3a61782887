package fanout

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// readyTopic is the topic whose snapshot [Hub.Ready] reads: a read that
// goes to the backplane's storage and creates nothing there.
const readyTopic = "_fanout:ready"

// Ready reports whether the hub can serve clients: nil when it is open
// (not closed, not draining) and its backplane answers a read within ctx.
// Otherwise the error matches [ErrClosed] (the hub is closed or shutting
// down), [ErrUnavailable] (the backplane cannot be reached) or is ctx's
// error. A readiness probe (/readyz) calls it, so that a replica whose
// backplane is down, or that is draining, gets no new clients; the
// liveness probe should not, since a backplane outage is not cured by
// restarting the process.
//
// NewHub does not wait for the backplane to be reachable: a hub serves as
// soon as it is created, and recovers when its backplane comes back. The
// hub logs the loss of its backplane at Warn and its return at Info, and
// reports both to its observer ([EventBackplaneDown], [EventBackplaneUp]).
func (h *Hub) Ready(ctx context.Context) error {
	h.sessMu.Lock()
	draining := h.draining
	h.sessMu.Unlock()
	if draining {
		return fmt.Errorf("ready: %w", ErrClosed)
	}
	_, err := h.bp.Snapshot(ctx, readyTopic)
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	return nil
}

// observedBackplane is the hub's backplane as the hub calls it: every call
// is timed and reported as [EventBackplane], and the backplane's
// availability is followed (see [Hub.backplaneResult]).
type observedBackplane struct {
	Backplane
	h *Hub
}

func (b observedBackplane) done(op, topic string, start time.Time, err error) {
	h := b.h
	if h.opts.Observer != nil {
		h.opts.Observer.Observe(Event{Type: EventBackplane, Op: op, Topic: topic, Duration: time.Since(start), Err: err})
	}
	h.backplaneResult(err)
}

func (b observedBackplane) Publish(ctx context.Context, m *Message, idem string) (Position, error) {
	start := time.Now()
	p, err := b.Backplane.Publish(ctx, m, idem)
	b.done("publish", m.Topic, start, err)
	return p, err
}

func (b observedBackplane) Subscribe(ctx context.Context, topic string) error {
	start := time.Now()
	err := b.Backplane.Subscribe(ctx, topic)
	b.done("subscribe", topic, start, err)
	return err
}

func (b observedBackplane) Unsubscribe(ctx context.Context, topic string) error {
	start := time.Now()
	err := b.Backplane.Unsubscribe(ctx, topic)
	b.done("unsubscribe", topic, start, err)
	return err
}

func (b observedBackplane) History(ctx context.Context, topic string, after Position) (History, error) {
	start := time.Now()
	hist, err := b.Backplane.History(ctx, topic, after)
	b.done("history", topic, start, err)
	return hist, err
}

func (b observedBackplane) Snapshot(ctx context.Context, topic string) (Snapshot, error) {
	start := time.Now()
	snap, err := b.Backplane.Snapshot(ctx, topic)
	op := "snapshot"
	if topic == readyTopic {
		op, topic = "ready", ""
	}
	b.done(op, topic, start, err)
	return snap, err
}

func (b observedBackplane) Delete(ctx context.Context, topic string) error {
	start := time.Now()
	err := b.Backplane.Delete(ctx, topic)
	b.done("delete", topic, start, err)
	return err
}

// backplaneResult follows the backplane's availability from the outcome
// of each call: the first failure with [ErrUnavailable] marks it down, the
// next success up again, and each change is logged once. Other failures
// (a closed hub, a caller's context) say nothing about it.
func (h *Hub) backplaneResult(err error) {
	switch {
	case err == nil:
		if h.bpDown.Load() && h.bpDown.CompareAndSwap(true, false) {
			h.opts.Logger.Info("fanout: backplane available again")
			h.observe(Event{Type: EventBackplaneUp})
		}
	case errors.Is(err, ErrUnavailable):
		if !h.bpDown.Load() && h.bpDown.CompareAndSwap(false, true) {
			h.opts.Logger.Warn("fanout: backplane unavailable", "err", err)
			h.observe(Event{Type: EventBackplaneDown, Err: err})
		}
	}
}
