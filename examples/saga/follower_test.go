package main_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	saga "github.com/gofanout/fanout/examples/saga"
	"github.com/gofanout/fanout/examples/saga/internal/follower"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// lineRE matches a line of the follower's output: "#<seq> <step> <status> ...".
var lineRE = regexp.MustCompile(`^#(\d+)\s+(\S+)\s+(\S+)\s`)

// snapshotRE matches the follower's line for the saga's running state in
// a snapshot.
var snapshotRE = regexp.MustCompile(`(?m)^#\d+\s+saga\s+running .*\(snapshot\)$`)

// checkPrinted checks what the follower printed against the saga's whole
// transcript, and returns the lines that are no update. The snapshot's
// lines hold the latest state of each key up to its position, which is
// their highest seq (every message has a key); the live lines after it
// must be the rest of the transcript, each once, in order.
func checkPrinted(t *testing.T, out string, want []string) (other []string) {
	t.Helper()
	latest := map[string]string{} // key -> "step status" at the snapshot
	var pos, next int
	var live []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		m := lineRE.FindStringSubmatch(l)
		switch {
		case m == nil:
			other = append(other, l)
		case strings.HasSuffix(l, "(snapshot)"):
			seq, _ := strconv.Atoi(m[1])
			pos = max(pos, seq)
			next = pos + 1
			latest[m[2]] = m[2] + " " + m[3]
		default:
			if seq, _ := strconv.Atoi(m[1]); seq != next {
				t.Errorf("got update #%d (%s), want #%d", seq, l, next)
			}
			next++
			live = append(live, m[2]+" "+m[3])
		}
	}
	if pos < 4 || pos > len(want) {
		t.Fatalf("got a snapshot at #%d, want one at #4 to #%d:\n%s", pos, len(want), out)
	}
	wantLatest := map[string]string{}
	for _, w := range want[:pos] {
		wantLatest[strings.Fields(w)[0]] = w
	}
	if !maps.Equal(latest, wantLatest) {
		t.Errorf("got snapshot %q, want %q", latest, wantLatest)
	}
	if !slices.Equal(live, want[pos:]) {
		t.Errorf("got live updates %q after a snapshot at #%d, want %q", live, pos, want[pos:])
	}
	return other
}

// TestFollower runs the follow command's logic against the server: start a
// booking over HTTP, follow it over gRPC until the end.
func TestFollower(t *testing.T) {
	t.Parallel()
	ts := startServer(t, saga.Config{})
	b, err := follower.StartBooking(bounded(t), ts.http, ts.url, "hotel")
	if err != nil {
		t.Fatal(err)
	}
	if b.Topic != saga.Topic(b.Tx) || !slices.Equal(b.Steps, saga.Steps) {
		t.Errorf("got booking %+v, want topic %q and steps %q", b, saga.Topic(b.Tx), saga.Steps)
	}
	out, done := followUntilSnapshot(t, follower.GRPC(ts.grpcClient(t)), b.Topic, nil)
	ts.release()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.final.Status != "compensated" || !r.final.Final || r.final.Tx != b.Tx {
		t.Errorf("got final update %+v, want the final compensated status of %s", r.final, b.Tx)
	}
	if other := checkPrinted(t, out.String(), transcript("hotel")); !slices.Equal(other, []string{serverEnded}) {
		t.Errorf("got other lines %q, want %q", other, serverEnded)
	}

	if _, err := follower.StartBooking(bounded(t), ts.http, ts.url, "boat"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("got %v for an unknown step, want a 400 error", err)
	}
}

// TestFollowerResumes follows a saga that runs on server B through server
// A, which drains in the middle: the follower reconnects (to B) and
// resumes after the last update it received, so it prints every update
// exactly once, in order.
func TestFollowerResumes(t *testing.T) {
	t.Parallel()
	broker := fanout.NewMemoryBroker(nil)
	a := startServer(t, saga.Config{Backplane: broker.Node()})
	b := startServer(t, saga.Config{Backplane: broker.Node()})

	// The client's first connection goes to A; later ones wait until the
	// test lets them through, to B.
	toB := make(chan struct{})
	var dials atomic.Int32
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		addr := a.grpcAddr
		if dials.Add(1) > 1 {
			select {
			case <-toB:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			addr = b.grpcAddr
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	conn, err := grpc.NewClient("passthrough:///saga", grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	tx := b.book(t, "car")
	out, done := followUntilSnapshot(t, follower.GRPC(fanoutv1.NewSubscribeServiceClient(conn)), saga.Topic(tx), &follower.Options{Retries: 100})
	// The snapshot arrived through A: the saga waits in its first action.
	if err := a.stop(); err != nil {
		t.Fatalf("draining A: %v", err)
	}
	// While the follower is away, the saga runs to its end on B.
	b.release()
	if _, err := followSSE(bounded(t), b.http, b.url, tx, "", 0, nil); err != nil {
		t.Fatal(err)
	}
	close(toB)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.final.Status != "compensated" {
		t.Errorf("got final status %q, want compensated", r.final.Status)
	}
	other := checkPrinted(t, out.String(), transcript("car"))
	if len(other) != 2 || !strings.Contains(other[0], "resuming after #") || other[1] != serverEnded {
		t.Errorf("got other lines %q, want one that says the follower resumed, then %q", other, serverEnded)
	}
}

// serverEnded is what the follower prints when the server ends the stream
// after the final update.
const serverEnded = "the server ended the stream (1000 topic ended)"

// TestFollowerWithoutServerEnd: the follower stops at the final update
// even when the server does not end the stream, as for a final update
// published without fanout.WithFinal.
func TestFollowerWithoutServerEnd(t *testing.T) {
	t.Parallel()
	ts := startServer(t, saga.Config{})
	topic := saga.Topic("0123456789abcdef")
	for _, u := range []string{
		`{"tx":"0123456789abcdef","step":"saga","status":"running","steps":["flight"]}`,
		`{"tx":"0123456789abcdef","step":"saga","status":"completed","detail":"booking completed","final":true}`,
	} {
		if _, err := ts.hub.Publish(bounded(t), topic, []byte(u), fanout.WithKey("saga")); err != nil {
			t.Fatal(err)
		}
	}
	out := newLockedWriter()
	final, err := follower.Follow(bounded(t), follower.GRPC(ts.grpcClient(t)), topic, &follower.Options{Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if final.Status != "completed" || !final.Final {
		t.Errorf("got final update %+v, want the completed one", final)
	}
	if got := out.String(); strings.Contains(got, "ended the stream") || strings.Count(got, "\n") != 1 {
		t.Errorf("got output %q, want the final update alone, from the snapshot", got)
	}
}

// lockedWriter collects what the follower prints, for a test that reads it
// meanwhile.
type lockedWriter struct {
	mu    sync.Mutex // guards buf
	buf   strings.Builder
	wrote chan struct{} // capacity 1: signalled after each write
}

func newLockedWriter() *lockedWriter { return &lockedWriter{wrote: make(chan struct{}, 1)} }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until what was written contains a line that matches re.
func (w *lockedWriter) waitFor(ctx context.Context, re *regexp.Regexp) error {
	for !re.MatchString(w.String()) {
		select {
		case <-w.wrote:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %v in %q: %w", re, w.String(), ctx.Err())
		}
	}
	return nil
}

// TestFollowerAcrossReplicas runs two replicas on one Redis: a saga
// started on B is followed, from its snapshot to its end, through A.
func TestFollowerAcrossReplicas(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	prefix := "sagatest-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() { // last: remove the test's keys
		rc := goredis.NewClient(&goredis.Options{Addr: addr})
		defer rc.Close()
		ctx := context.Background()
		iter := rc.Scan(ctx, 0, "*"+prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rc.Del(ctx, iter.Val())
		}
	})
	replica := func() *testServer {
		rc := goredis.NewClient(&goredis.Options{Addr: addr})
		t.Cleanup(func() { rc.Close() }) // after the server's cleanup
		return startServer(t, saga.Config{Backplane: fanoutredis.New(rc, &fanoutredis.Options{Prefix: prefix})})
	}
	a, b := replica(), replica()
	bk, err := follower.StartBooking(bounded(t), b.http, b.url, "hotel")
	if err != nil {
		t.Fatal(err)
	}
	out, done := followUntilSnapshot(t, follower.GRPC(a.grpcClient(t)), bk.Topic, nil)
	b.release()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.final.Status != "compensated" || r.final.Tx != bk.Tx {
		t.Errorf("got final update %+v, want the compensated end of %s", r.final, bk.Tx)
	}
	if other := checkPrinted(t, out.String(), transcript("hotel")); !slices.Equal(other, []string{serverEnded}) {
		t.Errorf("got other lines %q, want %q", other, serverEnded)
	}
}

type followResult struct {
	final follower.Update
	err   error
}

// followUntilSnapshot runs follower.Follow in the background and returns
// once it has printed the saga's snapshot: what it prints, and where its
// result arrives.
func followUntilSnapshot(t *testing.T, c follower.Subscriber, topic string, o *follower.Options) (*lockedWriter, <-chan followResult) {
	t.Helper()
	out := newLockedWriter()
	opts := follower.Options{}
	if o != nil {
		opts = *o
	}
	opts.Out = out
	done := make(chan followResult, 1)
	go func() {
		final, err := follower.Follow(bounded(t), c, topic, &opts)
		done <- followResult{final, err}
	}()
	if err := out.waitFor(bounded(t), snapshotRE); err != nil {
		t.Fatal(err)
	}
	return out, done
}
