package nats_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	"github.com/gofanout/fanout/internal/chaos"
	"github.com/nats-io/nats.go"
)

// watchdog bounds how long a test waits for a call that must not hang; it
// is far above any timeout the tests set, so it never decides a result.
const watchdog = 60 * time.Second

// privateNATS starts a nats-server that only this test uses, so that it may
// kill, stop and restart it.
func privateNATS(t *testing.T) *chaos.Server {
	t.Helper()
	s, err := chaos.StartNATS(t.TempDir(), nil)
	if err != nil {
		t.Skipf("cannot start a private NATS: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPublishOnHungNATS: with NATS stopped (SIGSTOP), Hub.Publish without a
// deadline fails with ErrUnavailable once the hub's BackplaneTimeout
// passes.
func TestPublishOnHungNATS(t *testing.T) {
	srv := privateNATS(t)
	nc, err := nats.Connect(srv.URL(), nats.PingInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Backplane:        fnats.New(nc, nil),
		BackplaneTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	ctx := context.Background()
	first, cancel := context.WithTimeout(ctx, watchdog)
	defer cancel()
	if _, err := hub.Publish(first, "hung", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Continue() })
	done := make(chan error, 1)
	go func() {
		_, err := hub.Publish(ctx, "hung", []byte("during"))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, fanout.ErrUnavailable) {
			t.Fatalf("publish on a stopped NATS: got %v, want fanout.ErrUnavailable", err)
		}
	case <-time.After(watchdog):
		srv.Continue()
		t.Fatalf("publish on a stopped NATS still blocked after %v", watchdog)
	}
	if err := srv.Continue(); err != nil {
		t.Fatal(err)
	}
}
