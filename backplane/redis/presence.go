package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/periodic"
	goredis "github.com/redis/go-redis/v9"
)

// Presence
//
// Each topic with presence has two more keys, in its hash slot:
//
//	{prefix:topic}:presence  sorted set of session -> when its entry
//	                         expires (Unix ms, Redis's clock)
//	{prefix:topic}:pinfo     hash of session -> the entry, as JSON
//
// Redis 7.0 has no expiry of hash fields, so the sorted set keeps each
// entry's: readers skip the expired entries and remove them. Each node
// keeps the entries of its sessions in memory and writes them again every
// PresenceTTL/3, with a new expiry; so the entries of a node that dies
// without closing (killed, cut off) expire within PresenceTTL. A node that
// closes removes its entries. Both keys expire PresenceTTL after the last
// write, so a topic that nobody watches leaves nothing behind.
//
// Join and leave events travel on the topic's channel, after the marker
// byte 0 (a message record starts with its epoch, never with 0), then "j"
// or "l" and the entry's JSON. Redis delivers a channel's messages in the
// order it received them, so a node sees the events between the messages
// published around them.

// defaultPresenceTTL is the default of Options.PresenceTTL.
const defaultPresenceTTL = 30 * time.Second

// presenceMark starts a join or leave event on a topic's channel.
const presenceMark = "\x00"

// presenceChunk bounds the entries one refresh call writes.
const presenceChunk = 500

// presenceState is a node's presence: the entries of its sessions, which
// it refreshes.
type presenceState struct {
	mu      sync.Mutex
	topics  map[string]map[string]string // topic -> session -> entry JSON
	closed  bool                         // closePresence ran: nothing is added or refreshed
	refresh periodic.Loop                // rewrites the node's entries
}

func (b *Backplane) presenceTTL() time.Duration {
	if b.opts.PresenceTTL > 0 {
		return b.opts.PresenceTTL
	}
	return defaultPresenceTTL
}

func (b *Backplane) presenceKeys(topic string) []string {
	base := "{" + b.opts.Prefix + ":" + topic + "}"
	return []string{base + ":presence", base + ":pinfo"}
}

// presenceAddScript writes entries with a new expiry.
//
// KEYS: presence, pinfo
// ARGV: TTL in ms, then session and entry pairs.
var presenceAddScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
	redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
	redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
for _, k in ipairs(KEYS) do
	if redis.call('PTTL', k) < ttl then
		redis.call('PEXPIRE', k, ttl)
	end
end
return {}
`)

// presenceRemoveScript removes entries.
//
// KEYS: presence, pinfo
// ARGV: sessions.
var presenceRemoveScript = goredis.NewScript(`
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return {}
`)

// presenceReadScript removes expired entries (a bounded number per call)
// and returns at most limit live ones.
//
// KEYS: presence, pinfo
// ARGV: limit.
var presenceReadScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
if #old > 0 then
	redis.call('ZREM', KEYS[1], unpack(old))
	redis.call('HDEL', KEYS[2], unpack(old))
end
local names = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for i = 1, #names, 1000 do
	local part = redis.call('HMGET', KEYS[2], unpack(names, i, math.min(i + 999, #names)))
	for _, v in ipairs(part) do
		if v then
			out[#out + 1] = v
		end
	end
end
return out
`)

// presenceCountScript counts the live entries.
//
// KEYS: presence
var presenceCountScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`)

// AddPresence implements [fanout.PresenceBackplane].
func (b *Backplane) AddPresence(ctx context.Context, topic string, c fanout.ClientInfo) error {
	if err := b.check(ctx, "add presence"); err != nil {
		return err
	}
	enc, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("redis backplane: add presence: %w", err)
	}
	p := &b.pres
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("redis backplane: add presence: %w", fanout.ErrClosed)
	}
	if p.topics == nil {
		p.topics = make(map[string]map[string]string)
	}
	m := p.topics[topic]
	if m == nil {
		m = make(map[string]string)
		p.topics[topic] = m
	}
	m[c.Session] = string(enc)
	b.startRefreshLocked()
	p.mu.Unlock()
	_, err = b.eval(ctx, "add presence", presenceAddScript, b.presenceKeys(topic), b.presenceTTL().Milliseconds(), c.Session, string(enc))
	if err != nil {
		return b.opError("add presence", err)
	}
	return nil
}

// RemovePresence implements [fanout.PresenceBackplane].
func (b *Backplane) RemovePresence(ctx context.Context, topic, session string) error {
	p := &b.pres
	p.mu.Lock()
	if m := p.topics[topic]; m != nil {
		delete(m, session)
		if len(m) == 0 {
			delete(p.topics, topic)
		}
	}
	p.mu.Unlock()
	if err := b.check(ctx, "remove presence"); err != nil {
		return err
	}
	if _, err := b.eval(ctx, "remove presence", presenceRemoveScript, b.presenceKeys(topic), session); err != nil {
		return b.opError("remove presence", err)
	}
	return nil
}

// Presence implements [fanout.PresenceBackplane].
func (b *Backplane) Presence(ctx context.Context, topic string, limit int) ([]fanout.ClientInfo, error) {
	if err := b.check(ctx, "presence"); err != nil {
		return nil, err
	}
	res, err := b.eval(ctx, "presence", presenceReadScript, b.presenceKeys(topic), limit)
	if err != nil {
		return nil, b.opError("presence", err)
	}
	l := make([]fanout.ClientInfo, 0, len(res))
	for _, r := range res {
		s, _ := r.(string)
		var c fanout.ClientInfo
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			b.log.Warn("redis backplane: undecodable presence entry", "topic", topic, "err", err)
			continue
		}
		l = append(l, c)
	}
	return l, nil
}

// PresenceCount implements [fanout.PresenceBackplane].
func (b *Backplane) PresenceCount(ctx context.Context, topic string) (int, error) {
	if err := b.check(ctx, "presence count"); err != nil {
		return 0, err
	}
	res, err := b.call(ctx, "presence count", func(ctx context.Context) ([]any, error) {
		n, err := presenceCountScript.Run(ctx, b.client, b.presenceKeys(topic)[:1]).Int64()
		return []any{n}, err
	})
	if err != nil {
		return 0, b.opError("presence count", err)
	}
	n, _ := res[0].(int64)
	return int(n), nil
}

// PublishPresence implements [fanout.PresenceBackplane]: it publishes the
// event on the topic's channel.
func (b *Backplane) PublishPresence(ctx context.Context, e *fanout.PresenceEvent) error {
	if err := b.check(ctx, "publish presence"); err != nil {
		return err
	}
	enc, err := json.Marshal(e.Client)
	if err != nil {
		return fmt.Errorf("redis backplane: publish presence: %w", err)
	}
	kind := "j"
	if e.Leave {
		kind = "l"
	}
	ch := b.keys(e.Topic).base
	_, err = b.call(ctx, "publish presence", func(ctx context.Context) ([]any, error) {
		return nil, b.client.Publish(ctx, ch, presenceMark+kind+string(enc)).Err()
	})
	if err != nil {
		return b.opError("publish presence", err)
	}
	return nil
}

// deliverPresence hands an event from the topic's channel to the receiver;
// it reports false when payload is not an event.
func (b *Backplane) deliverPresence(topic, payload string, recv fanout.Receiver) bool {
	rest, ok := strings.CutPrefix(payload, presenceMark)
	if !ok {
		return false
	}
	pr, ok := recv.(fanout.PresenceReceiver)
	if !ok || len(rest) == 0 || (rest[0] != 'j' && rest[0] != 'l') {
		return true
	}
	e := &fanout.PresenceEvent{Topic: topic, Leave: rest[0] == 'l'}
	if err := json.Unmarshal([]byte(rest[1:]), &e.Client); err != nil {
		b.log.Warn("redis backplane: undecodable join or leave", "topic", topic, "err", err)
		return true
	}
	pr.DeliverPresence(e)
	return true
}

// startRefreshLocked starts the goroutine that refreshes the node's
// entries, once. b.pres.mu must be held.
func (b *Backplane) startRefreshLocked() {
	b.pres.refresh.Start(b.presenceTTL()/3, func(<-chan struct{}) { b.refreshPresence() })
}

// refreshPresence writes the node's entries again, with a new expiry.
func (b *Backplane) refreshPresence() {
	p := &b.pres
	p.mu.Lock()
	work := make(map[string][]any, len(p.topics))
	for topic, m := range p.topics {
		args := make([]any, 0, 2*len(m))
		for s, enc := range m {
			args = append(args, s, enc)
		}
		work[topic] = args
	}
	p.mu.Unlock()
	ttl := b.presenceTTL()
	for topic, args := range work {
		for len(args) > 0 {
			n := min(len(args), 2*presenceChunk)
			ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
			_, err := b.eval(ctx, "refresh presence", presenceAddScript, b.presenceKeys(topic), append([]any{ttl.Milliseconds()}, args[:n]...)...)
			cancel()
			if err != nil {
				b.log.Warn("redis backplane: presence refresh failed", "topic", topic, "err", err)
				break
			}
			args = args[n:]
		}
	}
}

// closePresence stops the refresh and removes the node's entries, within
// a second.
func (b *Backplane) closePresence() {
	p := &b.pres
	p.mu.Lock()
	p.closed = true
	topics := p.topics
	p.topics = nil
	wait := p.refresh.Stop()
	p.mu.Unlock()
	wait()
	if len(topics) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for topic, m := range topics {
		sessions := make([]any, 0, len(m))
		for s := range m {
			sessions = append(sessions, s)
		}
		if _, err := b.eval(ctx, "remove presence", presenceRemoveScript, b.presenceKeys(topic), sessions...); err != nil {
			b.log.Warn("redis backplane: removing presence at close failed", "topic", topic, "err", err)
			return
		}
	}
}
