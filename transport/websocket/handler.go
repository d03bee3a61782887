package websocket

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
)

// CompressionMode selects permessage-deflate compression (RFC 7692).
type CompressionMode int

// Compression modes. Compression is used only when the client offers it.
const (
	// CompressionDisabled sends and accepts uncompressed messages only.
	CompressionDisabled CompressionMode = iota
	// CompressionContextTakeover keeps a compression window across
	// messages: the best ratio for repetitive JSON, but about 1.2 MB of
	// compressor state per connection that writes.
	CompressionContextTakeover
	// CompressionNoContextTakeover compresses each message on its own, with
	// pooled compressors: less memory, a lower ratio.
	CompressionNoContextTakeover
)

// Options configures a [Handler]. The zero value is valid: every field
// documents its default. New copies the options.
type Options struct {
	// OriginPatterns lists the host patterns, matched with path.Match (or
	// "scheme://host" patterns when they contain "://"), of the origins
	// whose pages may connect besides the request's own host. Default: none,
	// so browsers may connect only from pages of the same host; clients
	// that send no Origin header (non-browsers) are not affected.
	OriginPatterns []string

	// ReadLimit bounds one client message, in bytes. A larger message closes
	// the connection with [fanout.CloseTooLarge] (1009). Default: 64 KiB.
	// Publishing large payloads from clients needs a larger limit (data64
	// grows a payload by a third).
	ReadLimit int64

	// PingInterval is how often the server pings the client. Default: 30s.
	// A negative value disables pings.
	PingInterval time.Duration
	// PingTimeout is how long the server waits for the answer to a ping
	// before it closes the connection with [fanout.CloseTimeout]. Default:
	// 15s.
	PingTimeout time.Duration

	// WriteTimeout bounds one write to the client. A client that does not
	// take a message within it is disconnected without a close frame (it can
	// not receive one), and its session ends as a slow consumer
	// ([fanout.CloseSlowConsumer]). Default: 10s.
	WriteTimeout time.Duration

	// CompressionMode selects compression. Default: CompressionDisabled.
	CompressionMode CompressionMode
}

// Defaults of [Options].
const (
	defaultReadLimit    = 64 << 10
	defaultPingInterval = 30 * time.Second
	defaultPingTimeout  = 15 * time.Second
	defaultWriteTimeout = 10 * time.Second
)

func (o *Options) setDefaults() {
	if o.ReadLimit <= 0 {
		o.ReadLimit = defaultReadLimit
	}
	if o.PingInterval == 0 {
		o.PingInterval = defaultPingInterval
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = defaultPingTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
}

// Handler serves fanout sessions over WebSocket. It is safe for concurrent
// use: ServeHTTP serves one connection until it ends.
type Handler struct {
	hub    *fanout.Hub
	opts   Options
	accept websocket.AcceptOptions
}

// New returns a handler that serves hub's sessions. opts may be nil.
func New(hub *fanout.Hub, opts *Options) *Handler {
	h := &Handler{hub: hub}
	if opts != nil {
		h.opts = *opts
		h.opts.OriginPatterns = append([]string(nil), opts.OriginPatterns...)
	}
	h.opts.setDefaults()
	h.accept = websocket.AcceptOptions{
		OriginPatterns:  h.opts.OriginPatterns,
		CompressionMode: websocket.CompressionMode(h.opts.CompressionMode),
	}
	return h
}

// ServeHTTP authenticates the request, upgrades it to a WebSocket and serves
// the session until the connection ends.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, err := h.hub.Authenticate(r.Context(), fanout.CredentialsFromRequest(r, "websocket"))
	if err != nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, err)
		return
	}
	sess, err := h.hub.NewSession(p)
	if err != nil {
		status := http.StatusServiceUnavailable
		if !errors.Is(err, fanout.ErrClosed) {
			status = http.StatusInternalServerError
		}
		writeError(w, status, err)
		return
	}
	ws, err := websocket.Accept(w, r, &h.accept)
	if err != nil {
		// Accept has written the response (403 for a foreign origin, 426
		// for a request that is no upgrade, ...).
		sess.Close(fanout.CloseProtocol, "handshake failed")
		return
	}
	ws.SetReadLimit(h.opts.ReadLimit)
	serve(h, sess, ws)
}

// writeError writes {"error":{"code":...,"message":...}}.
func writeError(w http.ResponseWriter, status int, err error) {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Error body `json:"error"`
	}{body{fanout.ErrorCode(err), err.Error()}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
