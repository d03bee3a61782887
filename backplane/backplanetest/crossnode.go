package backplanetest

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// CrossNodeLoads are the publish rates, in messages per second, that
// [BenchmarkCrossNode] runs.
var CrossNodeLoads = []int{1000, 5000, 20000}

// BenchmarkCrossNode measures how long a message takes from Hub.Publish on
// one node to a session of another node, under a paced load: 16 publishers
// together at each of [CrossNodeLoads] messages per second, to 100 topics
// that one session on the other node follows, for dur. newNode returns
// a node of one backplane cluster. It reports the latencies (p50, p99,
// max) and the rate the publishers kept.
func BenchmarkCrossNode(b *testing.B, dur time.Duration, newNode func(b *testing.B) fanout.Backplane) {
	for _, rate := range CrossNodeLoads {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for b.Loop() {
				crossNode(b, rate, dur, newNode)
			}
		})
	}
}

func crossNode(b *testing.B, rate int, dur time.Duration, newNode func(b *testing.B) fanout.Backplane) {
	const topics, publishers = 100, 16
	hubs := make([]*fanout.Hub, 2)
	for i := range hubs {
		h, err := fanout.NewHub(&fanout.HubOptions{Backplane: newNode(b), QueueMessages: 1 << 20, QueueBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		hubs[i] = h
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
	defer cancel()
	sess, err := hubs[1].NewSession(fanout.Principal{})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close(fanout.CloseNormal, "")
	prefix := uniqueTopic("crossnode")
	for i := range topics {
		if err := sess.Subscribe(ctx, fanout.SubscribeRequest{Topic: fmt.Sprint(prefix, "-", i)}); err != nil {
			b.Fatal(err)
		}
	}
	want := rate * int(dur/time.Millisecond) / 1000
	lat := make([]time.Duration, 0, want)
	received := make(chan struct{})
	go func() {
		defer close(received)
		buf := make([]fanout.Frame, 0, 256)
		for len(lat) < want {
			fs, err := sess.Next(ctx, buf)
			if err != nil {
				return
			}
			now := time.Now()
			for _, f := range fs {
				if f.Type == fanout.FrameMessage && len(f.Message.Data) == 8 {
					sent := int64(binary.BigEndian.Uint64(f.Message.Data))
					lat = append(lat, now.Sub(time.Unix(0, sent)))
				}
			}
		}
	}()

	// A ticker every millisecond hands out what the rate owes.
	work := make(chan int, want)
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			var data [8]byte
			for i := range work {
				binary.BigEndian.PutUint64(data[:], uint64(time.Now().UnixNano()))
				if _, err := hubs[0].Publish(ctx, fmt.Sprint(prefix, "-", i%topics), slices.Clone(data[:])); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	sent := 0
	for sent < want {
		<-tick.C
		due := min(want, int(float64(rate)*time.Since(start).Seconds()))
		for ; sent < due; sent++ {
			work <- sent
		}
	}
	tick.Stop()
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	<-received
	if len(lat) < want {
		b.Fatalf("received %d of %d messages", len(lat), want)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(want)/elapsed.Seconds(), "msgs/s")
}
