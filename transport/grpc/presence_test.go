package fanoutgrpc_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// servers are the two servers of the calls: grpc.Server, and Server.Handler
// (connectrpc.com/connect) reached by grpc-go over h2c.
var servers = []string{"grpc.Server", "Handler"}

// newServed serves a hub with options o on the server named which.
func newServed(t *testing.T, which string, o *fanout.HubOptions) *env {
	t.Helper()
	if which == "grpc.Server" {
		return newEnv(t, envOptions{hub: o})
	}
	hub, err := fanout.NewHub(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	conn := dial(t, handlerServer(t, hub, nil).Listener.Addr().String())
	return &env{hub: hub, conn: conn, sub: fanoutv1.NewSubscribeServiceClient(conn), pub: fanoutv1.NewPublishServiceClient(conn)}
}

// presenceHub names each client after its token, with info
// {"name":token}, and keeps presence and join/leave for "room:" topics;
// "quiet:" topics keep none but may be asked; others refuse presence.
var presenceHub = fanout.HubOptions{
	Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
		info, _ := json.Marshal(map[string]string{"name": c.Token})
		return fanout.Principal{ID: c.Token, Info: info}, nil
	},
	TopicOptions: func(topic string) fanout.TopicOptions {
		switch {
		case strings.HasPrefix(topic, "room:"):
			return fanout.TopicOptions{Presence: true, JoinLeave: true, PresenceRead: fanout.PermitAuthenticated}
		case strings.HasPrefix(topic, "quiet:"):
			return fanout.TopicOptions{PresenceRead: fanout.PermitAll}
		}
		return fanout.TopicOptions{PresenceRead: fanout.PermitNone}
	},
}

// wantEvent reads a join (leave false) or leave frame of principal in topic.
func wantEvent(t *testing.T, f *frames, topic, principal string, leave bool) *fanoutv1.ClientInfo {
	t.Helper()
	fr := f.must(t)
	e, kind := fr.GetJoin(), "join"
	if leave {
		e, kind = fr.GetLeave(), "leave"
	}
	if e == nil || e.Topic != topic || e.Client.GetPrincipal() != principal {
		t.Fatalf("got %v, want the %s of %s in %s", fr, kind, principal, topic)
	}
	want := `{"name":"` + principal + `"}`
	if c := e.Client; c.Session == "" || c.Info != want {
		t.Fatalf("%s: got client %v, want a session and info %s", kind, c, want)
	}
	return e.Client
}

func wantMessage(t *testing.T, f *frames, data string) {
	t.Helper()
	if m := f.message(t); string(m.Data) != data {
		t.Fatalf("got message %q, want %q", m.Data, data)
	}
}

// TestJoinLeave: the subscribers of a topic with join/leave get the joins
// and leaves of every session, Subscribe and Connect alike, in order with
// the topic's messages: a session's own join after its reply, a join
// after the messages published before the subscribe, a leave (unsubscribe
// or disconnect) before the messages published after it.
func TestJoinLeave(t *testing.T) {
	t.Parallel()
	for _, which := range servers {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			e := newServed(t, which, &presenceHub)
			ctx := testCtx(t)

			alice := subscribe(t, withToken(ctx, "alice"), e, &fanoutv1.Subscription{Topic: "room:1"})
			alice.reply(t)
			aliceSession := wantEvent(t, alice, "room:1", "alice", false).Session
			publish(t, e.hub, "room:1", "m1")
			wantMessage(t, alice, "m1")

			bob := connect(t, withToken(ctx, "bob"), e)
			bob.send(t, sub("s1", "room:1"))
			if r := bob.reply(t); r.Id != "s1" || r.Error != nil {
				t.Fatalf("subscribe: got %v", r)
			}
			bobSession := wantEvent(t, &bob.frames, "room:1", "bob", false).Session
			if bobSession == aliceSession {
				t.Fatalf("alice and bob share the session %q", bobSession)
			}
			wantEvent(t, alice, "room:1", "bob", false)
			publish(t, e.hub, "room:1", "m2")
			wantMessage(t, alice, "m2")
			wantMessage(t, &bob.frames, "m2")

			// The leave of an unsubscribe is delivered before its reply.
			bob.send(t, unsub("u1", "room:1"))
			if r := bob.reply(t); r.Id != "u1" || r.Error != nil {
				t.Fatalf("unsubscribe: got %v", r)
			}
			publish(t, e.hub, "room:1", "m3")
			if c := wantEvent(t, alice, "room:1", "bob", true); c.Session != bobSession {
				t.Fatalf("leave of session %q, want %q", c.Session, bobSession)
			}
			wantMessage(t, alice, "m3")

			// A session that disconnects leaves too.
			carolCtx, carolGone := context.WithCancel(withToken(ctx, "carol"))
			carol := subscribe(t, carolCtx, e, &fanoutv1.Subscription{Topic: "room:1"})
			carol.reply(t)
			wantEvent(t, carol, "room:1", "carol", false)
			wantEvent(t, alice, "room:1", "carol", false)
			carolGone()
			wantEvent(t, alice, "room:1", "carol", true)
			publish(t, e.hub, "room:1", "m4")
			wantMessage(t, alice, "m4")

			// Topics without join/leave send none.
			bob.send(t, sub("s2", "quiet:1"))
			bob.reply(t)
			publish(t, e.hub, "quiet:1", "q")
			wantMessage(t, &bob.frames, "q")
		})
	}
}

func presenceCmd(id, topic string, count bool) *fanoutv1.Command {
	if count {
		return &fanoutv1.Command{Id: id, Command: &fanoutv1.Command_PresenceCount{PresenceCount: &fanoutv1.PresenceRequest{Topic: topic}}}
	}
	return &fanoutv1.Command{Id: id, Command: &fanoutv1.Command_Presence{Presence: &fanoutv1.PresenceRequest{Topic: topic}}}
}

// TestConnectPresence: presence and presence_count on Connect answer with
// the topic's subscribers and their count, on every server.
func TestConnectPresence(t *testing.T) {
	t.Parallel()
	for _, which := range servers {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			e := newServed(t, which, &presenceHub)
			ctx := testCtx(t)
			alice := connect(t, withToken(ctx, "alice"), e)
			alice.send(t, sub("s", "room:1"))
			alice.reply(t)
			wantEvent(t, &alice.frames, "room:1", "alice", false)
			bob := subscribe(t, withToken(ctx, "bob"), e, &fanoutv1.Subscription{Topic: "room:1"})
			bob.reply(t)
			wantEvent(t, bob, "room:1", "bob", false)
			wantEvent(t, &alice.frames, "room:1", "bob", false)

			alice.send(t, presenceCmd("p", "room:1", false))
			r := alice.reply(t)
			if r.Id != "p" || r.Topic != "room:1" || r.Error != nil || r.Count != nil {
				t.Fatalf("presence: got %v, want an ok reply without count", r)
			}
			var names []string
			for _, c := range r.GetPresence().GetClients() {
				if c.Session == "" || c.Info != `{"name":"`+c.Principal+`"}` {
					t.Fatalf("presence entry %v, want a session and info", c)
				}
				names = append(names, c.Principal)
			}
			slices.Sort(names)
			if !slices.Equal(names, []string{"alice", "bob"}) {
				t.Fatalf("presence %v, want alice and bob", names)
			}

			alice.send(t, presenceCmd("c", "room:1", true))
			if r := alice.reply(t); r.Id != "c" || r.Error != nil || r.Count == nil || *r.Count != 2 || r.Presence != nil {
				t.Fatalf("presence_count: got %v, want count 2", r)
			}

			// A topic without presence: an empty list, which the reply
			// still carries, and a count of 0.
			alice.send(t, presenceCmd("q", "quiet:1", false))
			if r := alice.reply(t); r.Error != nil || r.Presence == nil || len(r.Presence.Clients) != 0 {
				t.Fatalf("presence of a topic without: got %v, want an empty list", r)
			}
			alice.send(t, presenceCmd("qc", "quiet:1", true))
			if r := alice.reply(t); r.Error != nil || r.Count == nil || *r.Count != 0 {
				t.Fatalf("presence_count of a topic without: got %v, want 0", r)
			}

			// Refusals are replies; the stream goes on.
			for _, tc := range []struct {
				cmd  *fanoutv1.Command
				code string
			}{
				{presenceCmd("f", "other", false), "forbidden"},
				{presenceCmd("fc", "other", true), "forbidden"},
				{presenceCmd("i", "a b", false), "invalid_topic"},
				{presenceCmd("ic", "", true), "invalid_topic"},
			} {
				alice.send(t, tc.cmd)
				if r := alice.reply(t); r.Id != tc.cmd.Id || r.GetError().GetCode() != tc.code || r.Presence != nil || r.Count != nil {
					t.Fatalf("%v: got %v, want %s", tc.cmd, r, tc.code)
				}
			}
			alice.send(t, &fanoutv1.Command{Id: "ping", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
			if r := alice.reply(t); r.Id != "ping" {
				t.Fatalf("got %v, want the ping reply", r)
			}
		})
	}
}

// TestConnectServerSubscriptions: Hub.Subscribe reaches a principal's
// Connect streams with a subscribed frame, the snapshot when asked, then
// the topic's messages; Hub.Unsubscribe ends it with an unsubscribed
// frame. Subscribe streams, whose topics are fixed, are left alone.
func TestConnectServerSubscriptions(t *testing.T) {
	t.Parallel()
	for _, which := range servers {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			e := newServed(t, which, &presenceHub)
			ctx := testCtx(t)
			alice := connect(t, withToken(ctx, "alice"), e)
			alice.send(t, &fanoutv1.Command{Id: "ping", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
			alice.reply(t) // the session is attached
			fixed := subscribe(t, withToken(ctx, "alice"), e, &fanoutv1.Subscription{Topic: "fixed"})
			fixed.reply(t)
			bob := connect(t, withToken(ctx, "bob"), e)
			bob.send(t, &fanoutv1.Command{Id: "ping", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
			bob.reply(t)

			publish(t, e.hub, "booking/1", "v1", fanout.WithKey("state"))
			last := publish(t, e.hub, "booking/1", "v2", fanout.WithKey("state"))
			if err := e.hub.Subscribe(ctx, "alice", "booking/1", &fanout.ServerSubscribeOptions{Snapshot: true}); err != nil {
				t.Fatal(err)
			}
			s := alice.must(t).GetSubscribed()
			if s == nil || s.Topic != "booking/1" || !s.Snapshot || s.Position.GetSeq() != last.Seq || s.Position.GetEpoch() != last.Epoch {
				t.Fatalf("got %v, want subscribed to booking/1 at %v with a snapshot", s, last)
			}
			snap := alice.must(t).GetSnapshot()
			if snap == nil || snap.Topic != "booking/1" || len(snap.Items) != 1 || string(snap.Items[0].Data) != "v2" || snap.Position.GetSeq() != last.Seq {
				t.Fatalf("got %v, want the snapshot with v2", snap)
			}
			publish(t, e.hub, "booking/1", "v3", fanout.WithKey("state"))
			wantMessage(t, &alice.frames, "v3")

			// The Subscribe stream of alice and bob's stream got nothing.
			publish(t, e.hub, "fixed", "f")
			wantMessage(t, fixed, "f")
			bob.send(t, &fanoutv1.Command{Id: "ping2", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
			if r := bob.reply(t); r.Id != "ping2" {
				t.Fatalf("bob got %v, want only his ping reply", r)
			}

			if err := e.hub.Unsubscribe(ctx, "alice", "booking/1"); err != nil {
				t.Fatal(err)
			}
			if u := alice.must(t).GetUnsubscribed(); u == nil || u.Topic != "booking/1" {
				t.Fatalf("got %v, want unsubscribed from booking/1", u)
			}
			publish(t, e.hub, "booking/1", "unseen")
			alice.send(t, &fanoutv1.Command{Id: "ping3", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
			if r := alice.reply(t); r.Id != "ping3" {
				t.Fatalf("got %v after unsubscribed, want only the ping reply", r)
			}

			// Without a snapshot; the client may unsubscribe it itself.
			if err := e.hub.Subscribe(ctx, "alice", "booking/1", nil); err != nil {
				t.Fatal(err)
			}
			if s := alice.must(t).GetSubscribed(); s == nil || s.Snapshot || s.Position.GetSeq() != last.Seq+2 {
				t.Fatalf("got %v, want subscribed without a snapshot at seq %d", s, last.Seq+2)
			}
			alice.send(t, unsub("u", "booking/1"))
			if r := alice.reply(t); r.Id != "u" || r.Error != nil {
				t.Fatalf("unsubscribe: got %v", r)
			}

			// Disconnect ends the Connect and the Subscribe stream.
			if err := e.hub.Disconnect(ctx, "alice", nil); err != nil {
				t.Fatal(err)
			}
			for _, f := range []*frames{&alice.frames, fixed} {
				c, err := f.end(t)
				if c.Code != uint32(fanout.CloseDisconnected) || c.Reconnect {
					t.Fatalf("got close %v, want 4007 without reconnect", c)
				}
				if status.Code(err) != codes.PermissionDenied {
					t.Fatalf("got status %v, want PermissionDenied", err)
				}
				if reason, md := errorInfo(t, err); reason != "SESSION_CLOSED" || md["close_code"] != "4007" || md["reconnect"] != "false" {
					t.Fatalf("got status %v, want SESSION_CLOSED with close code 4007", err)
				}
			}
		})
	}
}
