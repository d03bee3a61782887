package sse_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/loadtest"
	"github.com/gofanout/fanout/transport/sse"
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
	loadtest.RunEveryday(b, benchEveryday)
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

	loadtest.Drive(b, cmd, out, stdin, subs, rate, msgs, "", func(payload []byte) error {
		_, err := hub.Publish(context.Background(), "bench", payload)
		return err
	})
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
	streams, err := loadtest.DialAll(n, func() (rawStream, error) { return openStream(addr) })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")

	var (
		wg                 sync.WaitGroup
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
