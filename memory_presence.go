package fanout

import (
	"context"
	"sync"
)

// memPresence is the presence of a MemoryBroker: entries live until their
// session leaves or their node closes. A broker lives in one process with
// all its nodes, so no entry can outlive a node that died.
type memPresence struct {
	mu     sync.Mutex                           // guards topics
	topics map[string]map[string]memPresenceEnt // by topic, then session
}

type memPresenceEnt struct {
	node *memNode
	c    ClientInfo
}

func (n *memNode) AddPresence(ctx context.Context, topic string, c ClientInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.open("add presence"); err != nil {
		return err
	}
	p := &n.b.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.topics == nil {
		p.topics = make(map[string]map[string]memPresenceEnt)
	}
	m := p.topics[topic]
	if m == nil {
		m = make(map[string]memPresenceEnt)
		p.topics[topic] = m
	}
	m[c.Session] = memPresenceEnt{node: n, c: c}
	return nil
}

func (n *memNode) RemovePresence(ctx context.Context, topic, session string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.open("remove presence"); err != nil {
		return err
	}
	p := &n.b.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.topics[topic]; m != nil {
		delete(m, session)
		if len(m) == 0 {
			delete(p.topics, topic)
		}
	}
	return nil
}

func (n *memNode) Presence(ctx context.Context, topic string, limit int) ([]ClientInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := n.open("presence"); err != nil {
		return nil, err
	}
	p := &n.b.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.topics[topic]
	l := make([]ClientInfo, 0, min(limit, len(m)))
	for _, e := range m {
		if len(l) == limit {
			break
		}
		l = append(l, e.c)
	}
	return l, nil
}

func (n *memNode) PresenceCount(ctx context.Context, topic string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := n.open("presence count"); err != nil {
		return 0, err
	}
	p := &n.b.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.topics[topic]), nil
}

func (n *memNode) PublishPresence(ctx context.Context, e *PresenceEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.open("publish presence"); err != nil {
		return err
	}
	t := n.b.lockTopic(e.Topic, false)
	if t == nil {
		return nil
	}
	defer t.mu.Unlock()
	for _, node := range t.nodes {
		node.mu.RLock()
		r, closed := node.recv, node.closed
		node.mu.RUnlock()
		if pr, ok := r.(PresenceReceiver); ok && !closed {
			pr.DeliverPresence(e)
		}
	}
	return nil
}

// dropPresence forgets the entries of a node that closes.
func (n *memNode) dropPresence() {
	p := &n.b.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, m := range p.topics {
		for s, e := range m {
			if e.node == n {
				delete(m, s)
			}
		}
		if len(m) == 0 {
			delete(p.topics, topic)
		}
	}
}
