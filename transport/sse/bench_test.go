package sse_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
)

// BenchmarkFanOut publishes to one topic that subs streams over loopback
// HTTP/1.1 read. One op is one publish delivered to every stream; the
// custom metrics give the cost per delivered message (server, loopback and
// client reader together, all in this process). The publisher keeps at most
// window messages in flight, so that no stream falls a queue behind.
func BenchmarkFanOut(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		for _, size := range []int{128, 4096} {
			b.Run(fmt.Sprintf("subs=%d/payload=%d", subs, size), func(b *testing.B) {
				benchFanOut(b, subs, size)
			})
		}
	}
}

// streamCounter counts the events of streams: every event ends with a
// blank line, and the JSON frames hold no raw line break.
type streamCounter struct {
	total  atomic.Int64
	target atomic.Int64
	wake   chan struct{}
}

func (c *streamCounter) add(n int) {
	if c.total.Add(int64(n)) >= c.target.Load() {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// waitFor waits until the streams counted n events in all.
func (c *streamCounter) waitFor(b *testing.B, n int64) {
	c.target.Store(n)
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for c.total.Load() < n {
		select {
		case <-c.wake:
		case <-timeout.C:
			b.Fatalf("streams got %d events, want %d", c.total.Load(), n)
		}
	}
}

// read counts the events of one stream until it ends; it allocates nothing
// per event.
func (c *streamCounter) read(r io.Reader) {
	buf := make([]byte, 32<<10)
	prevLF := false
	for {
		n, err := r.Read(buf)
		p := buf[:n]
		events := bytes.Count(p, []byte("\n\n"))
		if n > 0 && prevLF && p[0] == '\n' {
			events++
		}
		if n > 0 {
			prevLF = p[n-1] == '\n' && (n < 2 || p[n-2] != '\n')
		}
		if events > 0 {
			c.add(events)
		}
		if err != nil {
			return
		}
	}
}

func benchFanOut(b *testing.B, subs, size int) {
	hub, err := fanout.NewHub(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(sse.New(hub, nil))
	defer srv.Close()
	defer srv.CloseClientConnections()
	tr := &http.Transport{MaxIdleConnsPerHost: subs}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &streamCounter{wake: make(chan struct{}, 1)}
	var readers sync.WaitGroup
	defer readers.Wait()
	defer cancel()
	for range subs {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"?topic=bench", nil)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer resp.Body.Close()
			c.read(resp.Body)
		}()
	}
	// Each stream starts with its retry field and its reply.
	start := int64(2 * subs)
	c.waitFor(b, start)

	// A JSON payload of size bytes, as most are: it travels inline.
	payload := fmt.Appendf(nil, `{"p":"%s"}`, bytes.Repeat([]byte("x"), size-8))
	const window = 64
	b.SetBytes(int64(size * subs))
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if _, err := hub.Publish(ctx, "bench", payload); err != nil {
			b.Fatal(err)
		}
		if i%window == 0 || i == b.N {
			c.waitFor(b, start+int64(i)*int64(subs))
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	deliveries := float64(b.N) * float64(subs)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/deliveries, "allocs/delivery")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/deliveries, "B/delivery")
}
