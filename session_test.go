package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gofanout/fanout"
)

func TestSubscribeErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, &fanout.HubOptions{
		MaxSubscriptions: 2,
		Authorize: func(_ context.Context, p fanout.Principal, topic string, a fanout.Action) error {
			if topic == "secret" {
				return errors.New("no")
			}
			return nil
		},
	})
	s := newSession(t, h)
	cases := []struct {
		topic string
		want  error
	}{
		{"a", nil},
		{"a", fanout.ErrAlreadySubscribed},
		{"bad topic", fanout.ErrInvalidTopic},
		{"secret", fanout.ErrForbidden},
		{"b", nil},
		{"c", fanout.ErrTooManySubscriptions},
	}
	for _, c := range cases {
		err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: c.topic})
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("subscribe %q: got %v, want %v", c.topic, err, c.want)
		}
	}
	if err := s.Unsubscribe(ctx, "1", "zzz"); !errors.Is(err, fanout.ErrNotSubscribed) {
		t.Errorf("unsubscribe: got %v, want ErrNotSubscribed", err)
	}
	if err := s.Unsubscribe(ctx, "2", "a"); err != nil {
		t.Errorf("unsubscribe: got %v, want nil", err)
	}
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "c"}); err != nil {
		t.Errorf("subscribe after unsubscribe: got %v, want nil", err)
	}
	if got := fanout.ErrorCode(fmt.Errorf("wrapped: %w", fanout.ErrForbidden)); got != "forbidden" {
		t.Errorf("ErrorCode: got %q, want forbidden", got)
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, nil)
	s := newSession(t, h)
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{ID: "s", Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	publish(t, h, "t", "1")
	if err := s.Unsubscribe(ctx, "u", "t"); err != nil {
		t.Fatal(err)
	}
	publish(t, h, "t", "2")
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{ID: "s2", Topic: "other"}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	want := []string{"reply s", "msg 1", "reply u", "reply s2"}
	for _, w := range want {
		f := next(t, s, &buf)
		var got string
		switch f.Type {
		case fanout.FrameReply:
			got = "reply " + f.Reply.ID
		case fanout.FrameMessage:
			got = "msg " + string(f.Message.Data)
		default:
			got = fmt.Sprint(f.Type)
		}
		if got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	h := newHub(t, &fanout.HubOptions{CommandRate: 0.001, CommandBurst: 3})
	s := newSession(t, h)
	for i := range 3 {
		if !s.Allow() {
			t.Fatalf("command %d refused within the burst", i)
		}
	}
	if s.Allow() {
		t.Fatal("command beyond the burst allowed")
	}
}

func TestPublishErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, &fanout.HubOptions{MaxPayload: 4})
	if _, err := h.Publish(ctx, "a b", nil); !errors.Is(err, fanout.ErrInvalidTopic) {
		t.Errorf("bad topic: got %v", err)
	}
	if _, err := h.Publish(ctx, "a", []byte("12345")); !errors.Is(err, fanout.ErrTooLarge) {
		t.Errorf("large: got %v", err)
	}
	s := newSession(t, h)
	if err := s.Publish(ctx, "1", "a", []byte("x")); !errors.Is(err, fanout.ErrForbidden) {
		t.Errorf("client publish by default: got %v, want ErrForbidden", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Publish(cctx, "a", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
}

func TestIdempotentPublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, nil)
	p1 := publish(t, h, "t", "x", fanout.WithIdempotencyKey("k"))
	p2 := publish(t, h, "t", "x", fanout.WithIdempotencyKey("k"))
	p3 := publish(t, h, "t", "y", fanout.WithIdempotencyKey("other"))
	if p1 != p2 || p3.Seq != p1.Seq+1 {
		t.Fatalf("got %v %v %v, want the retry at the first position and the next at +1", p1, p2, p3)
	}
	s := newSession(t, h)
	since := fanout.Position{Epoch: p1.Epoch}
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "t", Since: &since}); err != nil {
		t.Fatal(err)
	}
	var buf []fanout.Frame
	next(t, s, &buf)
	for _, want := range []string{"x", "y"} {
		if f := next(t, s, &buf); f.Message == nil || string(f.Message.Data) != want {
			t.Fatalf("got %+v, want %q", f, want)
		}
	}
}

func TestConcurrentCloseAndShutdown(t *testing.T) {
	t.Parallel()
	h, err := fanout.NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	var sessions []*fanout.Session
	for range 10 {
		s, err := h.NewSession(fanout.Principal{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "t"}); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() { defer wg.Done(); h.Close() }()
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			h.Shutdown(ctx)
		}()
	}
	for _, s := range sessions {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close(fanout.CloseGoingAway, "") }()
	}
	wg.Wait()
	if _, err := h.NewSession(fanout.Principal{}); !errors.Is(err, fanout.ErrClosed) {
		t.Errorf("NewSession after Close: got %v, want ErrClosed", err)
	}
	if _, err := h.Publish(context.Background(), "t", nil); !errors.Is(err, fanout.ErrClosed) {
		t.Errorf("Publish after Close: got %v, want ErrClosed", err)
	}
}

func TestTopics(t *testing.T) {
	t.Parallel()
	h := newHub(t, nil)
	s1, s2 := newSession(t, h), newSession(t, h)
	for _, s := range []*fanout.Session{s1, s2} {
		if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	p := publish(t, h, "t", "x")
	got := h.Topics()
	if len(got) != 1 || got[0].Name != "t" || got[0].Subscribers != 2 || got[0].Position != p {
		t.Fatalf("got %+v, want one topic t with 2 subscribers at %v", got, p)
	}
	s1.Close(fanout.CloseNormal, "")
	s2.Close(fanout.CloseNormal, "")
	if got := h.Topics(); len(got) != 0 {
		t.Fatalf("after the last subscriber left: got %+v, want none", got)
	}
}

func TestResumeLongerThanQueue(t *testing.T) {
	t.Parallel()
	h := newHub(t, &fanout.HubOptions{QueueMessages: 8})
	var first fanout.Position
	for i := range 100 {
		p := publish(t, h, "t", fmt.Sprint(i))
		if i == 0 {
			first = p
		}
	}
	s := newSession(t, h)
	since := fanout.Position{Epoch: first.Epoch}
	if err := s.Subscribe(context.Background(), fanout.SubscribeRequest{Topic: "t", Since: &since}); err != nil {
		t.Fatal(err)
	}
	publish(t, h, "t", "live")
	var buf []fanout.Frame
	if f := next(t, s, &buf); f.Reply == nil || !*f.Reply.Recovered {
		t.Fatalf("got %+v, want recovered reply", f)
	}
	for seq := uint64(1); seq <= 101; seq++ {
		if f := next(t, s, &buf); f.Message == nil || f.Message.Position.Seq != seq {
			t.Fatalf("got %+v, want seq %d", f, seq)
		}
	}
}
