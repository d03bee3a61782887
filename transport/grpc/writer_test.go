package fanoutgrpc_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		hub, err := fanout.NewHub(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		sess, err := hub.NewSession(fanout.Principal{})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close(fanout.CloseNormal, "")
		sent := make(chan int, 16) // frames per Frames message
		send := func(fs *fanoutv1.Frames) error {
			sent <- len(fs.ProtoReflect().GetUnknown())
			return nil
		}
		srv := fanoutgrpc.New(hub, &fanoutgrpc.Options{Heartbeat: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- fanoutgrpc.RunWriter(ctx, srv, sess, send) }()

		expect := func(what string, want int) {
			t.Helper()
			synctest.Wait()
			select {
			case n := <-sent:
				if want < 0 || (want == 0) != (n == 0) {
					t.Fatalf("%s: got a message of %d bytes, want %d", what, n, want)
				}
			default:
				if want >= 0 {
					t.Fatalf("%s: got nothing, want a message", what)
				}
			}
		}
		time.Sleep(999 * time.Millisecond)
		expect("before the period", -1)
		time.Sleep(time.Millisecond)
		expect("after a silent period", 0)
		time.Sleep(time.Second)
		expect("after another", 0)

		time.Sleep(500 * time.Millisecond)
		sess.Reply(fanout.Reply{ID: "x"})
		expect("a frame", 1)
		time.Sleep(999 * time.Millisecond)
		expect("within a period of the frame", -1)
		time.Sleep(time.Millisecond)
		expect("a period after the frame", 0)

		cancel()
		if err := <-done; err == nil {
			t.Fatalf("got nil, want the stream's end")
		}
	})
}

func TestHeartbeatOverTheWire(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{server: &fanoutgrpc.Options{Heartbeat: 10 * time.Millisecond}})
	ctx := testCtx(t)
	st, err := e.sub.Subscribe(ctx, &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: "hb"}}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		fs, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(fs.Frames) == 0 {
			break // a heartbeat
		}
	}
	publish(t, e.hub, "hb", "after")
	for {
		fs, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(fs.Frames) > 0 {
			if m := fs.Frames[0].GetMessage(); m == nil || string(m.Data) != "after" {
				t.Fatalf("got %v, want the message", fs.Frames[0])
			}
			break
		}
	}
}
