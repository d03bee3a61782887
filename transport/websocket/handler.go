package websocket

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
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

	// AuthTimeout is how long a connection whose handshake offered the
	// subprotocol [Protocol] but no credentials that the authenticator
	// accepts has to send them in an "auth" command, its first; past it
	// the connection is closed with [fanout.CloseUnauthorized]. Default:
	// 10s.
	AuthTimeout time.Duration

	// WriteBufferSize is the size of the WebSocket library's write buffer
	// for each connection, in bytes, which the connection keeps for its
	// life. The library writes the control frames (pings, pongs, the
	// close) through it, and the messages too when compression is in use.
	// A batch of frames goes out in one write system call whatever this
	// size: the writer encodes it, or collects the library's writes, in a
	// pooled buffer it holds only while it writes. Default: 1 KiB.
	WriteBufferSize int
}

// Defaults of [Options].
const (
	defaultReadLimit    = 64 << 10
	defaultPingInterval = 30 * time.Second
	defaultPingTimeout  = 15 * time.Second
	defaultWriteTimeout = 10 * time.Second
	defaultWriteBuffer  = 1 << 10
	defaultAuthTimeout  = 10 * time.Second
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
	if o.WriteBufferSize <= 0 {
		o.WriteBufferSize = defaultWriteBuffer
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = defaultAuthTimeout
	}
}

// Handler serves fanout sessions over WebSocket. It is safe for concurrent
// use. ServeHTTP returns once the connection is upgraded; the handler then
// serves the connection until it ends, and [Handler.Close] closes the
// connections and waits for them.
type Handler struct {
	hub    *fanout.Hub
	opts   Options
	accept websocket.AcceptOptions

	mu     sync.Mutex // guards conns and closed, and orders wg.Add before wg.Wait
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup // the connections' readers, which end last
}

// New returns a handler that serves hub's sessions. opts may be nil. New
// panics when an origin pattern is malformed (see path.Match).
func New(hub *fanout.Hub, opts *Options) *Handler {
	h := &Handler{hub: hub, conns: make(map[*conn]struct{})}
	if opts != nil {
		h.opts = *opts
		h.opts.OriginPatterns = append([]string(nil), opts.OriginPatterns...)
	}
	for _, p := range h.opts.OriginPatterns {
		if _, err := path.Match(p, ""); err != nil {
			panic(fmt.Sprintf("websocket: origin pattern %q: %v", p, err))
		}
	}
	h.opts.setDefaults()
	h.accept = websocket.AcceptOptions{
		// ServeHTTP has checked the origin, before authentication.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionMode(h.opts.CompressionMode),
		// Answered when offered; never a bearer entry, so that the token
		// does not come back.
		Subprotocols: []string{Protocol},
	}
	return h
}

// ServeHTTP checks the handshake request, then its Origin, then its
// credentials, upgrades it to a WebSocket and returns: the connection is
// served by goroutines of the handler until it ends. A refused request
// gets the error body of [fanout.WriteError] and creates no session: 405
// (not a GET), 426 (not a WebSocket upgrade), 400 (bad_request: a bad
// WebSocket version or key, a malformed bearer entry in
// Sec-WebSocket-Protocol), 403 (forbidden: a page of an origin that
// OriginPatterns does not allow; the authenticator is not called), 401
// (unauthenticated: a token that the authenticator refuses), or, after
// Close or once the hub is shutting down, 503 (closed). A handshake
// without a token that offers the subprotocol [Protocol] is upgraded even
// when the authenticator refuses it: the client then has
// [Options.AuthTimeout] to authenticate with an auth command, its first.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		h.refuse(w, start, http.StatusServiceUnavailable, errShuttingDown)
		return
	}
	if status, err := checkHandshake(w, r); err != nil {
		h.refuse(w, start, status, err)
		return
	}
	if err := h.checkOrigin(r); err != nil {
		h.refuse(w, start, http.StatusForbidden, err)
		return
	}
	creds, err := credentials(r)
	if err != nil {
		h.refuse(w, start, http.StatusBadRequest, err)
		return
	}
	p, err := h.hub.Authenticate(r.Context(), creds)
	// A handshake without a token that the authenticator refuses, from a
	// client that offers the fanout.v1 subprotocol, is upgraded all the
	// same: the client sends its credentials in an auth command. Clients
	// that do not offer it get the 401 they always got.
	awaiting := err != nil && creds.Token == "" && offersProtocol(r.Header)
	if err != nil && !awaiting {
		h.refuse(w, start, fanout.HTTPStatus(err), err)
		return
	}
	// Past the checks, the handshake succeeds unless the server fails:
	// the session opens now, so that a hub that is shutting down still
	// gets its 503.
	sess, err := h.hub.NewSession(p)
	if err != nil {
		h.refuse(w, start, fanout.HTTPStatus(err), err)
		return
	}
	if awaiting {
		sess.AwaitCredentials(h.opts.AuthTimeout)
	}
	hj := &hijacker{ResponseWriter: w, writeBufferSize: h.opts.WriteBufferSize}
	ws, err := websocket.Accept(hj, r, &h.accept)
	if err != nil {
		// Accept has answered. After checkHandshake, only a connection
		// that cannot be hijacked gets here: the server's failure.
		sess.Close(fanout.CloseInternal, "handshake failed")
		h.hub.Logger().Error("websocket: handshake failed", "err", err)
		h.hub.ObserveHandshake("websocket", start, err)
		return
	}
	ws.SetReadLimit(h.opts.ReadLimit)
	// Without an extension, messages are plain frames that the writer
	// frames itself.
	c := newConn(h, sess, ws, hj.nc, w.Header().Get("Sec-WebSocket-Extensions") == "")
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		sess.Close(fanout.CloseShutdown, "server shutting down")
		ws.Close(websocket.StatusCode(fanout.CloseShutdown), "server shutting down")
		h.hub.ObserveHandshake("websocket", start, errShuttingDown)
		return
	}
	h.hub.ObserveHandshake("websocket", start, nil)
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	// The request's goroutine returns, and with it net/http's buffers and
	// the request: an idle connection keeps only what it needs.
	go c.serve()
}

// refuse answers a handshake that is refused, and reports it.
func (h *Handler) refuse(w http.ResponseWriter, start time.Time, status int, err error) {
	h.hub.ObserveHandshake("websocket", start, err)
	fanout.WriteError(w, status, err)
}

// errShuttingDown answers handshakes after Close.
var errShuttingDown = fmt.Errorf("%w: the server is shutting down", fanout.ErrClosed)

// checkHandshake checks what RFC 6455 asks of a handshake request, as the
// WebSocket library would, so that a refusal gets the protocol's error
// body. It returns the status of the refusal.
func checkHandshake(w http.ResponseWriter, r *http.Request) (int, error) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return http.StatusMethodNotAllowed, fmt.Errorf("%w: method %s, use GET", fanout.ErrBadRequest, r.Method)
	}
	if !r.ProtoAtLeast(1, 1) || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, fmt.Errorf("%w: not a WebSocket handshake (Connection: Upgrade and Upgrade: websocket over HTTP/1.1)", fanout.ErrBadRequest)
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusBadRequest, fmt.Errorf("%w: Sec-WebSocket-Version %.16q, want 13", fanout.ErrBadRequest, v)
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return http.StatusBadRequest, fmt.Errorf("%w: want one Sec-WebSocket-Key header, got %d", fanout.ErrBadRequest, len(keys))
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return http.StatusBadRequest, fmt.Errorf("%w: Sec-WebSocket-Key is not 16 bytes in base64", fanout.ErrBadRequest)
	}
	return 0, nil
}

// headerHasToken reports whether a comma-separated header of h holds
// token, in any case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// checkOrigin allows a request without an Origin header (not a browser's),
// one from a page of the request's host, and one from a page whose origin
// matches OriginPatterns. Its error matches [fanout.ErrForbidden].
func (h *Handler) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err == nil && u.Host != "" {
		if strings.EqualFold(u.Host, r.Host) {
			return nil
		}
		for _, p := range h.opts.OriginPatterns {
			target := u.Host
			if strings.Contains(p, "://") {
				target = u.Scheme + "://" + u.Host
			}
			if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
				return nil
			}
		}
	}
	if len(origin) > 256 {
		origin = origin[:256] + "..."
	}
	return fmt.Errorf("%w: pages of origin %q may not connect", fanout.ErrForbidden, origin)
}

// Close closes every connection the handler serves, as [fanout.Hub.Shutdown]
// does (each session closes with [fanout.CloseShutdown] once its queue is
// written), refuses new ones, and returns when the connections' goroutines
// have ended. After hub.Shutdown, Close only waits. Close is idempotent.
func (h *Handler) Close() error {
	h.mu.Lock()
	h.closed = true
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.sess.Close(fanout.CloseShutdown, "server shutting down")
	}
	h.wg.Wait()
	return nil
}

// done forgets c, whose goroutines have ended.
func (h *Handler) done(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.wg.Done()
}

// readBufferSize is the size of each connection's read buffer. The
// WebSocket library keeps the buffers of the hijacked connection for the
// connection's life, and net/http's are 4 KiB each: smaller ones make idle
// connections cheaper. Reads are client commands, small; a larger message
// is read past the buffer.
const readBufferSize = 512

// hijacker hands the WebSocket library smaller buffers than net/http's.
type hijacker struct {
	http.ResponseWriter
	writeBufferSize int
	nc              *corkConn // set by Hijack
}

// Unwrap returns the ResponseWriter, for http.ResponseController.
func (w *hijacker) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hijacks the connection and returns new buffers over it, with
// whatever net/http had read past the request and written but not flushed.
func (w *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Writer.Buffered() > 0 {
		if err := brw.Writer.Flush(); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	// Bytes the client sent after the request, already read by net/http,
	// are copied into the new reader's buffer, which then reads on from nc.
	n := brw.Reader.Buffered()
	b, _ := brw.Reader.Peek(n)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(b), nc), max(readBufferSize, n))
	if _, err := br.Peek(n); err != nil {
		nc.Close()
		return nil, nil, err
	}
	w.nc = &corkConn{Conn: nc}
	return w.nc, bufio.NewReadWriter(br, bufio.NewWriterSize(w.nc, w.writeBufferSize)), nil
}
