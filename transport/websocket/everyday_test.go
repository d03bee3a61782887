package websocket_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofanout/fanout/internal/loadtest"
)

// everydayFor is how long each load of BenchmarkEveryday publishes. At 0
// (the default, for `-benchtime=1x` runs that only check that the benchmark
// works) each load runs for one second with a tenth of its subscribers.
var everydayFor = flag.Duration("fanout.everyday", 0, "how long each load of BenchmarkEveryday publishes, with the full number of subscribers")

// everydayLoads are the loads of BenchmarkEveryday.
var everydayLoads = flag.String("fanout.everydayloads", loadtest.DefaultLoads, "the loads of BenchmarkEveryday: subscribers x messages per second, comma-separated")

// everydayProfile names a file for a CPU profile of the server while it
// publishes (without the connections' setup).
var everydayProfile = flag.String("fanout.everydayprofile", "", "write a CPU profile of BenchmarkEveryday's publishing to this file")

// BenchmarkEveryday connects subscribers from a client process and
// publishes messages of 64 bytes to their topic at a steady rate, with the
// default hub and handler options: the load a server carries most of the
// time, where messages go out one by one. It reports the latency from
// Publish to a subscriber having read the message (p50, p99, p99.9, max
// over all deliveries), the server's CPU time (this process) per million
// deliveries, and how many deliveries a WebSocket message carried. The
// figures in the docs come from
//
//	go test -run '^$' -bench BenchmarkEveryday -benchtime 1x ./transport/websocket -fanout.everyday 20s
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
	s := newServer(b, nil, nil)
	cmd, out, stdin := startClients(b, s, "everyday", subs, msgs)
	defer stdin.Close()
	ctx := context.Background()
	var ru0, ru1 syscall.Rusage
	if *everydayProfile != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d-%d", *everydayProfile, subs, rate))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	err := loadtest.Pace(rate, msgs, func(int) error {
		_, err := s.hub.Publish(ctx, "bench", loadtest.Stamp(time.Now()))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	// Every subscriber has what it will get within a few seconds: then
	// the client process reports, or is told to.
	lines := make(chan string, 1)
	go func() {
		line, _ := out.ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(10 * time.Second):
		stdin.Close()
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
	reportEveryday(b, r, cpuTime(&ru1)-cpuTime(&ru0), cpuTime(cmd.ProcessState.SysUsage().(*syscall.Rusage)), int64(subs)*int64(msgs))
}

// reportEveryday reports a run's figures and fails when a delivery was lost.
func reportEveryday(b *testing.B, r loadtest.Result, server, client time.Duration, want int64) {
	mdel := float64(max(r.Received, 1)) / 1e6
	b.ReportMetric(float64(r.P50)/1e3, "p50-ms")
	b.ReportMetric(float64(r.P99)/1e3, "p99-ms")
	b.ReportMetric(float64(r.P999)/1e3, "p99.9-ms")
	b.ReportMetric(float64(r.Max)/1e3, "max-ms")
	b.ReportMetric(server.Seconds()/mdel, "server-cpu-s/Mdelivery")
	b.ReportMetric(client.Seconds()/mdel, "client-cpu-s/Mdelivery")
	b.ReportMetric(float64(r.Received)/float64(max(r.Messages, 1)), "deliveries/wsmessage")
	if r.Received != want || r.Closed != 0 {
		b.Errorf("got %d deliveries of %d, %d connections closed", r.Received, want, r.Closed)
	}
}

// everydayClients reads, on every connection, until it has msgs messages,
// and records the latency of each from the time stamped in its payload
// (loadtest.Stamp). Then, or when stdin closes, it prints the
// loadtest.Result and returns.
func everydayClients(conns []*rawConn, msgs int) int {
	var (
		h                  loadtest.Histogram
		received, messages atomic.Int64
		closed             atomic.Int64
		wg                 sync.WaitGroup
	)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		for _, rc := range conns {
			rc.c.Close() // ends the readers: report what arrived
		}
	}()
	for _, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := 0
			for got < msgs {
				if _, err := rc.next(); err != nil {
					closed.Add(1)
					break
				}
				now := time.Now().UnixNano()
				got += loadtest.Stamps(rc.msg, func(ns int64) { h.Record(time.Duration(now - ns)) })
				messages.Add(1)
			}
			received.Add(int64(got))
		}()
	}
	wg.Wait()
	fmt.Println(loadtest.NewResult(&h, received.Load(), messages.Load(), closed.Load()))
	return 0
}
