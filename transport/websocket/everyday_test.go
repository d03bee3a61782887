package websocket_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout/internal/loadtest"
)

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
	loadtest.RunEveryday(b, func(b *testing.B, subs, rate, msgs int) {
		s := newServer(b, nil, nil)
		cmd, out, stdin := startClients(b, s, "everyday", subs, msgs)
		defer stdin.Close()
		loadtest.Drive(b, cmd, out, stdin, subs, rate, msgs, "deliveries/wsmessage", func(payload []byte) error {
			_, err := s.hub.Publish(context.Background(), "bench", payload)
			return err
		})
	})
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
