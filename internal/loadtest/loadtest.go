// Package loadtest holds what the transports' load benchmarks share: a
// payload that carries the time it was published, a latency histogram that
// many goroutines fill at once, a paced publisher, and the line in which a
// client process reports what it received. It is used by benchmarks only.
package loadtest

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// PayloadSize is the size of a stamped payload in bytes.
const PayloadSize = 64

// Stamp returns a JSON string of PayloadSize bytes that carries t: a "T",
// t in Unix nanoseconds as 19 digits, and padding.
func Stamp(t time.Time) []byte {
	b := make([]byte, 0, PayloadSize)
	b = append(b, `"T`...)
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	for len(b) < PayloadSize-1 {
		b = append(b, 'x')
	}
	return append(b, '"')
}

// Stamps calls fn with the time, in Unix nanoseconds, of every stamped
// payload in b (one WebSocket message or one SSE data line may carry
// several), and returns how many it found.
func Stamps(b []byte, fn func(ns int64)) int {
	n := 0
	for {
		i := bytes.Index(b, stampPrefix)
		if i < 0 || len(b) < i+2+19 {
			return n
		}
		b = b[i+2:]
		var ns int64
		ok := true
		for _, c := range b[:19] {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			ns = ns*10 + int64(c-'0')
		}
		if ok {
			fn(ns)
			n++
			b = b[19:]
		}
	}
}

var stampPrefix = []byte(`"T`)

// subBits sets the histogram's precision: 2^subBits buckets per power of
// two, about 3 %.
const subBits = 5

// Histogram counts durations in microseconds, in log-linear buckets; any
// number of goroutines may record at once.
type Histogram struct {
	counts [64 << subBits]atomic.Int64
	max    atomic.Int64
}

func bucket(us int64) int {
	if us < 1<<subBits {
		return int(us)
	}
	e := 63 - bits.LeadingZeros64(uint64(us)) // us >= 2^e
	shift := e - subBits
	return (shift+1)<<subBits + int(us>>shift) - 1<<subBits
}

// lower returns the smallest value of bucket i.
func lower(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	shift := i>>subBits - 1
	return (int64(i&(1<<subBits-1)) + 1<<subBits) << shift
}

// Record counts d.
func (h *Histogram) Record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[bucket(us)].Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// Count returns the number of durations recorded.
func (h *Histogram) Count() int64 {
	var n int64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Quantile returns the q-quantile (0 < q <= 1) in microseconds: the middle
// of the bucket that holds it, or the maximum when that is smaller.
func (h *Histogram) Quantile(q float64) int64 {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	var n int64
	for i := range h.counts {
		n += h.counts[i].Load()
		if n >= rank {
			mid := (lower(i) + lower(i+1)) / 2
			return min(mid, h.max.Load())
		}
	}
	return h.max.Load()
}

// Pace calls publish n times, the i-th call at start + i/rate: a publisher
// that publishes on schedule, and catches up at once when it falls behind.
func Pace(rate, n int, publish func(i int) error) error {
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if err := publish(i); err != nil {
			return err
		}
	}
	return nil
}

// DefaultLoads are the loads of the everyday benchmarks: many subscribers
// and a few messages a second, fewer subscribers and more messages.
const DefaultLoads = "5000x10,1000x100"

// Load is a number of subscribers of one topic and the messages published
// to it per second.
type Load struct{ Subs, Rate int }

// Loads parses loads written as in DefaultLoads, and fails tb on an error.
func Loads(tb testing.TB, s string) []Load {
	var ls []Load
	for f := range strings.SplitSeq(s, ",") {
		var l Load
		if _, err := fmt.Sscanf(f, "%dx%d", &l.Subs, &l.Rate); err != nil || l.Subs <= 0 || l.Rate <= 0 {
			tb.Fatalf("loadtest: load %q: want subscribers x rate, such as 5000x10", f)
		}
		ls = append(ls, l)
	}
	return ls
}

// Result is what a client process reports after a load run.
type Result struct {
	Received int64 // deliveries
	Messages int64 // transport messages (WebSocket messages) that carried them
	Closed   int64 // connections that ended before they received everything
	P50, P99 int64 // latency from Publish to receipt, in microseconds
	P999     int64
	Max      int64
}

// NewResult fills a result's latencies from h.
func NewResult(h *Histogram, received, messages, closed int64) Result {
	return Result{
		Received: received, Messages: messages, Closed: closed,
		P50: h.Quantile(0.50), P99: h.Quantile(0.99), P999: h.Quantile(0.999), Max: h.max.Load(),
	}
}

// String formats r as the line a client process prints.
func (r Result) String() string {
	return fmt.Sprintf("done received=%d messages=%d closed=%d p50=%d p99=%d p999=%d max=%d",
		r.Received, r.Messages, r.Closed, r.P50, r.P99, r.P999, r.Max)
}

// ParseResult parses a line printed by a client process.
func ParseResult(line string) (Result, error) {
	var r Result
	_, err := fmt.Sscanf(strings.TrimSpace(line), "done received=%d messages=%d closed=%d p50=%d p99=%d p999=%d max=%d",
		&r.Received, &r.Messages, &r.Closed, &r.P50, &r.P99, &r.P999, &r.Max)
	if err != nil {
		return r, fmt.Errorf("loadtest: client process said %q: %w", line, err)
	}
	return r, nil
}

// DialAll opens n connections with dial, 64 at a time, and returns them in
// order; on the first error it stops and returns it, naming the
// connection.
func DialAll[C any](n int, dial func() (C, error)) ([]C, error) {
	conns := make([]C, n)
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		dialErr atomic.Pointer[error]
	)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || dialErr.Load() != nil {
					return
				}
				c, err := dial()
				if err != nil {
					err = fmt.Errorf("connection %d: %w", i, err)
					dialErr.Store(&err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if p := dialErr.Load(); p != nil {
		return nil, *p
	}
	return conns, nil
}
