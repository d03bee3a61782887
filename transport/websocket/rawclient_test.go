package websocket_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofanout/fanout/internal/loadtest"
)

// rawConn is a minimal WebSocket client for benchmarks: no goroutine of its
// own, one read buffer, no allocation per message once warm. It speaks just
// enough of RFC 6455 for the server under test.
type rawConn struct {
	c   net.Conn
	r   *bufio.Reader
	msg []byte // the last message read
	w   []byte // write buffer
}

var errClosed = errors.New("raw client: connection closed by the server")

// dialRaw connects to addr and performs the WebSocket handshake.
func dialRaw(addr string, readBuf int) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(c, readBuf)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("raw client: handshake status %d", resp.StatusCode)
	}
	return &rawConn{c: c, r: r}, nil
}

// send writes one masked text message.
func (rc *rawConn) send(p []byte) error { return rc.writeFrame(0x1, p) }

func (rc *rawConn) writeFrame(op byte, p []byte) error {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b := append(rc.w[:0], 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, key[:]...)
	for i, c := range p {
		b = append(b, c^key[i&3])
	}
	rc.w = b
	_, err := rc.c.Write(b)
	return err
}

// next reads the next data message into rc.msg. It answers pings, and
// returns errClosed with the close code when the server closes.
func (rc *rawConn) next() (code int, err error) {
	rc.msg = rc.msg[:0]
	for {
		var h [2]byte
		if _, err := io.ReadFull(rc.r, h[:]); err != nil {
			return 0, err
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0f
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(rc.r, e[:]); err != nil {
				return 0, err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(rc.r, e[:]); err != nil {
				return 0, err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		start := len(rc.msg)
		rc.msg = slices.Grow(rc.msg, int(n))[:start+int(n)]
		if _, err := io.ReadFull(rc.r, rc.msg[start:]); err != nil {
			return 0, err
		}
		switch op {
		case 0x8: // close
			if len(rc.msg[start:]) >= 2 {
				code = int(binary.BigEndian.Uint16(rc.msg[start:]))
			}
			rc.writeFrame(0x8, rc.msg[start:start+min(2, len(rc.msg[start:]))])
			return code, errClosed
		case 0x9: // ping
			p := bytes.Clone(rc.msg[start:])
			rc.msg = rc.msg[:start]
			if err := rc.writeFrame(0xA, p); err != nil {
				return 0, err
			}
			continue
		case 0xA: // pong
			rc.msg = rc.msg[:start]
			continue
		}
		if fin {
			return 0, nil
		}
	}
}

// subscribe sends a subscribe command and waits for its reply.
func (rc *rawConn) subscribe(topic string) error {
	if err := rc.send([]byte(`{"id":"s","type":"subscribe","topic":"` + topic + `"}`)); err != nil {
		return err
	}
	if _, err := rc.next(); err != nil {
		return err
	}
	if !bytes.HasPrefix(rc.msg, []byte(`{"type":"reply","id":"s","ok":true`)) {
		return fmt.Errorf("raw client: subscribe reply %q", rc.msg)
	}
	return nil
}

var msgPrefix = []byte(`{"type":"msg"`)

// Environment of the client process.
const (
	clientProcessEnv = "FANOUT_WS_CLIENT" // "idle", "flood" or "everyday"
	clientAddrEnv    = "FANOUT_WS_ADDR"
	clientConnsEnv   = "FANOUT_WS_CONNS"
	clientMsgsEnv    = "FANOUT_WS_MSGS"
)

// runClientProcess is the child process of the benchmarks. It opens
// FANOUT_WS_CONNS connections to FANOUT_WS_ADDR, subscribes each to topic
// "bench" and prints "ready". In mode "idle" it then waits for its stdin to
// close; in mode "flood" each connection reads until it has received
// FANOUT_WS_MSGS messages or is closed, and the process prints
// "done received=N messages=N closed=N codes=..." and exits: received
// counts the deliveries, messages the WebSocket messages that carried them.
// Mode "everyday" is described at everydayClients.
func runClientProcess() int {
	mode := os.Getenv(clientProcessEnv)
	addr := os.Getenv(clientAddrEnv)
	n, _ := strconv.Atoi(os.Getenv(clientConnsEnv))
	msgs, _ := strconv.Atoi(os.Getenv(clientMsgsEnv))
	readBuf := 4 << 10
	if mode == "flood" {
		readBuf = 64 << 10
	}
	conns, err := loadtest.DialAll(n, func() (*rawConn, error) {
		rc, err := dialRaw(addr, readBuf)
		if err == nil {
			err = rc.subscribe("bench")
		}
		return rc, err
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")

	if mode == "everyday" {
		return everydayClients(conns, msgs)
	}
	if mode == "idle" {
		io.Copy(io.Discard, os.Stdin)
		for _, rc := range conns {
			rc.c.Close()
		}
		return 0
	}

	var wg sync.WaitGroup
	var received, messages, closed atomic.Int64
	var mu sync.Mutex // guards codes
	codes := map[string]int{}
	for _, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rc.c.Close()
			got, frames := 0, 0
			for got < msgs {
				code, err := rc.next()
				if err != nil {
					closed.Add(1)
					mu.Lock()
					codes[fmt.Sprint(code, " ", errText(err))]++
					mu.Unlock()
					break
				}
				got += bytes.Count(rc.msg, msgPrefix)
				frames++
			}
			received.Add(int64(got))
			messages.Add(int64(frames))
		}()
	}
	wg.Wait()
	var cs []string
	for c, k := range codes {
		cs = append(cs, fmt.Sprintf("%s=%d", strings.ReplaceAll(c, " ", "_"), k))
	}
	fmt.Printf("done received=%d messages=%d closed=%d codes=%s\n", received.Load(), messages.Load(), closed.Load(), strings.Join(cs, ","))
	return 0
}

func errText(err error) string {
	if errors.Is(err, errClosed) {
		return "close"
	}
	return "error"
}
