package sse_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/transport/sse"
)

// liveHeap returns the bytes of live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// sessionCloses counts closed sessions.
type sessionCloses chan struct{}

func (c sessionCloses) Observe(e fanout.Event) {
	if e.Type == fanout.EventSessionClose {
		c <- struct{}{}
	}
}

// TestUniqueTopicChurn: streams of topics of their own, and requests
// refused with 400 after or before their subscriptions, leave nothing
// behind: the live heap comes back to where it was. It measures the heap,
// so it is not parallel.
func TestUniqueTopicChurn(t *testing.T) {
	const streams, each, refused = 50, 200, 20
	closed := make(sessionCloses, streams+refused+16)
	hub := newHub(t, &fanout.HubOptions{Observer: closed})
	srv := testenv.NewServer(t, sse.New(hub, nil), nil)
	client := srv.Client()
	ctx := context.Background()
	topics := func(name string, n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = fmt.Sprintf("%s.%d", name, i)
		}
		return l
	}
	get := func(u string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	wantStatus := func(resp *http.Response, status int) {
		t.Helper()
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Fatalf("got status %d, want %d", resp.StatusCode, status)
		}
	}
	waitCloses := func(n int) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for range n {
			select {
			case <-closed:
			case <-timeout:
				t.Fatalf("sessions did not close within 30s")
			}
		}
	}
	round := func(name string, streams, each, refused int) {
		t.Helper()
		resps := make([]*http.Response, streams)
		for i := range resps {
			// The handler subscribes every topic before it answers.
			resps[i] = get(streamURL(srv.URL, topics(fmt.Sprint(name, ".s", i), each), nil))
			if resps[i].StatusCode != http.StatusOK {
				t.Fatalf("stream %d: got status %d, want 200", i, resps[i].StatusCode)
			}
		}
		if n := len(hub.Topics()); n != streams*each {
			t.Fatalf("%s: got %d topics, want %d", name, n, streams*each)
		}
		for i := range refused {
			// One topic more than a session may have: refused after the
			// first 256 subscriptions.
			wantStatus(get(streamURL(srv.URL, topics(fmt.Sprint(name, ".r", i), 257), nil)), http.StatusBadRequest)
			// Refused before any subscription.
			wantStatus(get(streamURL(srv.URL, topics(fmt.Sprint(name, ".b", i), each), url.Values{"snapshot": {"maybe"}})), http.StatusBadRequest)
		}
		for _, resp := range resps {
			resp.Body.Close()
		}
		waitCloses(streams + refused)
		if n := len(hub.Topics()); n != 0 {
			t.Fatalf("%s: after every stream ended: got %d topics, want 0", name, n)
		}
	}
	round("warm", 5, 10, 2) // what a server keeps whatever its topics
	client.CloseIdleConnections()
	baseline := liveHeap()
	round("churn", streams, each, refused)
	client.CloseIdleConnections()
	now := liveHeap()
	t.Logf("live heap %.1f MB, baseline %.1f MB", float64(now)/(1<<20), float64(baseline)/(1<<20))
	// 15,140 topics that each kept 100 bytes would hold 1.5 MB.
	if now > baseline+1500<<10 {
		t.Fatalf("after %d streams of %d topics and %d refused requests of 257: live heap grew from %.1f to %.1f MB",
			streams, each, refused, float64(baseline)/(1<<20), float64(now)/(1<<20))
	}
}
