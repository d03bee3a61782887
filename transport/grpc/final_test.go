package fanoutgrpc_test

import (
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// wantEnd reads the close frame of a stream whose topics all ended, which
// must travel in the Frames message of the final message, and the OK
// status (io.EOF) after it.
func wantEnd(t *testing.T, fs *frames) {
	t.Helper()
	batches := fs.batches
	c, err := fs.end(t)
	if err != nil {
		t.Fatalf("got status %v, want OK", err)
	}
	if c.Code != uint32(fanout.CloseNormal) || c.Reason != "topic ended" || c.Reconnect {
		t.Fatalf("got close %v, want 1000 \"topic ended\" without reconnect", c)
	}
	if fs.batches != batches {
		t.Fatalf("the close frame came in another Frames message than the final message")
	}
}

// wantFinal reads the final message of topic at p.
func wantFinal(t *testing.T, fs *frames, topic string, p fanout.Position) {
	t.Helper()
	m := fs.message(t)
	if m.Topic != topic || m.Seq != p.Seq || m.Epoch != p.Epoch || m.Headers[fanout.HeaderFinal] != "true" {
		t.Fatalf("got %v, want the final message of %s at %v", m, topic, p)
	}
}

// wantOpen checks that the stream still delivers topic's messages.
func wantOpen(t *testing.T, fs *frames, h *fanout.Hub, topic string) {
	t.Helper()
	p := publish(t, h, topic, "still open")
	if m := fs.message(t); m.Topic != topic || m.Seq != p.Seq {
		t.Fatalf("got %v, want %s #%d: the stream should still be open", m, topic, p.Seq)
	}
}

func TestSubscribeEndsOnFinalMessage(t *testing.T) {
	t.Parallel()
	cl := make(closes, 4)
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Observer: cl}})
	ctx := testCtx(t)
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "saga.1"})
	if r := fs.reply(t); r.Error != nil {
		t.Fatalf("got %v, want an ok reply", r)
	}
	publish(t, e.hub, "saga.1", "running", fanout.WithKey("saga"))
	final := publish(t, e.hub, "saga.1", "done", fanout.WithKey("saga"), fanout.WithFinal())
	publish(t, e.hub, "saga.1", "after the end")
	if m := fs.message(t); m.Seq != 1 || m.Headers[fanout.HeaderFinal] != "" {
		t.Fatalf("got %v, want #1, not final", m)
	}
	wantFinal(t, fs, "saga.1", final)
	wantEnd(t, fs)
	if code := waitClose(t, ctx, cl); code != fanout.CloseNormal {
		t.Errorf("got session close %d, want %d", code, fanout.CloseNormal)
	}
}

// TestSubscribeEndsAfterEveryTopic: a stream of several topics ends once
// each of them delivered its final message, not before; what a topic
// publishes after its end is not sent.
func TestSubscribeEndsAfterEveryTopic(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "m.a"}, &fanoutv1.Subscription{Topic: "m.b"}, &fanoutv1.Subscription{Topic: "m.c"})
	for range 3 {
		fs.reply(t)
	}
	fa := publish(t, e.hub, "m.a", "a done", fanout.WithFinal())
	wantFinal(t, fs, "m.a", fa)
	wantOpen(t, fs, e.hub, "m.b")
	publish(t, e.hub, "m.a", "a after its end")
	fc := publish(t, e.hub, "m.c", "c done", fanout.WithFinal())
	wantFinal(t, fs, "m.c", fc)
	wantOpen(t, fs, e.hub, "m.b")
	publish(t, e.hub, "m.c", "c after its end")
	fb := publish(t, e.hub, "m.b", "b done", fanout.WithFinal())
	wantFinal(t, fs, "m.b", fb)
	wantEnd(t, fs)
}

// TestSubscribeEndsAfterSnapshot: a late subscriber whose snapshot holds
// the final message ends right after it; with several topics, once the
// others ended too.
func TestSubscribeEndsAfterSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	publish(t, e.hub, "s.a", "flight confirmed", fanout.WithKey("flight"))
	fa := publish(t, e.hub, "s.a", "completed", fanout.WithKey("saga"), fanout.WithFinal())
	publish(t, e.hub, "s.b", "running", fanout.WithKey("saga"))

	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "s.a", Snapshot: true})
	fs.reply(t)
	if s := fs.must(t).GetSnapshot(); s == nil || s.Position.GetSeq() != fa.Seq || len(s.Items) != 2 {
		t.Fatalf("got %v, want the snapshot at the final message", s)
	}
	wantEnd(t, fs)

	fs = subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "s.a", Snapshot: true}, &fanoutv1.Subscription{Topic: "s.b", Snapshot: true})
	for range 2 {
		fs.reply(t)
		if s := fs.must(t).GetSnapshot(); s == nil {
			t.Fatalf("got %v, want a snapshot", s)
		}
	}
	wantOpen(t, fs, e.hub, "s.b")
	fb := publish(t, e.hub, "s.b", "compensated", fanout.WithKey("saga"), fanout.WithFinal())
	wantFinal(t, fs, "s.b", fb)
	wantEnd(t, fs)
}

// TestSubscribeEndsOnResume: a subscription with since whose history holds
// the final message ends after replaying it.
func TestSubscribeEndsOnResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	p1 := publish(t, e.hub, "r.end", "booking", fanout.WithKey("flight"))
	publish(t, e.hub, "r.end", "confirmed", fanout.WithKey("flight"))
	final := publish(t, e.hub, "r.end", "completed", fanout.WithKey("saga"), fanout.WithFinal())
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "r.end", Since: &fanoutv1.Position{Epoch: p1.Epoch, Seq: p1.Seq}})
	if r := fs.reply(t); !r.GetRecovered() {
		t.Fatalf("got %v, want a recovered reply", r)
	}
	if m := fs.message(t); m.Seq != 2 {
		t.Fatalf("got %v, want #2", m)
	}
	wantFinal(t, fs, "r.end", final)
	wantEnd(t, fs)
}

// TestConnectDoesNotEnd: a Connect stream carries the final message, with
// its header, and stays open.
func TestConnectDoesNotEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	c := connect(t, ctx, e)
	c.send(t, &fanoutv1.Command{Id: "1", Command: &fanoutv1.Command_Subscribe{Subscribe: &fanoutv1.Subscription{Topic: "c.end"}}})
	if r := c.reply(t); r.Id != "1" || r.Error != nil {
		t.Fatalf("got %v, want the ok reply", r)
	}
	final := publish(t, e.hub, "c.end", "done", fanout.WithFinal())
	wantFinal(t, &c.frames, "c.end", final)
	c.send(t, &fanoutv1.Command{Id: "2", Command: &fanoutv1.Command_Ping{Ping: &fanoutv1.Ping{}}})
	if r := c.reply(t); r.Id != "2" || r.Error != nil {
		t.Fatalf("got %v, want the ping's reply: the stream is still open", r)
	}
}
