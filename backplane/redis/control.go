package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gofanout/fanout"
	goredis "github.com/redis/go-redis/v9"
)

// Control messages ([fanout.ControlBackplane]) travel on one Pub/Sub
// channel per prefix, "<prefix>:control", which no topic's channel can
// be (those are "{<prefix>:<topic>}"). Each node reads it on a Pub/Sub
// connection of its own, so that a slow topic never delays a disconnect;
// go-redis subscribes it again after a reconnect. Redis delivers each
// message at most once, to the nodes connected when it is published.

// control is a node's control subscription.
type control struct {
	mu     sync.Mutex // guards the fields below
	ps     *goredis.PubSub
	recv   fanout.ControlReceiver
	ready  chan struct{} // closed on the first confirmation
	closed bool

	done chan struct{} // closed by closeControl
	wg   sync.WaitGroup
}

func (b *Backplane) controlChannel() string { return b.opts.Prefix + ":control" }

// OpenControl implements [fanout.ControlBackplane].
func (b *Backplane) OpenControl(ctx context.Context, r fanout.ControlReceiver) error {
	if err := b.check(ctx, "open control"); err != nil {
		return err
	}
	c := &b.ctl
	c.mu.Lock()
	if c.closed || c.ps != nil {
		c.mu.Unlock()
		return fmt.Errorf("redis backplane: open control: %w", errors.New("already opened or closed"))
	}
	c.ps = b.client.Subscribe(context.Background())
	c.recv = r
	c.ready = make(chan struct{})
	c.done = make(chan struct{})
	ps, ready := c.ps, c.ready
	c.wg.Add(1)
	go b.controlLoop(ps, ready)
	c.mu.Unlock()

	if err := ps.Subscribe(ctx, b.controlChannel()); err != nil {
		return b.opError("open control", err)
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redis backplane: open control: %w: %w", fanout.ErrUnavailable, ctx.Err())
	}
}

// PublishControl implements [fanout.ControlBackplane]: one PUBLISH.
func (b *Backplane) PublishControl(ctx context.Context, msg []byte) error {
	if len(msg) > fanout.MaxControlBytes {
		return fmt.Errorf("redis backplane: publish control: %w: %d bytes, limit %d", fanout.ErrTooLarge, len(msg), fanout.MaxControlBytes)
	}
	if err := b.check(ctx, "publish control"); err != nil {
		return err
	}
	_, err := b.call(ctx, "publish control", func(ctx context.Context) ([]any, error) {
		return nil, b.client.Publish(ctx, b.controlChannel(), msg).Err()
	})
	if err != nil {
		return b.opError("publish control", err)
	}
	return nil
}

// controlLoop reads the control connection until closeControl.
func (b *Backplane) controlLoop(ps *goredis.PubSub, ready chan struct{}) {
	c := &b.ctl
	defer c.wg.Done()
	confirmed := false
	backoff := minBackoff
	for {
		msg, err := ps.ReceiveTimeout(context.Background(), b.opts.PingInterval)
		select {
		case <-c.done:
			return
		default:
		}
		if err != nil {
			if isTimeout(err) {
				// A silent connection: a ping tells a live one from a
				// dead one, which go-redis then replaces.
				ctx, cancel := context.WithTimeout(context.Background(), b.opts.PingInterval)
				err = ps.Ping(ctx)
				cancel()
				if err == nil {
					continue
				}
			}
			t := time.NewTimer(backoff)
			select {
			case <-c.done:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && !confirmed {
				confirmed = true
				close(ready)
			}
		case *goredis.Message:
			if len(m.Payload) > fanout.MaxControlBytes {
				b.log.Warn("redis backplane: control message too large; dropped", "bytes", len(m.Payload))
				continue
			}
			c.mu.Lock()
			r := c.recv
			c.mu.Unlock()
			if r != nil {
				r.Control([]byte(m.Payload))
			}
		}
	}
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
	ps, done := c.ps, c.done
	c.mu.Unlock()
	if ps == nil {
		return
	}
	close(done)
	ps.Close()
	c.wg.Wait()
}
