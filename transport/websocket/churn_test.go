package websocket_test

import (
	"fmt"
	"runtime"
	"testing"
)

// liveHeap returns the bytes of live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestUniqueTopicChurn: connections that each subscribe to topics of their
// own and leave leave nothing behind: the live heap comes back to where it
// was. It measures the heap, so it is not parallel.
func TestUniqueTopicChurn(t *testing.T) {
	const conns, each = 100, 200 // 20,000 topics
	s := newServer(t, nil, nil)
	addr := s.srv.Listener.Addr().String()
	round := func(name string, conns, each int) {
		t.Helper()
		cs := make([]*rawConn, conns)
		for i := range cs {
			c, err := dialRaw(addr, 4096)
			if err != nil {
				t.Fatal(err)
			}
			cs[i] = c
			for k := range each {
				if err := c.subscribe(fmt.Sprintf("%s.%d.%d", name, i, k)); err != nil {
					t.Fatalf("connection %d, subscription %d: %v", i, k, err)
				}
			}
		}
		if n := len(s.hub.Topics()); n != conns*each {
			t.Fatalf("%s: got %d topics, want %d", name, n, conns*each)
		}
		for _, c := range cs {
			c.c.Close()
		}
		for range conns {
			s.waitClose(t)
		}
		if n := len(s.hub.Topics()); n != 0 {
			t.Fatalf("%s: after every connection closed: got %d topics, want 0", name, n)
		}
	}
	round("warm", 10, 10) // what a server keeps whatever its topics
	baseline := liveHeap()
	round("churn", conns, each)
	now := liveHeap()
	t.Logf("live heap %.1f MB, baseline %.1f MB", float64(now)/(1<<20), float64(baseline)/(1<<20))
	// 20,000 topics that each kept 100 bytes would hold 2 MB.
	if now > baseline+2<<20 {
		t.Fatalf("after %d topics over %d connections, all closed: live heap grew from %.1f to %.1f MB",
			conns*each, conns, float64(baseline)/(1<<20), float64(now)/(1<<20))
	}
}
