package testenv

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// ServerOptions configures [NewServer]. A nil *ServerOptions means the
// defaults.
type ServerOptions struct {
	// Stop is called by the cleanup once new requests are refused, before
	// it waits for the running handlers: it must end those that do not end
	// by themselves, such as WebSocket and SSE handlers (closing the hub
	// ends them). Default: nil, nothing is called.
	Stop func()

	// Listener, when set, wraps the loopback listener before the server
	// starts, for example to shrink the kernel buffers of accepted
	// connections. Default: nil, the listener as is.
	Listener func(net.Listener) net.Listener
}

// NewServer starts an [httptest.Server] on 127.0.0.1 that serves h. The
// server is closed when the test and its subtests end: from then on new
// requests get 503 Service Unavailable, o.Stop is called, every handler
// still running is waited for, hijacked ones included (which
// [httptest.Server.Close] does not wait for), and the server is closed.
func NewServer(t testing.TB, h http.Handler, o *ServerOptions) *httptest.Server {
	t.Helper()
	var opts ServerOptions
	if o != nil {
		opts = *o
	}
	var (
		mu       sync.Mutex // guards closed and the Add of handlers
		closed   bool
		handlers sync.WaitGroup // running handlers
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if closed {
			mu.Unlock()
			http.Error(w, "closed", http.StatusServiceUnavailable)
			return
		}
		handlers.Add(1)
		mu.Unlock()
		defer handlers.Done()
		h.ServeHTTP(w, r)
	}))
	if opts.Listener != nil {
		srv.Listener = opts.Listener(srv.Listener)
	}
	srv.Start()
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		mu.Unlock()
		if opts.Stop != nil {
			opts.Stop()
		}
		handlers.Wait()
		srv.Close()
	})
	return srv
}
