package websocket_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofanout/fanout/internal/loadtest"
)

// Sizes of the large benchmarks. Their defaults keep `go test -bench .
// -benchtime=1x` small; the figures in the docs come from the full sizes:
//
//	go test -run '^$' -bench BenchmarkIdleConnections -benchtime 1x ./transport/websocket -fanout.idle 10000
//	go test -run '^$' -bench BenchmarkFlood -benchtime 1x ./transport/websocket -fanout.flood 5000 -fanout.floodmsgs 20000
var (
	idleConns   = flag.Int("fanout.idle", 1000, "connections opened by BenchmarkIdleConnections")
	idleProfile = flag.String("fanout.idleprofile", "", "write a heap profile of the idle connections to this file")
	floodSubs   = flag.Int("fanout.flood", 50, "subscribers of BenchmarkFlood")
	floodMsgs   = flag.Int("fanout.floodmsgs", 2000, "messages published by BenchmarkFlood")
)

// payload returns a JSON string of exactly n bytes.
func payload(n int) string { return `"` + strings.Repeat("x", n-2) + `"` }

// BenchmarkFanOut publishes messages to one topic with subscribers
// connected over loopback WebSockets, in this process, and reports the cost
// per delivery (one message to one subscriber), client side included.
func BenchmarkFanOut(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("subs=%d/size=%d", subs, size), func(b *testing.B) {
				benchFanOut(b, subs, size)
			})
		}
	}
}

func benchFanOut(b *testing.B, subs, size int) {
	s := newServer(b, nil, nil)
	addr := s.srv.Listener.Addr().String()
	type reader struct {
		rc   *rawConn
		got  atomic.Int64
		err  atomic.Pointer[error]
		wake chan struct{}
	}
	readers := make([]*reader, subs)
	for i, rc := range dialSubscribers(b, addr, subs, 64<<10) {
		readers[i] = &reader{rc: rc, wake: make(chan struct{}, 1)}
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
		for _, r := range readers {
			r.rc.c.Close()
		}
		wg.Wait()
	})
	target := int64(b.N)
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				select {
				case r.wake <- struct{}{}:
				default:
				}
			}()
			for r.got.Load() < target {
				if _, err := r.rc.next(); err != nil {
					r.err.Store(&err)
					return
				}
				r.got.Add(int64(bytes.Count(r.rc.msg, msgPrefix)))
				select {
				case r.wake <- struct{}{}:
				default:
				}
			}
		}()
	}
	// waitFor waits until every client got n messages.
	waitFor := func(n int64) {
		for i, r := range readers {
			for r.got.Load() < n {
				if p := r.err.Load(); p != nil {
					b.Fatalf("client %d after %d messages: %v", i, r.got.Load(), *p)
				}
				<-r.wake
			}
		}
	}
	data := []byte(payload(size))
	ctx := context.Background()
	// Stay within the default queue of 4096 messages: publish at most
	// 1024 messages ahead of the slowest client.
	const window = 1024

	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.SetBytes(int64(size * subs))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%window == 0 && i >= window {
			waitFor(int64(i - window))
		}
		if _, err := s.hub.Publish(ctx, "bench", data); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(target)
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	deliveries := float64(b.N) * float64(subs)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/deliveries, "allocs/delivery")
}

// dialSubscribers connects n raw clients to addr, with read buffers of
// readBuf bytes, each subscribed to topic "bench".
func dialSubscribers(b *testing.B, addr string, n, readBuf int) []*rawConn {
	b.Helper()
	conns := make([]*rawConn, n)
	for i := range conns {
		rc, err := dialRaw(addr, readBuf)
		if err == nil {
			err = rc.subscribe("bench")
		}
		if err != nil {
			b.Fatalf("client %d: %v", i, err)
		}
		conns[i] = rc
	}
	return conns
}

// startClients runs the client process (this test binary again) with
// conns connections to the server in mode ("idle" or "flood"), and waits
// until every connection is subscribed.
func startClients(b *testing.B, s *server, mode string, conns, msgs int) (*exec.Cmd, *bufio.Reader, io.WriteCloser) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		clientProcessEnv+"="+mode,
		clientAddrEnv+"="+s.srv.Listener.Addr().String(),
		fmt.Sprintf("%s=%d", clientConnsEnv, conns),
		fmt.Sprintf("%s=%d", clientMsgsEnv, msgs),
	)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || line != "ready\n" {
		stdin.Close()
		cmd.Wait()
		b.Fatalf("client process: got %q (%v), want ready", line, err)
	}
	return cmd, out, stdin
}

// BenchmarkIdleConnections opens idle connections (each subscribed to one
// topic) from a client process and reports the server's memory per
// connection: Go heap plus goroutine stacks, after garbage collection. An
// idle connection has one goroutine, its reader: the writer and pings run
// only when there is something to do (the writer lingers for 100ms after
// its last frame, which the benchmark waits out).
func BenchmarkIdleConnections(b *testing.B) {
	n := *idleConns
	if *idleProfile != "" {
		defer func(r int) { runtime.MemProfileRate = r }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1 // every allocation, for an exact breakdown
	}
	for i := 0; i < b.N; i++ {
		s := newServer(b, nil, nil)
		var m0, m1 runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&m0)
		g0 := runtime.NumGoroutine()

		cmd, _, stdin := startClients(b, s, "idle", n, 0)
		// Writers linger briefly after their last frame (the subscribe
		// replies): wait until only the readers are left.
		for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > g0+n; {
			if time.Now().After(deadline) {
				b.Fatalf("got %d goroutines, want at most %d: writers did not end", runtime.NumGoroutine(), g0+n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Collect until stacks have shrunk to what idle goroutines use.
		for range 5 {
			runtime.GC()
		}
		runtime.ReadMemStats(&m1)
		g1 := runtime.NumGoroutine()
		if *idleProfile != "" {
			f, err := os.Create(*idleProfile)
			if err != nil {
				b.Fatal(err)
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Fatalf("client process: %v", err)
		}

		heap := float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
		stack := float64(m1.StackInuse) - float64(m0.StackInuse)
		b.ReportMetric((heap+stack)/float64(n), "bytes/conn")
		b.ReportMetric(heap/float64(n), "heap-bytes/conn")
		b.ReportMetric(stack/float64(n), "stack-bytes/conn")
		b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
	}
}

// BenchmarkFlood connects subscribers from a client process, publishes
// messages of 64 bytes to their topic as fast as one publisher can, with
// the default hub and handler options, and checks that every subscriber
// receives every message. It reports the server's CPU time (this process)
// and the clients' (the child) per million deliveries, and how many
// deliveries a WebSocket message carried on average: how well writes coalesce.
func BenchmarkFlood(b *testing.B) {
	subs, msgs := *floodSubs, *floodMsgs
	for i := 0; i < b.N; i++ {
		s := newServer(b, nil, nil)
		cmd, out, stdin := startClients(b, s, "flood", subs, msgs)
		defer stdin.Close()
		data := []byte(payload(64))
		ctx := context.Background()

		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		start := time.Now()
		for j := 0; j < msgs; j++ {
			if _, err := s.hub.Publish(ctx, "bench", data); err != nil {
				b.Fatal(err)
			}
		}
		published := time.Since(start)
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatalf("client process: %v", err)
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("client process: %v", err)
		}
		elapsed := time.Since(start)
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		server := loadtest.CPUTime(&ru1) - loadtest.CPUTime(&ru0)
		client := loadtest.CPUTime(cmd.ProcessState.SysUsage().(*syscall.Rusage))

		var received, messages, closed int64
		var codes string
		if _, err := fmt.Sscanf(line, "done received=%d messages=%d closed=%d codes=%s", &received, &messages, &closed, &codes); err != nil && closed > 0 {
			b.Fatalf("client process said %q: %v", line, err)
		}
		want := int64(subs) * int64(msgs)
		mdel := float64(want) / 1e6
		b.ReportMetric(server.Seconds()/mdel, "server-cpu-s/Mdelivery")
		b.ReportMetric(client.Seconds()/mdel, "client-cpu-s/Mdelivery")
		b.ReportMetric(float64(received)/elapsed.Seconds(), "deliveries/s")
		b.ReportMetric(float64(received)/float64(max(messages, 1)), "deliveries/wsmessage")
		b.ReportMetric(published.Seconds(), "publish-s")
		b.ReportMetric(float64(closed), "closed")
		if received != want || closed != 0 {
			b.Errorf("got %d deliveries of %d, %d connections closed (%s): subscribers did not keep up with the defaults",
				received, want, closed, codes)
		}
	}
}

// BenchmarkLatency publishes one message at a time to subscribers connected
// over loopback WebSockets, in this process, and waits until every
// subscriber has it before the next: an idle server. It reports the time
// from Publish to each subscriber having read the message, p50 and p99 over
// all deliveries, and p99 of the last subscriber per message.
func BenchmarkLatency(b *testing.B) {
	for _, subs := range []int{1, 100} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			benchLatency(b, subs)
		})
	}
}

func benchLatency(b *testing.B, subs int) {
	s := newServer(b, nil, nil)
	addr := s.srv.Listener.Addr().String()
	// Each reader sends when it read a message, or its error.
	type receipt struct {
		at  time.Time
		err error
	}
	receipts := make(chan receipt, subs)
	conns := dialSubscribers(b, addr, subs, 4<<10)
	var wg sync.WaitGroup
	b.Cleanup(func() {
		for _, rc := range conns {
			rc.c.Close()
		}
		wg.Wait()
	})
	for _, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got := 0; got < b.N; {
				_, err := rc.next()
				if err != nil {
					receipts <- receipt{err: err}
					return
				}
				n := bytes.Count(rc.msg, msgPrefix)
				for range n {
					receipts <- receipt{at: time.Now()}
				}
				got += n
			}
		}()
	}
	data := []byte(payload(64))
	ctx := context.Background()
	all := make([]time.Duration, 0, b.N*subs)
	last := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := s.hub.Publish(ctx, "bench", data); err != nil {
			b.Fatal(err)
		}
		var slowest time.Duration
		for range subs {
			r := <-receipts
			if r.err != nil {
				b.Fatalf("message %d: %v", i+1, r.err)
			}
			d := r.at.Sub(start)
			all = append(all, d)
			slowest = max(slowest, d)
		}
		last = append(last, slowest)
	}
	b.StopTimer()
	slices.Sort(all)
	slices.Sort(last)
	pct := func(ds []time.Duration, p float64) float64 {
		return float64(ds[int(p*float64(len(ds)-1))].Microseconds())
	}
	b.ReportMetric(pct(all, 0.50), "p50-µs")
	b.ReportMetric(pct(all, 0.99), "p99-µs")
	b.ReportMetric(pct(last, 0.99), "last-p99-µs")
}
