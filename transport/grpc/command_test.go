package fanoutgrpc_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// FuzzCommand feeds Connect commands decoded from arbitrary bytes to a
// session: each one is answered by exactly one reply with its id (or an
// empty id, when the id is too long), and the session stays usable.
func FuzzCommand(f *testing.F) {
	for _, c := range []*fanoutv1.Command{
		sub("1", "t"),
		{Id: "2", Command: &fanoutv1.Command_Subscribe{Subscribe: &fanoutv1.Subscription{Topic: "t", Since: &fanoutv1.Position{Epoch: "e", Seq: 3}, Snapshot: true}}},
		unsub("3", "t"),
		pub("4", "t", "data"),
		{Id: "5", Command: &fanoutv1.Command_Publish{Publish: &fanoutv1.PublishRequest{Topic: "t", Key: "k", IdempotencyKey: "i", Headers: map[string]string{"a": "b"}}}},
		{Id: "6", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}},
		{Id: "7"},
		presenceCmd("8", "t", false),
		presenceCmd("9", "t", true),
		{Id: "10", Command: &fanoutv1.Command_Presence{}},
		{Id: "11", Command: &fanoutv1.Command_PresenceCount{PresenceCount: &fanoutv1.PresenceRequest{Topic: "a b"}}},
	} {
		b, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c fanoutv1.Command
		if proto.Unmarshal(b, &c) != nil {
			t.Skip()
		}
		hub, err := fanout.NewHub(&fanout.HubOptions{Authorize: func(context.Context, fanout.Principal, string, fanout.Action) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		sess, err := hub.NewSession(fanout.Principal{})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close(fanout.CloseNormal, "")
		fanoutgrpc.Command(context.Background(), sess, &c)
		// A second command on the same session still works.
		fanoutgrpc.Command(context.Background(), sess, &fanoutv1.Command{Id: "last", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})

		wantID := c.Id
		if len(wantID) > 64 {
			wantID = ""
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		replies := 0
		for {
			frames, err := sess.Next(ctx, nil)
			if err != nil {
				break
			}
			for _, fr := range frames {
				if fr.Type == fanout.FrameClose {
					t.Fatalf("got a close %+v, want the session open", fr.Close)
				}
				if fr.Type != fanout.FrameReply {
					continue
				}
				if fr.Reply.ID == "last" && replies == 1 {
					replies++
					continue
				}
				if fr.Reply.ID != wantID {
					t.Fatalf("got reply %q, want %q", fr.Reply.ID, wantID)
				}
				replies++
			}
		}
		if replies != 2 {
			t.Fatalf("got %d replies, want one for the command and one for the ping after it", replies)
		}
	})
}
