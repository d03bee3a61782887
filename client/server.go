package client

import (
	"errors"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// ErrUnsubscribed: the server ended the subscription (a server-side
// unsubscribe, [fanout.Hub.Unsubscribe]). The client does not resume it.
var ErrUnsubscribed = errors.New("client: unsubscribed by the server")

// serverSubscribed takes a subscription that server code made
// ([fanout.Hub.Subscribe]): a subscribed frame, which is the ok reply to a
// subscribe the client did not send.
func (l *loop) serverSubscribed(f *wire.Frame) {
	if s := l.subs[f.Topic]; s != nil {
		// The application subscribed to the topic too, and the server
		// took the server's subscribe first: this frame answers the
		// application's subscribe, which the server will refuse as
		// already subscribed.
		if s.state != subPending || l.held[f.Topic] != s {
			return
		}
		for id, cl := range l.calls {
			if cl.kind == callSubscribe && cl.sub == s {
				delete(l.calls, id)
				l.subscribed(call{kind: callSubscribe, sub: s, snapshot: f.Snapshot},
					&wire.Frame{Type: wire.FrameReply, OK: true, Topic: f.Topic, Position: f.Position})
				return
			}
		}
		return
	}
	if l.held[f.Topic] != nil {
		return // a subscription of the topic is leaving; its reply settles the topic
	}
	on := l.c.opts.OnServerSubscribe
	if on == nil {
		// Nobody would read it: decline.
		id := l.c.newID()
		l.calls[id] = call{kind: callPing}
		l.send(unsubscribeCommand(id, f.Topic))
		return
	}
	s := newSubscription(l.c, f.Topic, &SubscribeOptions{Snapshot: f.Snapshot})
	s.server = true
	s.started = true
	close(s.ready)
	l.subs[f.Topic] = s
	l.held[f.Topic] = s
	if f.Snapshot {
		s.state = subAwaitSnap
	} else {
		s.pos, s.hasPos, s.state = *f.Position, true, subLive
	}
	on(s)
}

// serverUnsubscribed ends the topic's subscription: an unsubscribed frame.
func (l *loop) serverUnsubscribed(f *wire.Frame) {
	s := l.held[f.Topic]
	if s == nil {
		return
	}
	delete(l.held, f.Topic)
	if l.subs[f.Topic] == s {
		delete(l.subs, f.Topic)
	}
	s.state = subIdle
	s.end(ErrUnsubscribed)
	if next := l.subs[f.Topic]; next != nil {
		l.subscribe(next)
	}
}

// stops reports whether the client stops after the server closed with
// code: a server-side disconnect, or an application's code from 4500.
func stops(code fanout.CloseCode) bool {
	return code == fanout.CloseDisconnected || (code >= 4500 && code <= fanout.CloseAppMax)
}

// Server reports whether server code made the subscription (see
// [Options.OnServerSubscribe]).
func (s *Subscription) Server() bool { return s.server }
