package fanout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gofanout/fanout/internal/payload"
)

// PublishHandlerOptions configures [NewPublishHandler]. The zero value is
// valid: every field documents its default. NewPublishHandler copies the
// options.
type PublishHandlerOptions struct {
	// MaxBodyBytes bounds a request body, in bytes; a larger body gets 413.
	// Default: 1 MiB. The hub's MaxPayload bounds the payload itself.
	MaxBodyBytes int64

	// CookieOrigins lists the origins ("https://admin.example.com", scheme
	// and host, with the port unless it is the scheme's default) whose
	// pages may publish with the access_token cookie as their credentials.
	// Default: none. A request authenticated by that cookie is refused
	// (403 forbidden) when it comes from a page of another origin than the
	// request's own host: its Origin header names another host, or its
	// Sec-Fetch-Site header says cross-site. Such a request is what any
	// site can make a browser send with the user's cookie (cross-site
	// request forgery). Credentials in the Authorization header or the
	// token query parameter are not affected: a page of another site
	// cannot send what it does not know.
	CookieOrigins []string
}

// MaxIdempotencyKeyLength bounds the idempotency key of an HTTP publish, in
// bytes.
const MaxIdempotencyKeyLength = payload.MaxIdempotencyKeyLength

// NewPublishHandler returns an http.Handler through which services publish
// to hub over HTTP, for producers written in any language. Mount it on a
// path without a method ("/publish", not "POST /publish"), so that it
// answers other methods itself with the JSON error body below: for a
// pattern with a method, net/http answers them with a plain-text 405. (In
// a ServeMux, "/publish" conflicts with a pattern such as "GET /" that has
// a method and a shorter path: register that one as "/".)
//
// A request is a POST with a JSON body and the header "Content-Type:
// application/json" (the only parameter allowed is charset=utf-8):
//
//	{"topic": "stock:42", "data": {"qty": 3}, "key": "sku-42", "idempotency_key": "evt-981"}
//
// "data" is any JSON value, published as its compact JSON text; "data64" (standard
// base64, padded) carries bytes that are not JSON instead; exactly one of
// the two is required. "key" makes the message the topic's current state
// for that key ([WithKey]); "idempotency_key" makes a retry return the
// first publication's position instead of publishing twice
// ([WithIdempotencyKey]); "header", an object of at most 32 strings and
// 4 KiB, travels with the message ([WithHeader]). Field names match exactly;
// a field given twice, an unknown field or anything after the object is a
// bad request.
//
// The request's W3C trace context, its traceparent and tracestate headers
// (at most 55 and 512 bytes; longer ones are ignored), travels with the
// message as the header entries of those names, unless the body's header
// sets them, and a [Tracer] continues the trace.
//
// The request is authenticated with [Hub.Authenticate] (transport "http")
// and authorized with [Hub.Authorize] and [ActionPublish]; credentials from
// the access_token cookie are refused on requests of other origins (see
// [PublishHandlerOptions.CookieOrigins]) before the authenticator sees
// them. The answer is 200 with {"topic": ..., "position": {"epoch": ...,
// "seq": N}}, or an error status with the body of [WriteError],
// {"error": {"code": ..., "message": ...}}: 400 (bad_request,
// invalid_topic), 401 (unauthenticated), 403 (forbidden), 405 (bad_request:
// not a POST; with an Allow header), 413 (too_large: body or payload), 415
// (bad_request: not application/json), 503 (closed, unavailable: retry
// later, elsewhere; with a Retry-After header) or 500 (internal).
//
// The handler is safe for concurrent use.
func NewPublishHandler(hub *Hub, opts *PublishHandlerOptions) http.Handler {
	h := &publishHandler{hub: hub}
	if opts != nil {
		h.opts = *opts
		h.opts.CookieOrigins = make([]string, len(opts.CookieOrigins))
		for i, o := range opts.CookieOrigins {
			h.opts.CookieOrigins[i] = strings.TrimSuffix(o, "/")
		}
	}
	if h.opts.MaxBodyBytes <= 0 {
		h.opts.MaxBodyBytes = 1 << 20
	}
	return h
}

type publishHandler struct {
	hub  *Hub
	opts PublishHandlerOptions
}

func (h *publishHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, http.StatusMethodNotAllowed, "", fmt.Errorf("%w: method %s, use POST", ErrBadRequest, r.Method))
		return
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		h.refuse(w, http.StatusUnsupportedMediaType, "", err)
		return
	}
	creds, fromCookie := credentialsFromRequest(r, "http")
	if fromCookie && h.crossOrigin(r) {
		h.refuse(w, http.StatusForbidden, "", fmt.Errorf("%w: the access_token cookie is not accepted from pages of another origin", ErrForbidden))
		return
	}
	ctx := withRequestTrace(r.Context(), r.Header.Get(HeaderTraceparent), r.Header.Get(HeaderTracestate))
	p, err := h.hub.Authenticate(ctx, creds)
	if err != nil {
		h.refuse(w, HTTPStatus(err), "", err)
		return
	}
	req, err := h.readRequest(w, r)
	if err != nil {
		h.refuse(w, HTTPStatus(err), "", err)
		return
	}
	if err := h.hub.Authorize(ctx, p, req.Topic, ActionPublish); err != nil {
		h.refuse(w, HTTPStatus(err), req.Topic, err)
		return
	}
	opts := make([]PublishOption, 0, 3)
	if req.Header != nil {
		opts = append(opts, WithHeader(req.Header))
	}
	if req.Key != "" {
		opts = append(opts, WithKey(req.Key))
	}
	if req.IdempotencyKey != "" {
		opts = append(opts, WithIdempotencyKey(req.IdempotencyKey))
	}
	pos, err := h.hub.publishAs(ctx, "http", req.Topic, req.Data, opts)
	if err != nil {
		if ctx.Err() != nil {
			return // the client went away; nobody reads an answer
		}
		status := HTTPStatus(err)
		if status == http.StatusInternalServerError {
			h.hub.Logger().Error("fanout: HTTP publish failed", "topic", req.Topic, "err", err)
		}
		WriteError(w, status, err)
		return
	}
	type position struct {
		Epoch string `json:"epoch"`
		Seq   uint64 `json:"seq"`
	}
	b, _ := json.Marshal(struct {
		Topic    string   `json:"topic"`
		Position position `json:"position"`
	}{req.Topic, position(pos)})
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// refuse answers a publish that failed before it reached the hub, and
// reports it as [EventPublishFailed].
func (h *publishHandler) refuse(w http.ResponseWriter, status int, topic string, err error) {
	h.hub.observe(Event{Type: EventPublishFailed, Topic: topic, Transport: "http", Err: err})
	WriteError(w, status, err)
}

// checkContentType accepts application/json, with charset=utf-8 as its
// only parameter. Anything else is what an HTML form can send across
// sites without the browser asking first (text/plain, form encodings), or
// a body this handler would misread. Its error matches ErrBadRequest.
func checkContentType(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		cs, ok := params["charset"]
		if len(params) == 0 || len(params) == 1 && ok && strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	if ct == "" {
		return fmt.Errorf("%w: no Content-Type, want application/json", ErrBadRequest)
	}
	if len(ct) > 64 {
		ct = ct[:64] + "..."
	}
	return fmt.Errorf("%w: Content-Type %q, want application/json", ErrBadRequest, ct)
}

// crossOrigin reports whether r comes from a page of another origin than
// r's own host, and not one of CookieOrigins.
func (h *publishHandler) crossOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o != "" && slices.ContainsFunc(h.opts.CookieOrigins, func(a string) bool { return strings.EqualFold(a, o) }) {
		return false
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return true
	}
	if o == "" {
		return false // not a browser's request, or a same-origin GET-like one
	}
	u, err := url.Parse(o)
	return err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host)
}

// readRequest reads and checks the body, with the rules of the publish
// command (package payload): field names exactly as documented, no member
// twice, no unknown field, nothing after the object. Its errors match
// ErrBadRequest, ErrInvalidTopic or ErrTooLarge.
func (h *publishHandler) readRequest(w http.ResponseWriter, r *http.Request) (payload.Publish, error) {
	var req payload.Publish
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return req, fmt.Errorf("%w: body larger than %d bytes", ErrTooLarge, mb.Limit)
		}
		return req, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
	ms, err := payload.Members(nil, body)
	if err != nil {
		return req, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	for _, m := range ms {
		known, err := req.Set(m.Name, m.Value)
		if !known {
			err = payload.Unknown(m.Name)
		}
		if err != nil {
			return req, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	}
	if err := ValidateTopic(req.Topic); err != nil {
		return req, err
	}
	if err := req.Finish(); err != nil {
		return req, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return req, nil
}
