package client

import (
	"context"
	"fmt"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// Presence returns who is subscribed to topic, on every node of the
// server's cluster, as far as the server's options keep presence for the
// topic and its authorizer allows this client to read it (at most the
// server's limit of entries). Like Publish, it waits for the connection
// while the client reconnects, until ctx ends.
func (c *Client) Presence(ctx context.Context, topic string) ([]fanout.ClientInfo, error) {
	r, err := c.query(ctx, wire.CmdPresence, topic)
	if err != nil {
		return nil, err
	}
	if r.presence == nil {
		r.presence = []fanout.ClientInfo{}
	}
	return r.presence, nil
}

// PresenceCount returns how many sessions are subscribed to topic, on every
// node: cheaper than Presence.
func (c *Client) PresenceCount(ctx context.Context, topic string) (int, error) {
	r, err := c.query(ctx, wire.CmdPresenceCount, topic)
	if err != nil {
		return 0, err
	}
	return r.count, nil
}

// query sends a presence command through the publish path, which answers
// it once even across reconnects.
func (c *Client) query(ctx context.Context, typ, topic string) (publishResult, error) {
	if err := fanout.ValidateTopic(topic); err != nil {
		return publishResult{}, fmt.Errorf("client: %s: %w", typ, err)
	}
	n := c.ids.Add(1)
	id := newID(n)
	p := &publishRequest{seq: n, id: id, query: true, res: make(chan publishResult, 1),
		cmd: wire.AppendCommand(nil, wire.Command{ID: id, Type: typ, Topic: topic})}
	if err := c.post(request{op: opPublish, pub: p}); err != nil {
		return publishResult{}, fmt.Errorf("client: %s %q: %w", typ, topic, err)
	}
	select {
	case r := <-p.res:
		if r.err != nil {
			return publishResult{}, fmt.Errorf("client: %s %q: %w", typ, topic, r.err)
		}
		return r, nil
	case <-ctx.Done():
		p.cancelled.Store(true)
		return publishResult{}, ctx.Err()
	}
}
