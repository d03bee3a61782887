package fanout_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// chanConn is a connection that hands every frame it writes to a channel.
type chanConn chan fanout.Frame

func (c chanConn) WriteFrames(fs []fanout.Frame, _ time.Time) error {
	for _, f := range fs {
		c <- f
	}
	return nil
}
func (c chanConn) WriteHeartbeat(time.Time) error { return nil }
func (c chanConn) WriteClose(fs []fanout.Frame, cf *fanout.CloseFrame, d time.Time) error {
	c.WriteFrames(fs, d)
	c <- fanout.Frame{Type: fanout.FrameClose, Close: cf}
	return nil
}
func (chanConn) Abort() {}

// attached opens a session of principal id whose frames arrive on the
// returned channel.
func attached(t *testing.T, h *fanout.Hub, id string, serverSubs bool) (*fanout.Session, chanConn) {
	t.Helper()
	s, err := h.NewSession(fanout.Principal{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(fanout.CloseNormal, "") })
	c := make(chanConn, 64)
	s.Attach(c, &fanout.ConnOptions{ServerSubscriptions: serverSubs})
	return s, c
}

func nextFrame(t *testing.T, c chanConn) fanout.Frame {
	t.Helper()
	select {
	case f := <-c:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no frame within 10s")
		return fanout.Frame{}
	}
}

// failures records the hub's failed subscribes.
type failures struct {
	mu   sync.Mutex
	errs []error
}

func (f *failures) Observe(e fanout.Event) {
	if e.Type == fanout.EventSubscribeFailed {
		f.mu.Lock()
		f.errs = append(f.errs, e.Err)
		f.mu.Unlock()
	}
}

func TestServerSubscribe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	obs := &failures{}
	h := newHub(t, &fanout.HubOptions{
		MaxSubscriptions: 2,
		Observer:         obs,
		Authorize: func(_ context.Context, _ fanout.Principal, topic string, _ fanout.Action) error {
			if topic == "secret" {
				return errors.New("no")
			}
			return nil
		},
	})
	s, c := attached(t, h, "alice", true)
	_, sse := attached(t, h, "alice", false)
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{ID: "1", Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(t, c); f.Type != fanout.FrameReply || f.Reply.ID != "1" {
		t.Fatalf("got %+v, want the reply", f)
	}
	if _, err := h.Publish(ctx, "secret", []byte(`1`), fanout.WithKey("k")); err != nil {
		t.Fatal(err)
	}

	// Server code decides: the authorizer is not asked.
	if err := h.Subscribe(ctx, "alice", "secret", &fanout.ServerSubscribeOptions{Snapshot: true}); err != nil {
		t.Fatal(err)
	}
	f := nextFrame(t, c)
	if f.Type != fanout.FrameSubscribed || f.Reply.ID != "" || f.Reply.Topic != "secret" || !f.Reply.Snapshot || f.Reply.Position.Seq != 1 {
		t.Fatalf("got %+v, want a subscribed frame with a snapshot to follow", f.Reply)
	}
	if f := nextFrame(t, c); f.Type != fanout.FrameSnapshot || len(f.Snapshot.Items) != 1 {
		t.Fatalf("got %+v, want the snapshot", f)
	}
	// Already subscribed: nothing. Full: refused, reported, nothing sent.
	if err := h.Subscribe(ctx, "alice", "a", nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Subscribe(ctx, "alice", "c", nil); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	errs := slices.Clone(obs.errs)
	obs.mu.Unlock()
	if len(errs) != 1 || !errors.Is(errs[0], fanout.ErrTooManySubscriptions) {
		t.Fatalf("failures %v, want one ErrTooManySubscriptions", errs)
	}
	if err := h.Unsubscribe(ctx, "alice", "a"); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(t, c); f.Type != fanout.FrameUnsubscribed || f.Reply.Topic != "a" {
		t.Fatalf("got %+v, want the unsubscribed frame of a", f)
	}
	infos := h.PrincipalSessions("alice")
	if len(infos) != 2 || !slices.Equal(infos[0].Topics, []string{"secret"}) || len(infos[1].Topics) != 0 {
		t.Fatalf("sessions of alice %+v, want one on secret and one on nothing", infos)
	}
	select {
	case f := <-sse:
		t.Fatalf("a session without server-side subscriptions got %+v", f)
	default:
	}
	if all := h.Sessions(); len(all) != 2 || all[0].ID >= all[1].ID {
		t.Fatalf("sessions %+v, want two by ID", all)
	}
}

func TestDisconnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, nil)
	_, alice := attached(t, h, "alice", true)
	_, bob := attached(t, h, "bob", true)
	for _, tc := range []struct {
		id   string
		o    *fanout.DisconnectOptions
		want error
	}{
		{"", nil, fanout.ErrBadRequest},
		{"alice", &fanout.DisconnectOptions{Code: fanout.CloseBadRequest}, fanout.ErrBadRequest},
		{"alice", &fanout.DisconnectOptions{Code: 5000}, fanout.ErrBadRequest},
		{"alice", &fanout.DisconnectOptions{Reason: strings.Repeat("r", fanout.MaxCloseReason+1)}, fanout.ErrTooLarge},
		{strings.Repeat("p", fanout.MaxControlBytes), nil, fanout.ErrTooLarge},
	} {
		if err := h.Disconnect(ctx, tc.id, tc.o); !errors.Is(err, tc.want) {
			t.Errorf("disconnect %.10q %+v: got %v, want %v", tc.id, tc.o, err, tc.want)
		}
	}
	if err := h.Disconnect(ctx, "nobody", nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Disconnect(ctx, "alice", &fanout.DisconnectOptions{Code: 4100, Reason: "moved"}); err != nil {
		t.Fatal(err)
	}
	f := nextFrame(t, alice)
	if f.Type != fanout.FrameClose || f.Close.Code != 4100 || f.Close.Reason != "moved" || !f.Close.Reconnect {
		t.Fatalf("got %+v, want close 4100 moved, reconnect", f.Close)
	}
	select {
	case f := <-bob:
		t.Fatalf("bob got %+v", f)
	default:
	}
}

// localOnly hides the memory node's control delivery.
type localOnly struct{ fanout.Backplane }

func TestControlWithoutControlBackplane(t *testing.T) {
	t.Parallel()
	h := newHub(t, &fanout.HubOptions{Backplane: localOnly{fanout.NewMemoryBroker(nil).Node()}})
	_, c := attached(t, h, "alice", true)
	if err := h.Disconnect(context.Background(), "alice", nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported", err)
	}
	if f := nextFrame(t, c); f.Type != fanout.FrameClose || f.Close.Code != fanout.CloseDisconnected || f.Close.Reconnect {
		t.Fatalf("got %+v, want the local session closed with 4007", f)
	}
}

func TestServerHistoryAndSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, err := fanout.NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := h.Publish(ctx, "saga/1", []byte(`"booked"`), fanout.WithKey("status"))
	p2, _ := h.Publish(ctx, "saga/1", []byte(`"paid"`), fanout.WithKey("status"))
	snap, err := h.Snapshot(ctx, "saga/1")
	if err != nil || len(snap.Items) != 1 || snap.Position != p2 || string(snap.Items[0].Data) != `"paid"` {
		t.Fatalf("snapshot %+v, %v", snap, err)
	}
	hist, err := h.History(ctx, "saga/1", p1)
	if err != nil || !hist.Complete || len(hist.Messages) != 1 || hist.Messages[0].Position != p2 {
		t.Fatalf("history %+v, %v", hist, err)
	}
	if _, err := h.History(ctx, "no topic", p1); !errors.Is(err, fanout.ErrInvalidTopic) {
		t.Fatalf("history of an invalid topic: %v", err)
	}
	h.Close()
	if _, err := h.Snapshot(ctx, "saga/1"); !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("snapshot after close: %v", err)
	}
}

func TestCloseCodesOfDisconnect(t *testing.T) {
	t.Parallel()
	for c, want := range map[fanout.CloseCode]bool{
		fanout.CloseDisconnected: false, 4100: true, 4499: true, 4500: false, 4999: false,
	} {
		if got := c.Reconnect(); got != want {
			t.Errorf("%d: reconnect %v, want %v", c, got, want)
		}
	}
}
