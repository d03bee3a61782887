// Package sse serves fanout topics as Server-Sent Events, the transport that
// browsers speak with EventSource and that passes through any HTTP proxy.
//
// A stream is one GET request: its topics are fixed by the query
// (?topic=a&topic=b), its events are the JSON frames of the WebSocket
// protocol, and every message event carries an id that records the position
// of every topic of the stream. When the connection drops, the browser
// reconnects by itself with that id in the Last-Event-ID header, and the
// stream continues exactly after the last event it received: nothing lost,
// nothing repeated. docs/PROTOCOL.md describes the wire format.
//
//	hub, _ := fanout.NewHub(nil)
//	http.Handle("/events", sse.New(hub, nil))
//
// In the browser:
//
//	const es = new EventSource("/events?topic=product:42&snapshot=1");
//	es.addEventListener("msg", e => render(JSON.parse(e.data)));
//	es.addEventListener("close", e => { if (!JSON.parse(e.data).reconnect) es.close(); });
//
// A stream ends by itself once every one of its topics has delivered its
// final message (one published with [fanout.WithFinal], as a saga's last
// state), live, replayed from history, or inside a snapshot: after the
// event that carries it, the handler writes a close event with code 1000,
// reason "topic ended" and reconnect false, and ends the response. The ids
// of a stream remember which topics ended, so a reconnection does not
// follow them again; one whose topics all ended is answered 204 No
// Content, which stops EventSource for good.
//
// The handler ends its streams when the hub shuts down ([fanout.Hub.Shutdown]),
// which http.Server.Shutdown alone does not do. It sets no CORS headers:
// to serve pages of other origins, wrap it in a handler that does (and let
// middleware that wraps the ResponseWriter implement Unwrap, so that the
// handler can flush).
package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// Options configures a [Handler]. The zero value is valid: every field
// documents its default. New copies the options.
type Options struct {
	// Retry is the reconnection delay the stream advises clients in its
	// retry field, and the Retry-After of a 503 while the hub is shutting
	// down. Default: 2s.
	Retry time.Duration
	// HeartbeatInterval is how long a stream may stay silent: after that
	// long without writing, the handler writes a comment line, which keeps
	// proxies from closing an idle connection and lets a server notice a
	// client that is gone. Default: 15s.
	HeartbeatInterval time.Duration
}

// Handler serves Server-Sent Events streams of a hub's topics. It is safe
// for concurrent use; each request is served by its own goroutine, which
// is the stream's only writer.
type Handler struct {
	hub  *fanout.Hub
	opts Options
}

// New returns a handler that serves the topics of hub.
func New(hub *fanout.Hub, opts *Options) *Handler {
	h := &Handler{hub: hub}
	if opts != nil {
		h.opts = *opts
	}
	if h.opts.Retry <= 0 {
		h.opts.Retry = 2 * time.Second
	}
	if h.opts.HeartbeatInterval <= 0 {
		h.opts.HeartbeatInterval = 15 * time.Second
	}
	return h
}

// writeChunk is how much a stream buffers before it writes; it flushes once
// per batch of frames.
const writeChunk = 32 << 10

// stream is one request being served.
type stream struct {
	h        *Handler
	w        http.ResponseWriter
	rc       *http.ResponseController
	sess     *fanout.Session
	cur      *cursorState
	snapshot bool // snapshot=1: fresh subscriptions start with a snapshot
	buf      []byte
	err      error     // the first write error
	deadline time.Time // the write deadline set last, zero for none
}

// ServeHTTP serves one stream. See the package documentation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		err := fmt.Errorf("%w: method %s, use GET", fanout.ErrBadRequest, r.Method)
		h.hub.ObserveHandshake("sse", start, err)
		fanout.WriteError(w, http.StatusMethodNotAllowed, err)
		return
	}
	topics, subs, snapshot, err := h.parse(r)
	if err != nil {
		h.hub.ObserveHandshake("sse", start, err)
		fanout.WriteError(w, fanout.HTTPStatus(err), err)
		return
	}
	if !canFlush(w) {
		// A middleware hides the server's Flush: events would sit in a
		// buffer. Fail loudly rather than stream nothing.
		h.hub.Logger().Error("sse: the ResponseWriter cannot flush; does a middleware wrap it without Unwrap?")
		h.hub.ObserveHandshake("sse", start, errNoFlush)
		fanout.WriteError(w, http.StatusInternalServerError, errNoFlush)
		return
	}
	ctx := r.Context()
	principal, err := h.hub.Authenticate(ctx, fanout.CredentialsFromRequest(r, "sse"))
	if err != nil {
		h.hub.ObserveHandshake("sse", start, err)
		fanout.WriteError(w, fanout.HTTPStatus(err), err)
		return
	}
	if len(subs) == 0 {
		// The cursor says that every topic ended: a browser that
		// reconnects after the end gets 204, which makes EventSource
		// stop for good.
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	sess, err := h.hub.NewSession(principal)
	if err != nil {
		h.hub.ObserveHandshake("sse", start, err)
		h.refuse(w, err)
		return
	}
	for _, req := range subs {
		if err := sess.Subscribe(ctx, req); err != nil {
			sess.Close(fanout.CloseNormal, "subscribe failed")
			if ctx.Err() == nil {
				h.hub.ObserveHandshake("sse", start, err)
				h.refuse(w, err)
			}
			return
		}
	}
	h.hub.ObserveHandshake("sse", start, nil)
	s := &stream{h: h, w: w, rc: http.NewResponseController(w), sess: sess, cur: topics, snapshot: snapshot}
	s.run(ctx, r.ProtoMajor == 1 && r.ProtoMinor == 1, subs)
	sess.Close(fanout.CloseGoingAway, "")
}

// canFlush reports whether w, or a ResponseWriter it wraps, can flush, as
// http.ResponseController finds out.
func canFlush(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }, http.Flusher:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// parse reads the request's topics, snapshot flag and cursor. It returns the
// stream's cursor state and its subscriptions, in the order of the query.
func (h *Handler) parse(r *http.Request) (*cursorState, []fanout.SubscribeRequest, bool, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w: query: %v", fanout.ErrBadRequest, err)
	}
	names := q["topic"]
	if len(names) == 0 {
		return nil, nil, false, fmt.Errorf("%w: no topic parameter", fanout.ErrBadRequest)
	}
	for _, t := range names {
		if err := fanout.ValidateTopic(t); err != nil {
			return nil, nil, false, err
		}
	}
	var snapshot bool
	switch v := q.Get("snapshot"); v {
	case "", "0", "false":
	case "1", "true":
		snapshot = true
	default:
		return nil, nil, false, fmt.Errorf("%w: snapshot=%q, want 1 or 0", fanout.ErrBadRequest, v)
	}
	cur := newCursorState(sortTopics(names))
	// The browser sends Last-Event-ID when it reconnects, with the URL of
	// the first connection: the header is newer than the since parameter.
	c, from := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if c == "" {
		c, from = q.Get("since"), "since"
	}
	if c != "" {
		if err := cur.decode(c); err != nil {
			return nil, nil, false, fmt.Errorf("%w: %s: %w", fanout.ErrBadRequest, from, err)
		}
	}
	subs := make([]fanout.SubscribeRequest, 0, len(cur.topics))
	seen := make(map[string]bool, len(cur.topics))
	for _, t := range names {
		if seen[t] {
			continue
		}
		seen[t] = true
		i := cur.index[t]
		if cur.ended[i] {
			continue // it delivered its final message: nothing follows
		}
		req := fanout.SubscribeRequest{Topic: t, Snapshot: snapshot}
		if cur.set[i] {
			p := cur.pos[i]
			req.Since, req.Snapshot = &p, false
		}
		subs = append(subs, req)
	}
	return cur, subs, snapshot, nil
}

// refuse answers a request that cannot start its stream, with the
// stream's own retry delay as the Retry-After of a 503.
func (h *Handler) refuse(w http.ResponseWriter, err error) {
	status := fanout.HTTPStatus(err)
	switch status {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(int((h.opts.Retry+time.Second-1)/time.Second)))
	case http.StatusInternalServerError:
		h.hub.Logger().Error("sse: cannot start a stream", "err", err)
	}
	fanout.WriteError(w, status, err)
}

// errNoFlush answers a request whose ResponseWriter cannot flush.
var errNoFlush = errors.New("streaming is not supported here")

// run starts the stream and hands it to the session's writer, which the hub
// runs; it returns once the writer is done with the stream: the session
// closed, every topic of the stream delivered its final message, a write
// failed or timed out, or the client went away.
func (s *stream) run(ctx context.Context, http11 bool, subs []fanout.SubscribeRequest) {
	hd := s.w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if http11 {
		// HTTP/2 and later forbid connection-specific headers.
		hd.Set("Connection", "keep-alive")
	}
	s.w.WriteHeader(http.StatusOK)
	s.buf = make([]byte, 0, 4096)
	s.buf = append(s.buf, "retry: "...)
	s.buf = strconv.AppendInt(s.buf, s.h.opts.Retry.Milliseconds(), 10)
	s.buf = append(s.buf, "\n\n"...)

	topics := make([]string, len(subs))
	for i, sub := range subs {
		topics[i] = sub.Topic
	}
	s.sess.Attach(s, &fanout.ConnOptions{Heartbeat: s.h.opts.HeartbeatInterval, EndAfterFinal: topics, Transport: "sse"})
	select {
	case <-s.sess.Detached():
	case <-ctx.Done():
		// The client went away, or a write failed: the writer says which.
		s.sess.Hangup()
		<-s.sess.Detached()
	}
}

// WriteFrames implements [fanout.Conn].
func (s *stream) WriteFrames(frames []fanout.Frame, deadline time.Time) error {
	s.setDeadline(deadline)
	for _, f := range frames {
		s.frame(f)
	}
	return s.flush()
}

// WriteHeartbeat implements [fanout.Conn] with a comment line.
func (s *stream) WriteHeartbeat(deadline time.Time) error {
	s.setDeadline(deadline)
	s.buf = append(s.buf, ": heartbeat\n\n"...)
	return s.flush()
}

// WriteClose implements [fanout.Conn] with a close event; the response
// ends when the handler returns.
func (s *stream) WriteClose(frames []fanout.Frame, cf *fanout.CloseFrame, deadline time.Time) error {
	s.setDeadline(deadline)
	for _, f := range frames {
		s.frame(f)
	}
	s.frame(fanout.Frame{Type: fanout.FrameClose, Close: cf})
	if err := s.flush(); err != nil {
		return err
	}
	// What is left to write is the end of the response: the deadline
	// must not outlive the stream on a connection that serves on.
	s.rc.SetWriteDeadline(time.Time{})
	s.deadline = time.Time{}
	return nil
}

// Abort implements [fanout.Conn]: a deadline in the past fails the write
// in progress and every later one (HTTP/2 resets the stream).
func (s *stream) Abort() {
	s.rc.SetWriteDeadline(time.Unix(1, 0))
}

// setDeadline bounds the writes that follow, unless the deadline is set
// already: consecutive writes mostly share one (see fanout's
// ConnOptions.WriteTimeout), and setting it moves a runtime timer. After
// Abort the deadline stays in the past. A ResponseWriter that cannot set
// deadlines (ErrNotSupported from a middleware that hides them) leaves the
// writes unbounded, as before.
func (s *stream) setDeadline(t time.Time) {
	if s.err == nil && !t.Equal(s.deadline) {
		s.rc.SetWriteDeadline(t)
		s.deadline = t
	}
}

// frame appends one event, writing out the buffer when it grows large. A
// message published [fanout.WithFinal], or a snapshot that holds one, marks
// its topic ended in the stream's ids. Messages and snapshots of a topic
// that ended are left out (the session's writer drops them too).
func (s *stream) frame(f fanout.Frame) {
	b := s.buf
	switch f.Type {
	case fanout.FrameMessage:
		m := f.Message
		if i, ok := s.cur.index[m.Topic]; ok {
			if s.cur.ended[i] {
				return
			}
			s.cur.setPos(i, m.Position)
			if m.Final() {
				s.cur.end(i)
			}
		}
		b = append(b, "event: msg\nid: "...)
		b = s.cur.appendCursor(b)
		b = append(b, '\n')
		b = appendData(b, m.Encode(wire.JSON))
	case fanout.FrameReply:
		r := f.Reply
		// The reply of a plain subscription gives the position live
		// messages continue after. Other replies are followed by what
		// brings the client to their position (history, a snapshot), so
		// the cursor moves only with what follows.
		if i, ok := s.cur.index[r.Topic]; ok && r.Err == nil && r.Position != nil && r.Recovered == nil && !s.cur.set[i] && !s.snapshot {
			s.cur.setPos(i, *r.Position)
		}
		b = append(b, "event: reply\nid: "...)
		b = s.cur.appendCursor(b)
		b = append(b, '\n')
		b = appendData(b, wire.AppendFrame(nil, f))
	case fanout.FrameSnapshot:
		if i, ok := s.cur.index[f.Snapshot.Topic]; ok {
			if s.cur.ended[i] {
				return
			}
			s.cur.setPos(i, f.Snapshot.Position)
			if slices.ContainsFunc(f.Snapshot.Items, (*fanout.Message).Final) {
				s.cur.end(i)
			}
		}
		b = append(b, "event: snapshot\nid: "...)
		b = s.cur.appendCursor(b)
		b = append(b, '\n')
		b = appendData(b, wire.AppendFrame(nil, f))
	case fanout.FrameClose:
		b = append(b, "event: close\n"...)
		b = appendData(b, wire.AppendFrame(nil, f))
	case fanout.FrameExpiry:
		// No id: the cursor does not move.
		b = append(b, "event: expiry\n"...)
		b = appendData(b, wire.AppendFrame(nil, f))
	case fanout.FrameJoin, fanout.FrameLeave:
		// No id: a join or leave takes no position, so the cursor stays.
		if f.Type == fanout.FrameJoin {
			b = append(b, "event: join\n"...)
		} else {
			b = append(b, "event: leave\n"...)
		}
		b = appendData(b, wire.AppendFrame(nil, f))
	}
	s.buf = b
	if len(s.buf) >= writeChunk {
		s.write()
	}
}

// appendData appends data as data lines and ends the event. The JSON
// frames are single lines; a line break would still be carried correctly.
func appendData(b, data []byte) []byte {
	for {
		b = append(b, "data: "...)
		i := indexLineBreak(data)
		if i < 0 {
			b = append(b, data...)
			return append(b, "\n\n"...)
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}

func indexLineBreak(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if j := bytes.IndexByte(b, '\r'); j >= 0 && (i < 0 || j < i) {
		return j
	}
	return i
}

// write writes out the buffer, remembering the first error.
func (s *stream) write() {
	if s.err == nil && len(s.buf) > 0 {
		_, s.err = s.w.Write(s.buf)
	}
	if cap(s.buf) > 1<<20 {
		s.buf = make([]byte, 0, 4096) // give a large snapshot's memory back
	}
	s.buf = s.buf[:0]
}

// flush writes out the buffer and flushes the response; it returns the
// first write error.
func (s *stream) flush() error {
	s.write()
	if s.err == nil {
		s.err = s.rc.Flush()
	}
	return s.err
}
