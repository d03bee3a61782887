package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gofanout/fanout"
	saga "github.com/gofanout/fanout/examples/saga"
	"github.com/gofanout/fanout/internal/wire"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// testServer is the example's server on loopback ports. Its sagas wait
// before their first action until release is called, so that a follower
// can subscribe first and see every step live.
type testServer struct {
	hub      *fanout.Hub
	url      string
	grpcAddr string
	http     *http.Client
	release  func()
	cancel   context.CancelFunc // starts the drain
	served   chan error         // Serve's result

	stopOnce sync.Once
	stopErr  error
}

// stop drains the server and returns Serve's result.
func (ts *testServer) stop() error {
	ts.stopOnce.Do(func() {
		ts.release()
		ts.cancel()
		ts.stopErr = <-ts.served
	})
	return ts.stopErr
}

func startServer(t *testing.T, cfg saga.Config) *testServer {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	if cfg.Before == nil {
		cfg.Before = func(ctx context.Context, _ saga.Action) error {
			select {
			case <-gate:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	srv, err := saga.NewServer(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	httpL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		hub:      srv.Hub(),
		url:      "http://" + httpL.Addr().String(),
		grpcAddr: grpcL.Addr().String(),
		http:     &http.Client{Transport: &http.Transport{}},
		release:  func() { once.Do(func() { close(gate) }) },
		cancel:   cancel,
		served:   make(chan error, 1),
	}
	go func() { ts.served <- srv.Serve(ctx, httpL, grpcL) }()
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("got Serve error %v, want nil", err)
		}
		ts.http.CloseIdleConnections()
	})
	return ts
}

// bounded returns a context that ends with the test or after 30s, so that
// a follower that waits for an update that never comes fails the test
// instead of hanging it.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// book starts a booking that fails at step fail, and returns its tx.
func (ts *testServer) book(t *testing.T, fail string) string {
	t.Helper()
	resp, err := ts.http.Post(ts.url+"/bookings?fail="+url.QueryEscape(fail), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct{ Tx string }
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /bookings: got %s (decode: %v), want %d", resp.Status, err, http.StatusAccepted)
	}
	return b.Tx
}

func (ts *testServer) grpcClient(t *testing.T) fanoutv1.SubscribeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(ts.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return fanoutv1.NewSubscribeServiceClient(conn)
}

// followed is what a follower received: a snapshot at pos, then live
// updates (with since: only live updates, from history first).
type followed struct {
	pos        uint64
	snap, live []seen
	epoch      string // of the last update
	lastID     string // SSE: the id of the last event
}

// final reports whether the last update received is the saga's final one.
func (f *followed) final() bool {
	last := f.live
	if len(last) == 0 {
		last = f.snap
	}
	return len(last) > 0 && last[len(last)-1].u.Final
}

func decodeSeen(seq uint64, key string, data []byte, header map[string]string) (seen, error) {
	var u saga.Update
	if err := json.Unmarshal(data, &u); err != nil {
		return seen{}, fmt.Errorf("decode %s: %w", data, err)
	}
	return seen{seq: seq, key: key, u: u, marked: header[fanout.HeaderFinal] == "true"}, nil
}

// errNotEnded is returned by followers when a stream ended in any way
// other than by the server after the final update.
var errNotEnded = errors.New("the server did not end the stream after the final update")

// followGRPC follows tx over a gRPC Subscribe stream, calling onSnapshot
// once the snapshot arrived, until the server ends the stream: right after
// the final update, in the same Frames message, a close frame 1000 "topic
// ended" without reconnect, then the end of the call (io.EOF). With since,
// it resumes after that position instead of asking for the snapshot.
func followGRPC(ctx context.Context, c fanoutv1.SubscribeServiceClient, tx string, since *fanoutv1.Position, onSnapshot func()) (followed, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.Subscribe(ctx, &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{
		{Topic: saga.Topic(tx), Snapshot: since == nil, Since: since},
	}})
	if err != nil {
		return followed{}, err
	}
	var f followed
	for {
		batch, err := st.Recv()
		if err != nil {
			return f, fmt.Errorf("stream ended before the final update: %w", err)
		}
		for i, fr := range batch.Frames {
			switch x := fr.Frame.(type) {
			case *fanoutv1.Frame_Reply:
				if x.Reply.Error != nil {
					return f, fmt.Errorf("subscribe: %v", x.Reply.Error)
				}
			case *fanoutv1.Frame_Snapshot:
				f.pos, f.epoch = x.Snapshot.Position.Seq, x.Snapshot.Position.Epoch
				for _, m := range x.Snapshot.Items {
					s, err := decodeSeen(m.Seq, m.Key, m.Data, m.Headers)
					if err != nil {
						return f, err
					}
					f.snap = append(f.snap, s)
				}
				if onSnapshot != nil {
					onSnapshot()
				}
			case *fanoutv1.Frame_Message:
				m := x.Message
				s, err := decodeSeen(m.Seq, m.Key, m.Data, m.Headers)
				if err != nil {
					return f, err
				}
				f.live, f.epoch = append(f.live, s), m.Epoch
			case *fanoutv1.Frame_Close:
				return f, fmt.Errorf("closed by the server: %v", x.Close)
			}
			if !f.final() {
				continue
			}
			// The server ends the stream now.
			rest := batch.Frames[i+1:]
			if len(rest) != 1 || rest[0].GetClose() == nil {
				return f, fmt.Errorf("%w: got %v after it in the same Frames message, want the close frame", errNotEnded, rest)
			}
			if c := rest[0].GetClose(); c.Code != uint32(fanout.CloseNormal) || c.Reason != "topic ended" || c.Reconnect {
				return f, fmt.Errorf("%w: got close %v, want 1000 \"topic ended\" without reconnect", errNotEnded, c)
			}
			if _, err := st.Recv(); err != io.EOF {
				return f, fmt.Errorf("%w: after the close frame, Recv returned %v, want io.EOF", errNotEnded, err)
			}
			return f, nil
		}
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ typ, id, data string }

// readEvents parses a text/event-stream and calls fn per event until fn
// returns false (nil) or the stream ends (io.EOF, or
// io.ErrUnexpectedEOF in the middle of an event).
func readEvents(r io.Reader, fn func(sseEvent) (bool, error)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev sseEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data == nil {
				ev = sseEvent{}
				continue
			}
			ev.data = strings.Join(data, "\n")
			more, err := fn(ev)
			if err != nil || !more {
				return err
			}
			ev, data = sseEvent{}, nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.typ = value
		case "id":
			ev.id = value
		case "data":
			data = append(data, value)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if data != nil || ev != (sseEvent{}) {
		return io.ErrUnexpectedEOF
	}
	return io.EOF
}

// followSSE follows tx over SSE, as a browser does: with snapshot=1, or
// resuming after lastEventID. It reads until the server ends the stream:
// right after the final update, a close event 1000 "topic ended" without
// reconnect, then the end of the response. When maxLive > 0, it drops the
// connection after that many live updates instead.
func followSSE(ctx context.Context, c *http.Client, base, tx, lastEventID string, maxLive int, onSnapshot func()) (followed, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?snapshot=1&topic="+saga.Topic(tx), nil)
	if err != nil {
		return followed{}, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.Do(req)
	if err != nil {
		return followed{}, err
	}
	defer resp.Body.Close() // ends the stream
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return followed{}, fmt.Errorf("GET /events: %s: %s", resp.Status, b)
	}
	var f followed
	closed := false
	err = readEvents(resp.Body, func(ev sseEvent) (bool, error) {
		if ev.id != "" {
			f.lastID = ev.id
		}
		if closed {
			return false, fmt.Errorf("%w: got a %s event after the close event", errNotEnded, ev.typ)
		}
		if f.final() && ev.typ != "close" {
			return false, fmt.Errorf("%w: got a %s event after it", errNotEnded, ev.typ)
		}
		fr, err := wire.ParseFrame([]byte(ev.data))
		if err != nil {
			return false, err
		}
		if fr.Type != ev.typ {
			return false, fmt.Errorf("a %s event carries a %s frame", ev.typ, fr.Type)
		}
		switch fr.Type {
		case "reply":
			if !fr.OK {
				return false, fmt.Errorf("subscribe reply %s", ev.data)
			}
		case "snapshot":
			f.pos, f.epoch = fr.Position.Seq, fr.Position.Epoch
			for _, m := range fr.Items {
				x, err := decodeSeen(m.Position.Seq, m.Key, m.Data, m.Header)
				if err != nil {
					return false, err
				}
				f.snap = append(f.snap, x)
			}
			if onSnapshot != nil {
				onSnapshot()
			}
		case "msg":
			m := fr.Message
			x, err := decodeSeen(m.Position.Seq, m.Key, m.Data, m.Header)
			if err != nil {
				return false, err
			}
			f.live, f.epoch = append(f.live, x), m.Position.Epoch
			return x.u.Final || maxLive == 0 || len(f.live) < maxLive, nil
		case "close":
			if !f.final() || fr.Code != fanout.CloseNormal || fr.Reason != "topic ended" || fr.Reconnect {
				return false, fmt.Errorf("closed by the server: %s", ev.data)
			}
			closed = true
		}
		return true, nil
	})
	switch {
	case maxLive > 0 && err == nil && !f.final():
		return f, nil // dropped after maxLive updates
	case err == io.EOF && closed:
		return f, nil
	case err == io.EOF:
		return f, fmt.Errorf("%w: the response ended without the close event", errNotEnded)
	}
	return f, err
}

func TestFollowOverGRPC(t *testing.T) {
	t.Parallel()
	for _, fail := range []string{"", "hotel"} {
		t.Run("fail="+fail, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, saga.Config{})
			tx := ts.book(t, fail)
			f, err := followGRPC(bounded(t), ts.grpcClient(t), tx, nil, ts.release)
			if err != nil {
				t.Fatal(err)
			}
			checkFollow(t, tx, transcript(fail), f.pos, f.snap, f.live)
		})
	}
}

func TestFollowOverSSE(t *testing.T) {
	t.Parallel()
	for _, fail := range []string{"", "hotel", "flight"} {
		t.Run("fail="+fail, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, saga.Config{})
			tx := ts.book(t, fail)
			f, err := followSSE(bounded(t), ts.http, ts.url, tx, "", 0, ts.release)
			if err != nil {
				t.Fatal(err)
			}
			checkFollow(t, tx, transcript(fail), f.pos, f.snap, f.live)
		})
	}
}

// TestResumeOverSSE drops the SSE connection in the middle of a saga and
// reconnects with Last-Event-ID, as a browser does: the second stream
// continues exactly after the last update of the first.
func TestResumeOverSSE(t *testing.T) {
	t.Parallel()
	ts := startServer(t, saga.Config{})
	tx := ts.book(t, "car")
	first, err := followSSE(bounded(t), ts.http, ts.url, tx, "", 3, ts.release)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.live) != 3 {
		t.Fatalf("got %d live updates before the drop, want 3", len(first.live))
	}
	second, err := followSSE(bounded(t), ts.http, ts.url, tx, first.lastID, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.snap) != 0 {
		t.Errorf("got a snapshot %v on resume, want none: history reaches back", second.snap)
	}
	checkFollow(t, tx, transcript("car"), first.pos, first.snap, append(first.live, second.live...))
}

// TestLateFollowers follow a saga that has ended: its snapshot is its final
// state, and the server ends their streams right after it.
func TestLateFollowers(t *testing.T) {
	t.Parallel()
	ts := startServer(t, saga.Config{})
	ts.release()
	tx := ts.book(t, "hotel")
	want := transcript("hotel")
	if _, err := followSSE(bounded(t), ts.http, ts.url, tx, "", 0, nil); err != nil { // until the end
		t.Fatal(err)
	}
	g, err := followGRPC(bounded(t), ts.grpcClient(t), tx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := followSSE(bounded(t), ts.http, ts.url, tx, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]followed{"grpc": g, "sse": s} {
		if f.pos != uint64(len(want)) || len(f.live) != 0 {
			t.Errorf("%s: got snapshot at %d and %d live updates, want the final snapshot at %d alone", name, f.pos, len(f.live), len(want))
		}
		checkFollow(t, tx, want, f.pos, f.snap, f.live)
	}
	// A browser that reconnects after the end, with the id of the
	// snapshot that held the final update, is told to stop.
	resp := get(t, ts, tx, s.lastID)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("reconnect after the end: got %s, want 204", resp.Status)
	}
}

// get opens the SSE stream of tx with Last-Event-ID lastID and returns
// the response, its body read.
func get(t *testing.T, ts *testServer, tx, lastID string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(bounded(t), http.MethodGet, ts.url+"/events?snapshot=1&topic="+saga.Topic(tx), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Last-Event-ID", lastID)
	resp, err := ts.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestResumeAfterTheEnd: followers that lost their stream in the middle of
// a saga come back after it ended. Each resumes after the last update it
// received, gets the rest from history, and the server ends its stream
// after the final update; SSE with Last-Event-ID, gRPC with since.
func TestResumeAfterTheEnd(t *testing.T) {
	t.Parallel()
	ts := startServer(t, saga.Config{})
	tx := ts.book(t, "hotel")
	want := transcript("hotel")
	first, err := followSSE(bounded(t), ts.http, ts.url, tx, "", 3, ts.release)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.live) != 3 {
		t.Fatalf("got %d live updates before the drop, want 3", len(first.live))
	}
	// Another follower sees the saga end.
	whole, err := followGRPC(bounded(t), ts.grpcClient(t), tx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFollow(t, tx, want, whole.pos, whole.snap, whole.live)

	sseRest, err := followSSE(bounded(t), ts.http, ts.url, tx, first.lastID, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := first.live[len(first.live)-1].seq
	grpcRest, err := followGRPC(bounded(t), ts.grpcClient(t), tx, &fanoutv1.Position{Epoch: whole.epoch, Seq: last}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, rest := range map[string]followed{"sse": sseRest, "grpc": grpcRest} {
		if len(rest.snap) != 0 || len(rest.live) != len(want)-int(last) {
			t.Errorf("%s: got snapshot %v and %d updates, want the %d updates after #%d from history", name, rest.snap, len(rest.live), len(want)-int(last), last)
		}
		checkFollow(t, tx, want, first.pos, first.snap, append(slices.Clone(first.live), rest.live...))
	}
	// The id of the final update says the topic ended.
	if resp := get(t, ts, tx, sseRest.lastID); resp.StatusCode != http.StatusNoContent {
		t.Errorf("reconnect after the end: got %s, want 204", resp.Status)
	}
}

// TestDrain stops the server while a saga waits in its first action: the
// server stops being ready and refuses bookings, interrupts the saga after
// half the drain period, delivers its final update to the follower, and
// then ends the streams.
func TestDrain(t *testing.T) {
	t.Parallel()
	type probe struct {
		healthz, bookings int
		err               error
	}
	probes := make(chan probe, 1)
	var ts *testServer
	ts = startServer(t, saga.Config{
		Drain: 4 * time.Second,
		Before: func(ctx context.Context, _ saga.Action) error {
			<-ctx.Done() // interrupted by the drain
			// The HTTP server still serves while sagas drain.
			var p probe
			for _, r := range []struct {
				method, path string
				code         *int
			}{{"GET", "/healthz", &p.healthz}, {"POST", "/bookings", &p.bookings}} {
				req, _ := http.NewRequest(r.method, ts.url+r.path, nil)
				resp, err := ts.http.Do(req)
				if err != nil {
					p.err = errors.Join(p.err, err)
					continue
				}
				resp.Body.Close()
				*r.code = resp.StatusCode
			}
			probes <- p
			return ctx.Err()
		},
	})
	resp, err := ts.http.Get(ts.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got /healthz %d before the drain, want %d", resp.StatusCode, http.StatusOK)
	}
	tx := ts.book(t, "")
	type result struct {
		f   followed
		err error
	}
	sseDone, grpcDone := make(chan result, 1), make(chan result, 1)
	subscribed := make(chan struct{}, 2)
	onSnap := func() { subscribed <- struct{}{} }
	go func() {
		f, err := followSSE(bounded(t), ts.http, ts.url, tx, "", 0, onSnap)
		sseDone <- result{f, err}
	}()
	c := ts.grpcClient(t)
	go func() {
		f, err := followGRPC(bounded(t), c, tx, nil, onSnap)
		grpcDone <- result{f, err}
	}()
	<-subscribed
	<-subscribed
	ts.cancel()

	p := <-probes
	if p.err != nil || p.healthz != http.StatusServiceUnavailable || p.bookings != http.StatusServiceUnavailable {
		t.Errorf("while draining: got /healthz %d, POST /bookings %d (%v), want %d and %d",
			p.healthz, p.bookings, p.err, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	}
	for name, ch := range map[string]chan result{"sse": sseDone, "grpc": grpcDone} {
		r := <-ch
		if r.err != nil {
			t.Errorf("%s: %v", name, r.err)
			continue
		}
		last := r.f.live[len(r.f.live)-1].u
		if last.Step != saga.SagaKey || last.Status != saga.StatusFailed || !strings.Contains(last.Detail, "interrupted") {
			t.Errorf("%s: got last update %+v, want the saga interrupted", name, last)
		}
	}
	if err := ts.stop(); err != nil {
		t.Errorf("got Serve error %v, want nil", err)
	}
	// Streams opened now are refused: the server is gone.
	_, err = followGRPC(bounded(t), c, tx, nil, nil)
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("got %v after the drain, want code %v", err, codes.Unavailable)
	}
}
