package fanout_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// recorder keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []fanout.Event
	ch     chan fanout.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan fanout.Event, 1024)} }

func (r *recorder) Observe(e fanout.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.ch <- e:
	default:
	}
}

func (r *recorder) waitFor(t *testing.T, typ fanout.EventType) fanout.Event {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case e := <-r.ch:
			if e.Type == typ {
				return e
			}
		case <-timeout.C:
			t.Fatalf("no %v event", typ)
		}
	}
}

func (r *recorder) count(typ fanout.EventType) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// okConn is a connection whose writes succeed at once.
type okConn struct{}

func (okConn) WriteFrames([]fanout.Frame, time.Time) error                    { return nil }
func (okConn) WriteHeartbeat(time.Time) error                                 { return nil }
func (okConn) WriteClose([]fanout.Frame, *fanout.CloseFrame, time.Time) error { return nil }
func (okConn) Abort()                                                         {}

func TestEventsOfAConnection(t *testing.T) {
	rec := newRecorder()
	h, err := fanout.NewHub(&fanout.HubOptions{Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	s, err := h.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	s.Attach(okConn{}, &fanout.ConnOptions{Transport: "test"})
	if e := rec.waitFor(t, fanout.EventAttach); e.Transport != "test" || e.Session != s.ID() {
		t.Errorf("attach event %+v, want transport test and session %d", e, s.ID())
	}
	before := time.Now()
	if _, err := h.Publish(ctx, "t", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for {
		e := rec.waitFor(t, fanout.EventWrite)
		if e.N == 0 {
			continue // the subscribe's reply
		}
		if e.N != 1 || e.Queue < 1 || e.Transport != "test" {
			t.Errorf("write event %+v, want N 1, Queue at least 1, transport test", e)
		}
		if e.Duration <= 0 || e.Duration > time.Since(before) {
			t.Errorf("write event latency %v, want within (0, %v]", e.Duration, time.Since(before))
		}
		break
	}
	s.Close(fanout.CloseSlowConsumer, "")
	if e := rec.waitFor(t, fanout.EventSessionClose); e.Transport != "test" || e.Code != fanout.CloseSlowConsumer {
		t.Errorf("close event %+v, want transport test and code 4001", e)
	}
	<-s.Detached()
}

// A session closed before its connection is attached is not counted as a
// connection: no attach event, and its close event names no transport.
func TestAttachAfterClose(t *testing.T) {
	rec := newRecorder()
	h, err := fanout.NewHub(&fanout.HubOptions{Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, err := h.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close(fanout.CloseShutdown, "")
	s.Attach(okConn{}, &fanout.ConnOptions{Transport: "test"})
	<-s.Detached()
	if n := rec.count(fanout.EventAttach); n != 0 {
		t.Errorf("%d attach events, want 0", n)
	}
	if e := rec.waitFor(t, fanout.EventSessionClose); e.Transport != "" {
		t.Errorf("close event transport %q, want none", e.Transport)
	}
}

func TestPublishFailedEvent(t *testing.T) {
	rec := newRecorder()
	h, err := fanout.NewHub(&fanout.HubOptions{Observer: rec, MaxPayload: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	if _, err := h.Publish(ctx, "t", []byte("12345")); !errors.Is(err, fanout.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if e := rec.waitFor(t, fanout.EventPublishFailed); e.Topic != "t" || fanout.ErrorCode(e.Err) != "too_large" {
		t.Errorf("event %+v, want topic t and code too_large", e)
	}
	bad := strings.Repeat("x", 300)
	if _, err := h.Publish(ctx, bad, nil); !errors.Is(err, fanout.ErrInvalidTopic) {
		t.Fatalf("got %v, want ErrInvalidTopic", err)
	}
	if e := rec.waitFor(t, fanout.EventPublishFailed); e.Topic != "" || fanout.ErrorCode(e.Err) != "invalid_topic" {
		t.Errorf("event %+v, want no topic and code invalid_topic", e)
	}
	h.Close()
	if _, err := h.Publish(ctx, "t", nil); !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if e := rec.waitFor(t, fanout.EventPublishFailed); fanout.ErrorCode(e.Err) != "closed" {
		t.Errorf("event %+v, want code closed", e)
	}
}

func TestReady(t *testing.T) {
	h, err := fanout.NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := h.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Ready(ctx); !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("Ready after Shutdown: got %v, want ErrClosed", err)
	}
}

func TestEventTypeString(t *testing.T) {
	if got := fanout.EventPublishFailed.String(); got != "publish_failed" {
		t.Errorf("got %q, want publish_failed", got)
	}
	if got := fanout.EventType(0).String(); got != "unknown" {
		t.Errorf("got %q, want unknown", got)
	}
}
