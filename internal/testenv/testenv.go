// Package testenv finds the servers that integration tests run against, and
// serves and breaks loopback connections for tests: [NewServer] serves an
// HTTP handler and waits for its handlers at cleanup, [NewProxy] forwards TCP
// connections that a test can cut, refuse or stall.
//
// Tests that need Redis or NATS call [Redis] or [NATS] first. When the server
// is not reachable, the test is skipped with a message saying how to run it,
// unless the environment sets FANOUT_REQUIRE_SERVERS=1 (as CI does), in which
// case it fails.
//
// Environment:
//
//   - FANOUT_REDIS_ADDR: host:port of Redis. Default: 127.0.0.1:6379.
//   - FANOUT_NATS_URL: URL of a NATS server with JetStream enabled.
//     Default: nats://127.0.0.1:4222.
//   - FANOUT_REQUIRE_SERVERS=1: fail instead of skipping when a server is
//     missing.
package testenv

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis returns the address of the Redis server for tests, after checking
// that it answers PING. Otherwise it skips the test, or fails it when
// FANOUT_REQUIRE_SERVERS=1.
func Redis(t testing.TB) string {
	t.Helper()
	addr := env("FANOUT_REDIS_ADDR", "127.0.0.1:6379")
	if err := redisOnce(addr); err != nil {
		missing(t, fmt.Sprintf("Redis is not reachable at %s (%v): start redis-server, or set FANOUT_REDIS_ADDR to a Redis 6.2+ address", addr, err))
	}
	return addr
}

// NATS returns the URL of the NATS server for tests, after checking that it
// greets a TCP connection. Otherwise it skips the test, or fails it when
// FANOUT_REQUIRE_SERVERS=1.
func NATS(t testing.TB) string {
	t.Helper()
	u := env("FANOUT_NATS_URL", "nats://127.0.0.1:4222")
	if err := natsOnce(u); err != nil {
		missing(t, fmt.Sprintf("NATS is not reachable at %s (%v): start nats-server -js, or set FANOUT_NATS_URL", u, err))
	}
	return u
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("FANOUT_REQUIRE_SERVERS") == "1" {
		t.Fatal(msg + " (FANOUT_REQUIRE_SERVERS=1)")
	}
	t.Skip(msg + " (set FANOUT_REQUIRE_SERVERS=1 to fail instead of skipping)")
}

// probes caches each probe's result for the life of the test binary.
var (
	probesMu sync.Mutex // guards probes
	probes   = make(map[string]*probe)
)

type probe struct {
	once sync.Once
	err  error
}

func cached(key string, f func() error) error {
	probesMu.Lock()
	p := probes[key]
	if p == nil {
		p = new(probe)
		probes[key] = p
	}
	probesMu.Unlock()
	p.once.Do(func() { p.err = f() })
	return p.err
}

func redisOnce(addr string) error {
	return cached("redis "+addr, func() error {
		return exchange(addr, "PING\r\n", "+PONG")
	})
}

func natsOnce(rawURL string) error {
	return cached("nats "+rawURL, func() error {
		u, err := url.Parse(rawURL)
		if err != nil {
			return err
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "4222")
		}
		return exchange(host, "", "INFO ")
	})
}

// exchange connects to addr, writes req and checks that the first line of
// the answer starts with want.
func exchange(addr, req, want string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if req != "" {
		if _, err := c.Write([]byte(req)); err != nil {
			return err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("unexpected answer %q", strings.TrimSpace(line))
	}
	return nil
}
