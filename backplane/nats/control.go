package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gofanout/fanout"
	"github.com/nats-io/nats.go"
)

// Control messages ([fanout.ControlBackplane]) are core NATS messages on
// the subject "<prefix>.control", which no stream captures and no topic's
// subject can be. NATS delivers each at most once, to the nodes connected
// when it is published; a node that falls controlPending messages behind
// loses the next ones (a NATS slow consumer).

// controlPending bounds the control messages a node has received and not
// handed to its hub yet.
const controlPending = 1024

// control is a node's control subscription.
type control struct {
	mu     sync.Mutex // guards the fields below
	sub    *nats.Subscription
	recv   fanout.ControlReceiver
	closed bool

	done chan struct{} // closed by closeControl
	wg   sync.WaitGroup
}

func (s subjects) control() string { return s.prefix + ".control" }

// OpenControl implements [fanout.ControlBackplane]: it subscribes the
// control subject and returns once the server has the subscription.
func (b *Backplane) OpenControl(ctx context.Context, r fanout.ControlReceiver) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return fmt.Errorf("nats backplane: open control: %w", fanout.ErrClosed)
	}
	c := &b.ctl
	c.mu.Lock()
	if c.closed || c.sub != nil {
		c.mu.Unlock()
		return fmt.Errorf("nats backplane: open control: %w", errors.New("already opened or closed"))
	}
	ch := make(chan *nats.Msg, controlPending)
	sub, err := b.nc.ChanSubscribe(b.subj.control(), ch)
	if err != nil {
		c.mu.Unlock()
		return controlError("open control", err)
	}
	sub.SetPendingLimits(controlPending, controlPending*fanout.MaxControlBytes)
	c.sub, c.recv, c.done = sub, r, make(chan struct{})
	done := c.done
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-done:
				return
			case m := <-ch:
				if len(m.Data) > fanout.MaxControlBytes {
					continue
				}
				c.mu.Lock()
				r := c.recv
				c.mu.Unlock()
				if r != nil {
					r.Control(m.Data)
				}
			}
		}
	}()
	c.mu.Unlock()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return controlError("open control", err)
	}
	return nil
}

// PublishControl implements [fanout.ControlBackplane]: one core NATS
// publish, flushed to the server.
func (b *Backplane) PublishControl(ctx context.Context, msg []byte) error {
	if len(msg) > fanout.MaxControlBytes {
		return fmt.Errorf("nats backplane: publish control: %w: %d bytes, limit %d", fanout.ErrTooLarge, len(msg), fanout.MaxControlBytes)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats backplane: publish control: %w", err)
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return fmt.Errorf("nats backplane: publish control: %w", fanout.ErrClosed)
	}
	if err := b.nc.Publish(b.subj.control(), msg); err != nil {
		return controlError("publish control", err)
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return controlError("publish control", err)
	}
	return nil
}

func controlError(op string, err error) error {
	if unavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("nats backplane: %s: %w: %w", op, fanout.ErrUnavailable, err)
	}
	return fmt.Errorf("nats backplane: %s: %w", op, err)
}

// closeControl stops the control subscription, if any, and waits for its
// goroutine.
func (b *Backplane) closeControl() {
	c := &b.ctl
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.recv = nil
	sub, done := c.sub, c.done
	c.mu.Unlock()
	if sub == nil {
		return
	}
	sub.Unsubscribe()
	close(done)
	c.wg.Wait()
}
