package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

func newHub(t testing.TB, o *fanout.HubOptions) *fanout.Hub {
	t.Helper()
	h, err := fanout.NewHub(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newSession(t testing.TB, h *fanout.Hub) *fanout.Session {
	t.Helper()
	s, err := h.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(fanout.CloseNormal, "") })
	return s
}

// next returns the next frame, waiting at most a few seconds.
func next(t testing.TB, s *fanout.Session, buf *[]fanout.Frame) fanout.Frame {
	t.Helper()
	for len(*buf) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs, err := s.Next(ctx, make([]fanout.Frame, 0, 64))
		cancel()
		if err != nil {
			t.Fatalf("next frame: %v", err)
		}
		*buf = fs
	}
	f := (*buf)[0]
	*buf = (*buf)[1:]
	return f
}

func publish(t testing.TB, h *fanout.Hub, topic, data string, opts ...fanout.PublishOption) fanout.Position {
	t.Helper()
	p, err := h.Publish(context.Background(), topic, []byte(data), opts...)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return p
}

func TestSubscribeDeliversInOrder(t *testing.T) {
	t.Parallel()
	h := newHub(t, nil)
	s := newSession(t, h)
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{ID: "1", Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	f := next(t, s, &buf)
	if f.Type != fanout.FrameReply || f.Reply.Err != nil || f.Reply.ID != "1" {
		t.Fatalf("got %+v, want ok reply", f)
	}
	for i := 1; i <= 10; i++ {
		publish(t, h, "a", fmt.Sprint(i))
		publish(t, h, "b", "other")
	}
	for i := 1; i <= 10; i++ {
		f := next(t, s, &buf)
		if f.Type != fanout.FrameMessage || f.Message.Position.Seq != uint64(i) || string(f.Message.Data) != fmt.Sprint(i) {
			t.Fatalf("frame %d: got %+v", i, f.Message)
		}
	}
}

func TestResumeAndSnapshot(t *testing.T) {
	t.Parallel()
	h := newHub(t, nil)
	var last fanout.Position
	for i := 1; i <= 5; i++ {
		last = publish(t, h, "inv", fmt.Sprint(i), fanout.WithKey(fmt.Sprint("sku", i%2)))
	}
	s := newSession(t, h)
	since := fanout.Position{Epoch: last.Epoch, Seq: 2}
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "inv", Since: &since}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	if f := next(t, s, &buf); f.Reply == nil || f.Reply.Recovered == nil || !*f.Reply.Recovered {
		t.Fatalf("got %+v, want recovered reply", f)
	}
	for i := 3; i <= 5; i++ {
		if f := next(t, s, &buf); f.Message == nil || f.Message.Position.Seq != uint64(i) {
			t.Fatalf("got %+v, want seq %d", f, i)
		}
	}
	s2 := newSession(t, h)
	if err := s2.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "inv", Snapshot: true}); err != nil {
		t.Fatal(err)
	}
	var buf2 []fanout.Frame
	next(t, s2, &buf2)
	f := next(t, s2, &buf2)
	if f.Snapshot == nil || len(f.Snapshot.Items) != 2 || f.Snapshot.Position != last {
		t.Fatalf("got %+v, want snapshot of 2 items at %v", f.Snapshot, last)
	}
	publish(t, h, "inv", "6")
	if f := next(t, s2, &buf2); f.Message == nil || f.Message.Position.Seq != 6 {
		t.Fatalf("got %+v, want seq 6", f)
	}
	// Beyond history: another epoch.
	s3 := newSession(t, h)
	old := fanout.Position{Epoch: "gone", Seq: 3}
	if err := s3.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "inv", Since: &old}); err != nil {
		t.Fatal(err)
	}
	var buf3 []fanout.Frame
	if f := next(t, s3, &buf3); f.Reply.Recovered == nil || *f.Reply.Recovered {
		t.Fatalf("got %+v, want recovered=false", f.Reply)
	}
	if f := next(t, s3, &buf3); f.Snapshot == nil {
		t.Fatalf("got %+v, want snapshot", f)
	}
}

func TestSlowConsumerClosed(t *testing.T) {
	t.Parallel()
	h := newHub(t, &fanout.HubOptions{QueueMessages: 10})
	slow := newSession(t, h)
	fast := newSession(t, h)
	for _, s := range []*fanout.Session{slow, fast} {
		if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	var fb []fanout.Frame
	next(t, fast, &fb)
	for i := 0; i < 20; i++ {
		publish(t, h, "t", "x")
		if f := next(t, fast, &fb); f.Message == nil {
			t.Fatalf("fast: got %+v", f)
		}
	}
	var sb []fanout.Frame
	if f := next(t, slow, &sb); f.Type != fanout.FrameClose || f.Close.Code != fanout.CloseSlowConsumer {
		t.Fatalf("slow: got %+v, want slow consumer close", f)
	}
	if _, err := slow.Next(context.Background(), nil); !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("after close: got %v, want ErrClosed", err)
	}
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	h := newHub(t, nil)
	s := newSession(t, h)
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	publish(t, h, "t", "last")
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	var buf []fanout.Frame
	next(t, s, &buf) // reply
	if f := next(t, s, &buf); f.Message == nil {
		t.Fatalf("got %+v, want the queued message", f)
	}
	if f := next(t, s, &buf); f.Close == nil || f.Close.Code != fanout.CloseShutdown || !f.Close.Reconnect {
		t.Fatalf("got %+v, want shutdown close", f)
	}
	s.Close(fanout.CloseNormal, "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(context.Background(), "t", nil); !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("publish after shutdown: got %v, want ErrClosed", err)
	}
}

func TestFinalMark(t *testing.T) {
	t.Parallel()
	h := newHub(t, nil)
	s := newSession(t, h)
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "saga.1"}); err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{"traceparent": "x"}
	publish(t, h, "saga.1", "step", fanout.WithHeader(hdr))
	publish(t, h, "saga.1", "done", fanout.WithHeader(hdr), fanout.WithFinal())
	var buf []fanout.Frame
	next(t, s, &buf)
	if f := next(t, s, &buf); f.Message.Final() {
		t.Fatalf("got final %+v, want not final", f.Message)
	}
	if f := next(t, s, &buf); !f.Message.Final() || f.Message.Header["traceparent"] != "x" {
		t.Fatalf("got %+v, want final with the trace header", f.Message)
	}
	if len(hdr) != 1 {
		t.Fatalf("the caller's header map was modified: %v", hdr)
	}
}

// TestManySubscribersLeave subscribes many sessions to one topic, removes
// most of them in random order, and checks that exactly the others still
// receive its messages.
func TestManySubscribersLeave(t *testing.T) {
	t.Parallel()
	h := newHub(t, nil)
	ctx := context.Background()
	const n = 500
	sessions := make([]*fanout.Session, n)
	bufs := make([][]fanout.Frame, n)
	for i := range sessions {
		sessions[i] = newSession(t, h)
		if err := sessions[i].Subscribe(ctx, fanout.SubscribeRequest{Topic: "crowd"}); err != nil {
			t.Fatal(err)
		}
		next(t, sessions[i], &bufs[i]) // the reply
	}
	stay := make(map[int]bool)
	for _, i := range rand.Perm(n) {
		if i%7 == 0 {
			stay[i] = true
			continue
		}
		if i%2 == 0 {
			if err := sessions[i].Unsubscribe(ctx, "", "crowd"); err != nil {
				t.Fatal(err)
			}
		} else {
			sessions[i].Close(fanout.CloseNormal, "")
		}
	}
	if ts := h.Topics(); len(ts) != 1 || ts[0].Subscribers != len(stay) {
		t.Fatalf("got topics %+v, want crowd with %d subscribers", ts, len(stay))
	}
	pos := publish(t, h, "crowd", "still here")
	for i := range sessions {
		if !stay[i] {
			continue
		}
		f := next(t, sessions[i], &bufs[i])
		if f.Type != fanout.FrameMessage || f.Message.Position != pos {
			t.Fatalf("session %d: got %+v, want the message at %v", i, f, pos)
		}
	}
	// The unsubscribed sessions have their unsubscribe replies queued,
	// and nothing after them.
	done, cancel := context.WithCancel(ctx)
	cancel()
	for i := range sessions {
		if i%2 != 0 || stay[i] {
			continue
		}
		fs, _ := sessions[i].Next(done, nil)
		for _, f := range fs {
			if f.Type == fanout.FrameMessage {
				t.Fatalf("session %d unsubscribed, got %+v", i, f.Message)
			}
		}
	}
}
