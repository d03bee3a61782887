package loadtest

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"
)

// The flags of the everyday benchmarks, the same for every transport.
var (
	everydayFor     = flag.Duration("fanout.everyday", 0, "how long each load of BenchmarkEveryday publishes, with the full number of subscribers")
	everydayLoads   = flag.String("fanout.everydayloads", DefaultLoads, "the loads of BenchmarkEveryday: subscribers x messages per second, comma-separated")
	everydayProfile = flag.String("fanout.everydayprofile", "", "write a CPU profile of BenchmarkEveryday's publishing to this file")
)

// RunEveryday runs an everyday benchmark: a sub-benchmark per load of
// -fanout.everydayloads, each calling run with the subscribers, the rate
// and the number of messages to publish. With -fanout.everyday each load
// publishes for that long with all its subscribers; without, for one
// second with a tenth of them (what CI runs).
func RunEveryday(b *testing.B, run func(b *testing.B, subs, rate, msgs int)) {
	for _, l := range Loads(b, *everydayLoads) {
		subs, d := l.Subs, *everydayFor
		if d <= 0 {
			subs, d = max(subs/10, 1), time.Second
		}
		b.Run(fmt.Sprintf("subs=%d/rate=%d", subs, l.Rate), func(b *testing.B) {
			for range b.N {
				run(b, subs, l.Rate, int(d.Seconds()*float64(l.Rate)))
			}
		})
	}
}

// Drive publishes msgs messages at rate with publish (stamped with
// Stamp), to subs subscribers of the client process cmd, which reports on
// out; 10 s after the last publish it closes stdin, so that the process
// reports what arrived. It then reports the figures on b (see Report),
// with the CPU time of this process from the first publish to the report
// as the server's, and writes a CPU profile of the publishing when
// -fanout.everydayprofile is set.
func Drive(b *testing.B, cmd *exec.Cmd, out *bufio.Reader, stdin io.Closer, subs, rate, msgs int, perMessage string, publish func(payload []byte) error) {
	if *everydayProfile != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d-%d", *everydayProfile, subs, rate))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	if err := Pace(rate, msgs, func(int) error { return publish(Stamp(time.Now())) }); err != nil {
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
	r, err := ParseResult(line)
	if err != nil {
		b.Fatal(err)
	}
	Report(b, r, CPUTime(&ru1)-CPUTime(&ru0), CPUTime(cmd.ProcessState.SysUsage().(*syscall.Rusage)), int64(subs)*int64(msgs), perMessage)
}

// Report reports a run's latencies and the server's and client's CPU time
// per million deliveries, and fails b when a delivery was lost. perMessage,
// when not empty, is the unit of the deliveries per transport message.
func Report(b *testing.B, r Result, server, client time.Duration, want int64, perMessage string) {
	mdel := float64(max(r.Received, 1)) / 1e6
	b.ReportMetric(float64(r.P50)/1e3, "p50-ms")
	b.ReportMetric(float64(r.P99)/1e3, "p99-ms")
	b.ReportMetric(float64(r.P999)/1e3, "p99.9-ms")
	b.ReportMetric(float64(r.Max)/1e3, "max-ms")
	b.ReportMetric(server.Seconds()/mdel, "server-cpu-s/Mdelivery")
	b.ReportMetric(client.Seconds()/mdel, "client-cpu-s/Mdelivery")
	if perMessage != "" {
		b.ReportMetric(float64(r.Received)/float64(max(r.Messages, 1)), perMessage)
	}
	if r.Received != want || r.Closed != 0 {
		b.Errorf("got %d deliveries of %d, %d connections ended early", r.Received, want, r.Closed)
	}
}

// CPUTime is the user and system time in ru.
func CPUTime(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
