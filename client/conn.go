package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// loop is the state of the client's connection goroutine, which alone
// reads and writes the connection and owns the subscriptions' protocol
// state. The application talks to it through Client.post.
type loop struct {
	c *Client

	subs    map[string]*Subscription // the application's subscriptions by topic
	waiting []*publishRequest        // publishes waiting for a connection

	// Reconnect policy; reset when a connection becomes healthy.
	attempt      int  // attempts since then
	unauthorized int  // unauthorized refusals since the last accepted handshake
	rushed       bool // an immediate reconnect after a shutdown was spent
	at           int  // index in Client.urls of the last endpoint tried

	// Per connection.
	conn      *websocket.Conn
	held      map[string]*Subscription // which subscription holds each topic on the server
	calls     map[string]call          // commands awaiting their reply
	pinging   bool                     // a ping is out: the server must send something
	broken    error                    // the connection must be dropped
	closeCode fanout.CloseCode         // from the server's close frame
	closeWhy  string
	refresh   *time.Timer // fires when the credentials are due for a refresh
}

type callKind uint8

const (
	callSubscribe callKind = iota + 1
	callUnsubscribe
	callPublish
	callPing
	callRefresh
)

// call is a command awaiting its reply.
type call struct {
	kind     callKind
	sub      *Subscription
	since    bool // the subscribe resumed from a position
	snapshot bool // the subscribe asked for a snapshot
	pub      *publishRequest
}

// ending is why a connection or a connection attempt ended.
type ending struct {
	code   fanout.CloseCode // 0 when there was none
	reason string
	err    error
}

// run owns the connection: it serves it, and after it ends waits and
// reconnects, until Close or until the close code says to stop.
func (c *Client) run(conn *websocket.Conn, at int) {
	defer c.wg.Done()
	l := &loop{c: c, subs: make(map[string]*Subscription), at: at}
	for {
		end := l.serve(conn)
		conn = nil
		for conn == nil {
			if c.ctx.Err() != nil {
				l.stop(ErrClosed)
				return
			}
			delay, fatal := l.policy(end)
			if fatal != nil {
				c.notes.post(Status{Kind: StatusDisconnected, Code: end.code, Reason: end.reason, Err: end.err})
				l.stop(fatal)
				return
			}
			c.notes.post(Status{Kind: StatusDisconnected, Code: end.code, Reason: end.reason, Err: end.err, Retry: delay})
			if !l.wait(delay) {
				l.stop(ErrClosed)
				return
			}
			// The next endpoint in turn: a node that failed is tried
			// again only after the others.
			l.at = (l.at + 1) % len(c.urls)
			url := c.urls[l.at]
			c.notes.post(Status{Kind: StatusConnecting, Attempt: l.attempt, URL: url})
			var err error
			conn, err = c.connect(c.ctx, url)
			if err != nil {
				end = ending{err: err}
				var ce *CloseError
				if errors.As(err, &ce) {
					end.code, end.reason = ce.Code, ce.Reason
				}
			}
		}
	}
}

// policy decides, after a connection or an attempt ended, how long to
// wait before the next attempt, or that the client must stop.
func (l *loop) policy(end ending) (time.Duration, error) {
	o := &l.c.opts
	switch end.code {
	case fanout.CloseShutdown:
		if !l.rushed {
			l.rushed = true
			l.attempt++
			return 0, nil
		}
	case fanout.CloseUnauthorized:
		l.unauthorized++
		if o.Token == nil || l.unauthorized > 1 {
			return 0, &CloseError{Code: end.code, Reason: end.reason}
		}
	case fanout.CloseBadRequest, fanout.CloseProtocol, fanout.CloseTooLarge:
		return 0, &CloseError{Code: end.code, Reason: end.reason}
	}
	if stops(end.code) {
		return 0, &CloseError{Code: end.code, Reason: end.reason}
	}
	l.attempt++
	return backoff(l.attempt, o.BackoffMin, o.BackoffMax, rand.Int64N), nil
}

// wait waits d, serving the application's requests meanwhile. It reports
// false when the client was closed.
func (l *loop) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-l.c.wake:
			l.serveInbox()
		case <-l.c.ctx.Done():
			return false
		}
	}
}

// stop ends the client with err: every subscription and publish learns it.
func (l *loop) stop(err error) {
	reqs := l.c.stop(err)
	for _, r := range reqs {
		switch r.op {
		case opSubscribe:
			r.sub.answer(err)
			r.sub.end(err)
		case opPublish:
			r.pub.res <- publishResult{err: err}
		}
	}
	for _, s := range l.subs {
		s.answer(err)
		s.end(err)
	}
	for _, p := range l.waiting {
		p.res <- publishResult{err: err}
	}
	l.c.notes.post(Status{Kind: StatusStopped, Err: err})
	l.c.notes.close()
}

type readResult struct {
	frames []wire.Frame
	err    error
}

// serve runs one connection until it ends.
func (l *loop) serve(conn *websocket.Conn) ending {
	c := l.c
	l.conn = conn
	l.unauthorized = 0 // the server took the token
	l.held = make(map[string]*Subscription)
	l.calls = make(map[string]call)
	l.pinging, l.broken, l.closeCode, l.closeWhy = false, nil, 0, ""

	reads := make(chan readResult)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var fs []wire.Frame
		for {
			_, b, err := conn.Read(context.Background())
			if err == nil {
				fs, err = decodeFrames(fs[:0:0], b)
			}
			select {
			case reads <- readResult{frames: fs, err: err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	graceful := false
	defer func() {
		close(stop)
		if !graceful {
			conn.CloseNow()
		}
		<-readerDone
		l.disconnected()
	}()

	c.notes.post(Status{Kind: StatusConnected})
	healthy := time.NewTimer(c.opts.HealthyAfter)
	defer healthy.Stop()
	var pingTick <-chan time.Time
	if c.opts.PingInterval > 0 {
		t := time.NewTicker(c.opts.PingInterval)
		defer t.Stop()
		pingTick = t.C
	}
	pingTimer := time.NewTimer(time.Hour)
	pingTimer.Stop()
	defer pingTimer.Stop()
	l.refresh = time.NewTimer(time.Hour)
	l.refresh.Stop()
	defer l.refresh.Stop()
	tokens := make(chan tokenResult, 1)

	l.serveInbox()
	for _, s := range l.subs {
		l.subscribe(s)
	}
	waiting := l.waiting
	l.waiting = nil
	for _, p := range waiting {
		l.publish(p)
	}
	for l.broken == nil {
		select {
		case r := <-reads:
			if r.err != nil {
				return l.ending(r.err)
			}
			if l.pinging {
				l.pinging = false
				pingTimer.Stop()
			}
			for i := range r.frames {
				l.handle(&r.frames[i])
				if l.broken != nil {
					break
				}
			}
		case <-c.wake:
			l.serveInbox()
		case <-healthy.C:
			l.attempt, l.rushed = 0, false
		case <-pingTick:
			if !l.pinging {
				l.pinging = true
				pingTimer.Reset(c.opts.PingTimeout)
				id := c.newID()
				l.calls[id] = call{kind: callPing}
				l.send(pingCommand(id))
			}
		case <-pingTimer.C:
			return ending{err: errPingTimeout}
		case <-l.refresh.C:
			l.fetchToken(tokens)
		case r := <-tokens:
			// A token that cannot be had leaves the connection until the
			// server closes it with 4002; the reconnect asks again.
			if r.err == nil && r.token != "" {
				id := c.newID()
				l.calls[id] = call{kind: callRefresh}
				l.send(refreshCommand(id, r.token))
			}
		case <-c.ctx.Done():
			graceful = true
			conn.Close(websocket.StatusNormalClosure, "")
			return ending{code: fanout.CloseNormal, err: ErrClosed}
		}
	}
	return ending{err: l.broken}
}

// ending describes the end of the connection from the read error.
func (l *loop) ending(err error) ending {
	if code := websocket.CloseStatus(err); code != -1 {
		var ce websocket.CloseError
		errors.As(err, &ce)
		return ending{code: fanout.CloseCode(code), reason: ce.Reason, err: err}
	}
	if l.closeCode != 0 {
		return ending{code: l.closeCode, reason: l.closeWhy, err: err}
	}
	return ending{err: err}
}

// disconnected forgets the connection's state: every subscription will be
// subscribed again, and publishes awaiting a reply will be sent again, in
// the order they were first sent, with the same idempotency key.
func (l *loop) disconnected() {
	var lost []*publishRequest
	for _, cl := range l.calls {
		if cl.kind == callPublish {
			lost = append(lost, cl.pub)
		}
	}
	slices.SortFunc(lost, func(a, b *publishRequest) int { return cmp.Compare(a.seq, b.seq) })
	l.waiting = append(lost, l.waiting...)
	for _, s := range l.subs {
		s.state = subIdle
	}
	l.conn, l.held, l.calls = nil, nil, nil
}

// send writes one command; a failure breaks the connection.
func (l *loop) send(b []byte) {
	if l.broken != nil {
		return
	}
	ctx, cancel := context.WithTimeout(l.c.ctx, l.c.opts.PingTimeout)
	defer cancel()
	if err := l.conn.Write(ctx, websocket.MessageText, b); err != nil {
		l.broken = err
	}
}

// serveInbox handles the application's requests.
func (l *loop) serveInbox() {
	for _, r := range l.c.takeInbox() {
		s := r.sub
		switch r.op {
		case opSubscribe:
			if l.subs[s.topic] != nil {
				s.answer(ErrAlreadySubscribed)
				continue
			}
			l.subs[s.topic] = s
			l.subscribe(s)
		case opRemove:
			if l.subs[s.topic] == s {
				delete(l.subs, s.topic)
			}
			s.removed = true
			s.answer(ErrClosed)
			if s.state == subLive || s.state == subAwaitSnap {
				l.unsubscribe(s)
			}
		case opResume:
			if l.subs[s.topic] == s {
				l.subscribe(s)
			}
		case opPublish:
			if l.conn == nil {
				// Forget the publishes given up meanwhile, so that callers
				// that retry with deadlines during an outage pile nothing up.
				l.waiting = slices.DeleteFunc(l.waiting, func(p *publishRequest) bool { return p.cancelled.Load() })
				l.waiting = append(l.waiting, r.pub)
			} else {
				l.publish(r.pub)
			}
		}
	}
}

// subscribe sends s's subscribe if it is due: connected, not on the
// server, the topic free there, and the buffer not parked.
func (l *loop) subscribe(s *Subscription) {
	if l.conn == nil || l.broken != nil || s.state != subIdle || l.held[s.topic] != nil || s.isParked() {
		return
	}
	id := l.c.newID()
	cl := call{kind: callSubscribe, sub: s}
	var cmd []byte
	if s.hasPos {
		cl.since = true
		cmd = subscribeCommand(id, s.topic, &s.pos, false)
	} else {
		cl.snapshot = s.snap
		cmd = subscribeCommand(id, s.topic, nil, s.snap)
	}
	s.state = subPending
	l.held[s.topic] = s
	l.calls[id] = cl
	l.send(cmd)
}

// unsubscribe takes s off the server; the reply settles what follows.
func (l *loop) unsubscribe(s *Subscription) {
	id := l.c.newID()
	s.state = subLeaving
	l.calls[id] = call{kind: callUnsubscribe, sub: s}
	l.send(unsubscribeCommand(id, s.topic))
}

func (l *loop) publish(p *publishRequest) {
	if p.cancelled.Load() {
		return
	}
	l.calls[p.id] = call{kind: callPublish, pub: p}
	l.send(p.cmd)
}

// handle acts on one server frame.
func (l *loop) handle(f *wire.Frame) {
	switch f.Type {
	case wire.FrameMsg:
		if s := l.held[f.Topic]; s != nil && s.state == subLive {
			l.deliver(s, message(f.Message))
		}
	case wire.FrameReply:
		cl, ok := l.calls[f.ID]
		if !ok {
			return // a reply to a ping already settled by other frames
		}
		delete(l.calls, f.ID)
		l.reply(cl, f)
	case wire.FrameSnapshot:
		s := l.held[f.Topic]
		if s == nil || s.state != subAwaitSnap {
			return // the subscription was closed meanwhile
		}
		snap := Event{Kind: EventSnapshot, Snapshot: messages(f.Items), Position: *f.Position}
		if s.reset {
			s.pushAll(Event{Kind: EventReset, Position: s.pos}, snap)
		} else {
			s.pushAll(snap)
		}
		s.pos, s.hasPos, s.reset, s.state = *f.Position, true, false, subLive
	case wire.FrameClose:
		l.closeCode, l.closeWhy = f.Code, f.Reason
	case wire.FrameSubscribed:
		l.serverSubscribed(f)
	case wire.FrameUnsubscribed:
		l.serverUnsubscribed(f)
	case wire.FrameExpiry:
		l.expires(f.Expires)
	case wire.FrameJoin, wire.FrameLeave:
		if s := l.held[f.Topic]; s != nil && s.state == subLive && f.Client != nil {
			ev := Event{Kind: EventJoin, Client: *f.Client, Position: s.pos}
			if f.Type == wire.FrameLeave {
				ev.Kind = EventLeave
			}
			if !s.push(ev) {
				l.unsubscribe(s) // parked until the application drains
			}
		}
	}
}

// deliver buffers a live message, dropping what it already has and
// resubscribing on a gap or a full buffer.
func (l *loop) deliver(s *Subscription, m Message) {
	p, last := m.Position, s.pos
	if p.Epoch == last.Epoch && p.Seq <= last.Seq {
		return // a duplicate
	}
	if p.Seq != last.Seq+1 || (p.Epoch != last.Epoch && last.Seq != 0) {
		l.unsubscribe(s) // a gap: resubscribe from s.pos
		return
	}
	if !s.push(Event{Kind: EventMessage, Message: m, Position: p}) {
		l.unsubscribe(s) // parked until the application drains
		return
	}
	s.pos = p
}

// reply settles the command cl with its reply f.
func (l *loop) reply(cl call, f *wire.Frame) {
	switch cl.kind {
	case callRefresh:
		if f.OK {
			l.expires(f.Expires)
		}
	case callPing:
	case callPublish:
		r := publishResult{}
		switch {
		case !f.OK:
			r.err = serverError(f)
		case cl.pub.query:
			r.presence = f.Presence
			if f.Count != nil {
				r.count = *f.Count
			}
		case f.Position == nil:
			r.err = fmt.Errorf("%w: publish reply without position", wire.ErrMalformed)
		default:
			r.pos = *f.Position
		}
		cl.pub.res <- r
	case callUnsubscribe:
		s := cl.sub
		if l.held[s.topic] == s {
			delete(l.held, s.topic)
		}
		s.state = subIdle
		if next := l.subs[s.topic]; next != nil {
			l.subscribe(next)
		}
	case callSubscribe:
		l.subscribed(cl, f)
	}
}

func (l *loop) subscribed(cl call, f *wire.Frame) {
	s := cl.sub
	if !f.OK {
		if l.held[s.topic] == s {
			delete(l.held, s.topic)
		}
		s.state = subIdle
		err := serverError(f)
		switch {
		case s.removed:
			if next := l.subs[s.topic]; next != nil {
				l.subscribe(next)
			}
		case !s.started:
			delete(l.subs, s.topic)
			s.answer(err)
			s.end(err)
		case transient(err.Code):
			l.broken = fmt.Errorf("client: resubscribe %q: %w", s.topic, err)
		default:
			delete(l.subs, s.topic)
			s.end(err)
		}
		return
	}
	if s.removed {
		l.unsubscribe(s)
		return
	}
	switch {
	case cl.since:
		recovered := f.Recovered == nil || *f.Recovered
		l.c.notes.post(Status{Kind: StatusResumed, Topic: s.topic, Recovered: recovered})
		if recovered {
			s.state = subLive
		} else {
			s.reset, s.state = true, subAwaitSnap
		}
	case cl.snapshot:
		s.state = subAwaitSnap
	case f.Position == nil:
		l.broken = fmt.Errorf("%w: subscribe reply without position", wire.ErrMalformed)
		return
	default:
		s.pos, s.hasPos, s.state = *f.Position, true, subLive
	}
	s.answer(nil)
}
