package sse_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/loadtest"
	"github.com/gofanout/fanout/transport/sse"
)

// everydayFor is how long each load of BenchmarkEveryday publishes. At 0
// (the default, for `-benchtime=1x` runs that only check that the benchmark
// works) each load runs for one second with a tenth of its subscribers.
var (
	everydayFor     = flag.Duration("fanout.everyday", 0, "how long each load of BenchmarkEveryday publishes, with the full number of subscribers")
	everydayLoads   = flag.String("fanout.everydayloads", loadtest.DefaultLoads, "the loads of BenchmarkEveryday: subscribers x messages per second, comma-separated")
	everydayProfile = flag.String("fanout.everydayprofile", "", "write a CPU profile of BenchmarkEveryday's publishing to this file")
)

// Environment of the client process.
const (
	clientProcessEnv = "FANOUT_SSE_CLIENT"
	clientAddrEnv    = "FANOUT_SSE_ADDR"
	clientConnsEnv   = "FANOUT_SSE_CONNS"
	clientMsgsEnv    = "FANOUT_SSE_MSGS"
)

// BenchmarkEveryday is the WebSocket transport's benchmark of the same name
// over SSE: streams opened from a client process, messages of 64 bytes
// published to their topic at a steady rate, with the default options. It
// reports the latency from Publish to a stream having read the message
// (p50, p99, p99.9, max over all deliveries) and the server's CPU time per
// million deliveries. The figures in the docs come from
//
//	go test -run '^$' -bench BenchmarkEveryday -benchtime 1x ./transport/sse -fanout.everyday 20s
func BenchmarkEveryday(b *testing.B) {
	for _, l := range loadtest.Loads(b, *everydayLoads) {
		subs, d := l.Subs, *everydayFor
		if d <= 0 {
			subs, d = max(subs/10, 1), time.Second
		}
		b.Run(fmt.Sprintf("subs=%d/rate=%d", subs, l.Rate), func(b *testing.B) {
			for range b.N {
				benchEveryday(b, subs, l.Rate, int(d.Seconds()*float64(l.Rate)))
			}
		})
	}
}

func benchEveryday(b *testing.B, subs, rate, msgs int) {
	hub, err := fanout.NewHub(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(sse.New(hub, nil))
	defer srv.Close()
	defer srv.CloseClientConnections()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		clientProcessEnv+"=everyday",
		clientAddrEnv+"="+srv.Listener.Addr().String(),
		fmt.Sprintf("%s=%d", clientConnsEnv, subs),
		fmt.Sprintf("%s=%d", clientMsgsEnv, msgs),
	)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		stdin.Close()
		cmd.Wait()
		b.Fatalf("client process: got %q (%v), want ready", line, err)
	}

	if *everydayProfile != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d-%d", *everydayProfile, subs, rate))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	err = loadtest.Pace(rate, msgs, func(int) error {
		_, err := hub.Publish(ctx, "bench", loadtest.Stamp(time.Now()))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := out.ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(10 * time.Second):
		stdin.Close() // the client process reports what arrived
		line = <-lines
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("client process: %v", err)
	}
	r, err := loadtest.ParseResult(line)
	if err != nil {
		b.Fatal(err)
	}
	server := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	cru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	client := time.Duration(cru.Utime.Nano() + cru.Stime.Nano())
	mdel := float64(max(r.Received, 1)) / 1e6
	b.ReportMetric(float64(r.P50)/1e3, "p50-ms")
	b.ReportMetric(float64(r.P99)/1e3, "p99-ms")
	b.ReportMetric(float64(r.P999)/1e3, "p99.9-ms")
	b.ReportMetric(float64(r.Max)/1e3, "max-ms")
	b.ReportMetric(server.Seconds()/mdel, "server-cpu-s/Mdelivery")
	b.ReportMetric(client.Seconds()/mdel, "client-cpu-s/Mdelivery")
	if want := int64(subs) * int64(msgs); r.Received != want || r.Closed != 0 {
		b.Errorf("got %d deliveries of %d, %d streams ended early", r.Received, want, r.Closed)
	}
}

// runClientProcess is the child process of BenchmarkEveryday: it opens
// FANOUT_SSE_CONNS streams of topic "bench" from FANOUT_SSE_ADDR over
// HTTP/1.1, prints "ready" once each has its subscribe reply, then reads
// each until it has FANOUT_SSE_MSGS msg events, recording the latency of
// each from the time stamped in its payload. Then, or when stdin closes,
// it prints the loadtest.Result and exits.
func runClientProcess() int {
	addr := os.Getenv(clientAddrEnv)
	n, _ := strconv.Atoi(os.Getenv(clientConnsEnv))
	msgs, _ := strconv.Atoi(os.Getenv(clientMsgsEnv))
	streams := make([]rawStream, n)
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		dialErr atomic.Pointer[error]
	)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || dialErr.Load() != nil {
					return
				}
				s, err := openStream(addr)
				if err != nil {
					err = fmt.Errorf("stream %d: %w", i, err)
					dialErr.Store(&err)
					return
				}
				streams[i] = s
			}
		}()
	}
	wg.Wait()
	if p := dialErr.Load(); p != nil {
		fmt.Fprintln(os.Stderr, *p)
		return 1
	}
	fmt.Println("ready")

	var (
		h                  loadtest.Histogram
		received, messages atomic.Int64
		closed             atomic.Int64
	)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		for _, s := range streams {
			s.c.Close()
		}
	}()
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := 0
			for got < msgs {
				line, err := s.r.ReadSlice('\n')
				if err != nil {
					closed.Add(1)
					break
				}
				if bytes.HasPrefix(line, []byte("data: ")) {
					now := time.Now().UnixNano()
					got += loadtest.Stamps(line, func(ns int64) { h.Record(time.Duration(now - ns)) })
				}
			}
			received.Add(int64(got))
		}()
	}
	wg.Wait()
	fmt.Println(loadtest.NewResult(&h, received.Load(), messages.Load(), closed.Load()))
	return 0
}

// rawStream is a stream read by the client process.
type rawStream struct {
	c net.Conn
	r *bufio.Reader // the response body, chunked encoding removed
}

// openStream opens a stream of topic "bench" and reads up to its subscribe
// reply.
func openStream(addr string) (stream rawStream, err error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return stream, err
	}
	if _, err := io.WriteString(c, "GET /?topic=bench HTTP/1.1\r\nHost: "+addr+"\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		c.Close()
		return stream, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4<<10), nil)
	if err != nil {
		c.Close()
		return stream, err
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return stream, fmt.Errorf("status %d", resp.StatusCode)
	}
	r := bufio.NewReaderSize(resp.Body, 4<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			c.Close()
			return stream, err
		}
		if bytes.HasPrefix(line, []byte("event: reply")) {
			break
		}
	}
	stream.c, stream.r = c, r
	return stream, nil
}
