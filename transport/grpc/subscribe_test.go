package fanoutgrpc_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

func TestSubscribeInOrderAndIsolated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "a"})
	if r := fs.reply(t); r.Topic != "a" || r.Error != nil || r.Recovered != nil {
		t.Fatalf("got reply %v, want ok for topic a without recovered", r)
	}
	payload := func(i int) []byte { return []byte{byte(i), 0, 0xff, 0xfe, '\n', '"'} } // not UTF-8, not JSON
	for i := 1; i <= 50; i++ {
		publish(t, e.hub, "b", "other")
		if _, err := e.hub.Publish(ctx, "a", payload(i), fanout.WithHeader(map[string]string{"traceparent": fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 50; i++ {
		m := fs.message(t)
		if m.Topic != "a" || m.Seq != uint64(i) || !bytes.Equal(m.Data, payload(i)) {
			t.Fatalf("message %d: got topic %q seq %d data %q, want a, %d, %q", i, m.Topic, m.Seq, m.Data, i, payload(i))
		}
		if m.Epoch == "" || m.Time == nil || m.Headers["traceparent"] != fmt.Sprint(i) {
			t.Fatalf("message %d: got epoch %q time %v headers %v, want them set", i, m.Epoch, m.Time, m.Headers)
		}
	}
}

func TestSubscribeSeveralTopics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	for i := 1; i <= 3; i++ {
		publish(t, e.hub, "x", fmt.Sprint(i))
	}
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "x", Since: &fanoutv1.Position{}}, &fanoutv1.Subscription{Topic: "y"})
	if r := fs.reply(t); r.Topic != "x" || !r.GetRecovered() {
		t.Fatalf("got %v, want recovered reply for x", r)
	}
	for i := 1; i <= 3; i++ {
		if m := fs.message(t); m.Topic != "x" || m.Seq != uint64(i) {
			t.Fatalf("got %v, want x seq %d", m, i)
		}
	}
	if r := fs.reply(t); r.Topic != "y" || r.Error != nil {
		t.Fatalf("got %v, want ok reply for y", r)
	}
	publish(t, e.hub, "y", "live")
	if m := fs.message(t); m.Topic != "y" || string(m.Data) != "live" {
		t.Fatalf("got %v, want y live", m)
	}
}

func TestSubscribeResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	var last fanout.Position
	for i := 1; i <= 5; i++ {
		last = publish(t, e.hub, "r", fmt.Sprint(i))
	}
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "r", Since: &fanoutv1.Position{Epoch: last.Epoch, Seq: 2}})
	r := fs.reply(t)
	if r.Recovered == nil || !*r.Recovered || r.Position.GetSeq() != 5 || r.Position.GetEpoch() != last.Epoch {
		t.Fatalf("got %v, want recovered=true at %v", r, last)
	}
	for i := 3; i <= 6; i++ {
		if i == 6 {
			publish(t, e.hub, "r", "6")
		}
		if m := fs.message(t); m.Seq != uint64(i) || string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("got seq %d data %q, want %d", m.Seq, m.Data, i)
		}
	}
}

func TestSubscribeNotRecoveredGetsSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	publish(t, e.hub, "s", "old", fanout.WithKey("k1"))
	last := publish(t, e.hub, "s", "new", fanout.WithKey("k2"))
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "s", Since: &fanoutv1.Position{Epoch: "another", Seq: 1}})
	if r := fs.reply(t); r.Recovered == nil || *r.Recovered {
		t.Fatalf("got %v, want recovered=false", r)
	}
	snap := fs.must(t).GetSnapshot()
	if snap == nil || snap.Topic != "s" || len(snap.Items) != 2 || snap.Position.GetSeq() != last.Seq || snap.Position.GetEpoch() != last.Epoch {
		t.Fatalf("got snapshot %v, want 2 items at %v", snap, last)
	}
	if it := snap.Items[1]; it.Key != "k2" || string(it.Data) != "new" || it.Seq != 2 {
		t.Fatalf("got item %v, want k2=new at seq 2", it)
	}
}

func TestSubscribeSnapshotThenLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	publish(t, e.hub, "inv", "5", fanout.WithKey("sku1"))
	publish(t, e.hub, "inv", "7", fanout.WithKey("sku2"))
	last := publish(t, e.hub, "inv", "4", fanout.WithKey("sku1"))
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "inv", Snapshot: true})
	if r := fs.reply(t); r.Error != nil || r.Position.GetSeq() != last.Seq {
		t.Fatalf("got %v, want ok reply at %v", r, last)
	}
	snap := fs.must(t).GetSnapshot()
	got := map[string]string{}
	for _, it := range snap.GetItems() {
		got[it.Key] = string(it.Data)
	}
	if len(got) != 2 || got["sku1"] != "4" || got["sku2"] != "7" || snap.Position.GetSeq() != 3 {
		t.Fatalf("got snapshot %v at %v, want sku1=4 sku2=7 at seq 3", got, snap.GetPosition())
	}
	publish(t, e.hub, "inv", "3", fanout.WithKey("sku2"))
	if m := fs.message(t); m.Seq != 4 || m.Key != "sku2" || string(m.Data) != "3" {
		t.Fatalf("got %v, want sku2=3 at seq 4", m)
	}
}

func TestSubscribeEmptySnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	fs := subscribe(t, testCtx(t), e, &fanoutv1.Subscription{Topic: "never", Snapshot: true})
	fs.reply(t)
	if snap := fs.must(t).GetSnapshot(); snap == nil || len(snap.Items) != 0 || snap.Position == nil || snap.Topic != "never" {
		t.Fatalf("got %v, want an empty snapshot with a position", snap)
	}
}

func TestSubscribeCoalesces(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		maxBatch int
		want     int // Frames messages for the reply and 100 messages; 0: more than one
	}{
		{"one batch", 0, 1},
		{"a message each", 1, 101},
		{"bounded", 1000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{server: &fanoutgrpc.Options{MaxBatchBytes: tc.maxBatch}})
			for i := 1; i <= 100; i++ {
				publish(t, e.hub, "c", fmt.Sprint(i))
			}
			// The reply and the history are queued at once, so they are
			// written together.
			fs := subscribe(t, testCtx(t), e, &fanoutv1.Subscription{Topic: "c", Since: &fanoutv1.Position{}})
			fs.reply(t)
			for i := 1; i <= 100; i++ {
				if m := fs.message(t); m.Seq != uint64(i) {
					t.Fatalf("got seq %d, want %d", m.Seq, i)
				}
			}
			if tc.want == 0 && fs.batches < 2 || tc.want > 0 && fs.batches != tc.want {
				t.Fatalf("got %d Frames messages, want %d", fs.batches, tc.want)
			}
			if tc.maxBatch > 1 && fs.largest > tc.maxBatch {
				t.Fatalf("got a Frames message of %d bytes, want at most MaxBatchBytes, %d", fs.largest, tc.maxBatch)
			}
		})
	}
}

func TestSubscribeRefused(t *testing.T) {
	t.Parallel()
	auth := func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
		if c.Token != "good" {
			return fanout.Principal{}, errNoToken
		}
		return fanout.Principal{ID: "u"}, nil
	}
	authz := func(_ context.Context, _ fanout.Principal, topic string, _ fanout.Action) error {
		if strings.HasPrefix(topic, "secret") {
			return fmt.Errorf("not yours")
		}
		return nil
	}
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authenticate: auth, Authorize: authz}})
	good := metadata.Pairs("authorization", "Bearer good")
	for _, tc := range []struct {
		name   string
		md     metadata.MD
		subs   []*fanoutv1.Subscription
		want   codes.Code
		reason string
	}{
		{"no token", nil, []*fanoutv1.Subscription{{Topic: "a"}}, codes.Unauthenticated, "UNAUTHENTICATED"},
		{"bad token", metadata.Pairs("authorization", "Bearer bad"), []*fanoutv1.Subscription{{Topic: "a"}}, codes.Unauthenticated, "UNAUTHENTICATED"},
		{"not bearer", metadata.Pairs("authorization", "Basic good"), []*fanoutv1.Subscription{{Topic: "a"}}, codes.Unauthenticated, "UNAUTHENTICATED"},
		{"forbidden", good, []*fanoutv1.Subscription{{Topic: "secret1"}}, codes.PermissionDenied, "FORBIDDEN"},
		{"bad topic", good, []*fanoutv1.Subscription{{Topic: "a b"}}, codes.InvalidArgument, "INVALID_TOPIC"},
		{"empty topic", good, []*fanoutv1.Subscription{{Topic: ""}}, codes.InvalidArgument, "INVALID_TOPIC"},
		{"bad topic after good", good, []*fanoutv1.Subscription{{Topic: "a"}, {Topic: ".a"}}, codes.InvalidArgument, "INVALID_TOPIC"},
		{"topic twice", good, []*fanoutv1.Subscription{{Topic: "a"}, {Topic: "a"}}, codes.InvalidArgument, "BAD_REQUEST"},
		{"no subscriptions", good, nil, codes.InvalidArgument, "BAD_REQUEST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := metadata.NewOutgoingContext(testCtx(t), tc.md)
			st, err := e.sub.Subscribe(ctx, &fanoutv1.SubscribeRequest{Subscriptions: tc.subs})
			if err == nil {
				_, err = st.Recv()
			}
			wantCode(t, err, tc.want)
			if reason, _ := errorInfo(t, err); reason != tc.reason {
				t.Fatalf("got reason %q, want %q", reason, tc.reason)
			}
		})
	}
	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		ctx := metadata.NewOutgoingContext(testCtx(t), good)
		fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "a"})
		if r := fs.reply(t); r.Error != nil {
			t.Fatalf("got %v, want ok", r)
		}
	})
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	got := make(chan *fanout.Credentials, 1)
	auth := func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
		got <- c
		return fanout.Principal{}, nil
	}
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Authenticate: auth}})
	ctx := metadata.NewOutgoingContext(testCtx(t), metadata.Pairs("authorization", "bearer tok.en", "x-tenant", "t1"))
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "a"})
	fs.reply(t)
	c := <-got
	if c.Token != "tok.en" || c.Transport != "grpc" || c.Request != nil || c.Header.Get("X-Tenant") != "t1" {
		t.Fatalf("got token %q transport %q header %v, want tok.en, grpc, X-Tenant t1", c.Token, c.Transport, c.Header)
	}
}

func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	cl := make(closes, 8)
	e := newEnv(t, envOptions{
		hub: &fanout.HubOptions{QueueMessages: 8, Observer: cl},
		// Small fixed windows: the client reads nothing while the test
		// publishes, so the server soon cannot send.
		dial: []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)},
	})
	ctx := testCtx(t)
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "t"})
	fs.reply(t)
	// 100 messages of 16 KiB: more than the flow-control windows, gRPC's
	// write quota, the batch in flight and the queue of 8 can hold by far.
	data := make([]byte, 16<<10)
	for range 100 {
		if _, err := e.hub.Publish(ctx, "t", data); err != nil {
			t.Fatal(err)
		}
	}
	// The client reads what the server could send before the queue
	// overflowed, then the close frame.
	var seq uint64
	for {
		fr, err := fs.next()
		if err != nil {
			t.Fatalf("got %v before a close frame", err)
		}
		if m := fr.GetMessage(); m != nil {
			if m.Seq != seq+1 {
				t.Fatalf("got seq %d after %d", m.Seq, seq)
			}
			seq = m.Seq
			continue
		}
		c := fr.GetClose()
		if c == nil || c.Code != uint32(fanout.CloseSlowConsumer) || !c.Reconnect {
			t.Fatalf("got %v, want slow consumer close with reconnect", fr)
		}
		break
	}
	if seq >= 100 {
		t.Fatalf("got all %d messages, want the queue to have overflowed", seq)
	}
	_, err := fs.next()
	wantCode(t, err, codes.ResourceExhausted)
	reason, md := errorInfo(t, err)
	if reason != "SESSION_CLOSED" || md["close_code"] != "4001" || md["reconnect"] != "true" {
		t.Fatalf("got reason %q metadata %v, want SESSION_CLOSED, close_code 4001, reconnect true", reason, md)
	}
	if code := waitClose(t, ctx, cl); code != fanout.CloseSlowConsumer {
		t.Fatalf("got session close code %d, want %d", code, fanout.CloseSlowConsumer)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := testCtx(t)
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "t"})
	fs.reply(t)
	cs := connect(t, ctx, e)
	cs.send(t, &fanoutv1.Command{Id: "1", Command: &fanoutv1.Command_Subscribe{Subscribe: &fanoutv1.Subscription{Topic: "t"}}})
	cs.reply(t)
	publish(t, e.hub, "t", "last")

	done := make(chan error, 1)
	go func() { done <- e.hub.Shutdown(ctx) }()
	for _, f := range []*frames{fs, &cs.frames} {
		if m := f.message(t); string(m.Data) != "last" {
			t.Fatalf("got %q, want the queued message", m.Data)
		}
		c, err := f.end(t)
		if c.Code != uint32(fanout.CloseShutdown) || !c.Reconnect {
			t.Fatalf("got close %v, want shutdown with reconnect", c)
		}
		wantCode(t, err, codes.Unavailable)
		if !strings.Contains(status.Convert(err).Message(), "reconnect to another server") {
			t.Fatalf("got status message %q, want advice to reconnect elsewhere", status.Convert(err).Message())
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	st, err := e.sub.Subscribe(ctx, &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: "t"}}})
	if err == nil {
		_, err = st.Recv()
	}
	wantCode(t, err, codes.Unavailable)
}

func TestClientCancelEndsSession(t *testing.T) {
	t.Parallel()
	cl := make(closes, 8)
	e := newEnv(t, envOptions{hub: &fanout.HubOptions{Observer: cl}})
	ctx, cancel := context.WithCancel(testCtx(t))
	fs := subscribe(t, ctx, e, &fanoutv1.Subscription{Topic: "t"})
	fs.reply(t)
	cancel()
	if code := waitClose(t, testCtx(t), cl); code != fanout.CloseGoingAway {
		t.Fatalf("got close code %d, want %d", code, fanout.CloseGoingAway)
	}
	// The hub has no session left: Shutdown does not wait.
	if err := e.hub.Shutdown(testCtx(t)); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
