package fanoutgrpc_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// allowPublish lets clients publish to every topic but "ro".
func allowPublish(_ context.Context, _ fanout.Principal, topic string, a fanout.Action) error {
	if a == fanout.ActionPublish && topic == "ro" {
		return errNoToken
	}
	return nil
}

func sub(id, topic string) *fanoutv1.Command {
	return &fanoutv1.Command{Id: id, Command: &fanoutv1.Command_Subscribe{Subscribe: &fanoutv1.Subscription{Topic: topic}}}
}

func unsub(id, topic string) *fanoutv1.Command {
	return &fanoutv1.Command{Id: id, Command: &fanoutv1.Command_Unsubscribe{Unsubscribe: &fanoutv1.Unsubscribe{Topic: topic}}}
}

func pub(id, topic, data string) *fanoutv1.Command {
	return &fanoutv1.Command{Id: id, Command: &fanoutv1.Command_Publish{Publish: &fanoutv1.PublishRequest{Topic: topic, Data: []byte(data)}}}
}

func TestConnectCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authorize: allowPublish}})
	ctx := testCtx(t)
	c := connect(t, ctx, e)

	c.send(t, &fanoutv1.Command{Id: "p", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
	if r := c.reply(t); r.Id != "p" || r.Error != nil {
		t.Fatalf("ping: got %v, want ok reply p", r)
	}
	c.send(t, sub("s1", "news"))
	if r := c.reply(t); r.Id != "s1" || r.Topic != "news" || r.Error != nil || r.Position == nil {
		t.Fatalf("subscribe: got %v, want ok reply s1 with a position", r)
	}
	c.send(t, pub("p1", "news", "hello"))
	// The reply and the message may come in either order: the reply is
	// queued after the publication, which delivers at once.
	var reply *fanoutv1.Reply
	var msg *fanoutv1.Message
	for reply == nil || msg == nil {
		fr := c.must(t)
		switch {
		case fr.GetReply() != nil && reply == nil:
			reply = fr.GetReply()
		case fr.GetMessage() != nil && msg == nil:
			msg = fr.GetMessage()
		default:
			t.Fatalf("got %v, want one reply and one message", fr)
		}
	}
	if reply.Id != "p1" || reply.Error != nil || reply.Position.GetSeq() != 1 {
		t.Fatalf("publish: got %v, want ok reply p1 at seq 1", reply)
	}
	if msg.Topic != "news" || string(msg.Data) != "hello" || msg.Seq != 1 {
		t.Fatalf("got %v, want news seq 1 hello", msg)
	}
	c.send(t, unsub("u1", "news"))
	if r := c.reply(t); r.Id != "u1" || r.Error != nil {
		t.Fatalf("unsubscribe: got %v, want ok reply u1", r)
	}
	publish(t, e.hub, "news", "unseen")
	c.send(t, &fanoutv1.Command{Id: "p2", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
	if r := c.reply(t); r.Id != "p2" {
		t.Fatalf("got %v after unsubscribing, want only the ping reply", r)
	}

	// The client ends its side: the stream goes on.
	c.send(t, sub("s2", "later"))
	c.reply(t)
	if err := c.st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	publish(t, e.hub, "later", "still")
	if m := c.message(t); m.Topic != "later" || string(m.Data) != "still" {
		t.Fatalf("after CloseSend: got %v, want the message", m)
	}
}

func TestConnectOversizedCommand(t *testing.T) {
	t.Parallel()
	cl := make(closes, 8)
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Observer: cl}})
	ctx := testCtx(t)
	c := connect(t, ctx, e)
	c.send(t, pub("big", "t", strings.Repeat("x", 5<<20))) // over gRPC's 4 MiB default
	_, err := c.next()
	wantCode(t, err, codes.ResourceExhausted)
	if code := waitClose(t, ctx, cl); code != fanout.CloseGoingAway {
		t.Fatalf("got close code %d, want %d", code, fanout.CloseGoingAway)
	}
}

func TestConnectErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authorize: allowPublish, MaxPayload: 10}})
	ctx := testCtx(t)
	c := connect(t, ctx, e)
	c.send(t, sub("a", "dup"))
	c.reply(t)
	for _, tc := range []struct {
		cmd  *fanoutv1.Command
		code string
	}{
		{sub("1", "bad topic"), "invalid_topic"},
		{sub("2", "dup"), "already_subscribed"},
		{unsub("3", "none"), "not_subscribed"},
		{pub("4", "ro", "x"), "forbidden"},
		{pub("5", "rw", "larger than ten bytes"), "too_large"},
		{&fanoutv1.Command{Id: "6"}, "bad_request"},
		{&fanoutv1.Command{Id: "7", Command: &fanoutv1.Command_Publish{Publish: &fanoutv1.PublishRequest{Topic: "rw", IdempotencyKey: strings.Repeat("k", fanout.MaxIdempotencyKeyLength+1)}}}, "bad_request"},
		{&fanoutv1.Command{Id: strings.Repeat("i", 65), Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}}, "bad_request"},
		{unsub("9", strings.Repeat("t", 300)), "not_subscribed"},
	} {
		c.send(t, tc.cmd)
		r := c.reply(t)
		wantID := tc.cmd.Id
		if len(wantID) > 64 {
			wantID = ""
		}
		if r.Id != wantID || r.Error.GetCode() != tc.code || r.Error.GetMessage() == "" {
			t.Fatalf("%v: got %v, want id %q error %s", tc.cmd, r, wantID, tc.code)
		}
		if len(r.Topic) > fanout.MaxTopicLength {
			t.Fatalf("got the reply echo a %d-byte topic", len(r.Topic))
		}
	}
	// The session survives errors.
	c.send(t, sub("b", "ok"))
	if r := c.reply(t); r.Id != "b" || r.Error != nil {
		t.Fatalf("got %v, want ok", r)
	}
}

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	auth := func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
		if c.Token != "good" {
			return fanout.Principal{}, errNoToken
		}
		return fanout.Principal{}, nil
	}
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authenticate: auth}})
	st, err := e.sub.Connect(testCtx(t))
	if err == nil {
		_, err = st.Recv()
	}
	wantCode(t, err, codes.Unauthenticated)

	ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer good")
	c := connect(t, ctx, e)
	c.send(t, sub("1", "t"))
	if r := c.reply(t); r.Error != nil {
		t.Fatalf("got %v, want ok", r)
	}
}

func TestConnectRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{CommandBurst: 5, CommandRate: 0.001}})
	ctx := testCtx(t)
	c := connect(t, ctx, e)
	for i := 0; i < 6; i++ {
		c.send(t, &fanoutv1.Command{Id: "p", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
	}
	for {
		fr := c.must(t)
		if fr.GetReply() != nil {
			continue // replies to the pings within the burst
		}
		if cl := fr.GetClose(); cl == nil || cl.Code != uint32(fanout.CloseRateLimited) {
			t.Fatalf("got %v, want a rate limited close", fr)
		}
		break
	}
	_, err := c.next()
	wantCode(t, err, codes.ResourceExhausted)
}
