package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gofanout/fanout/internal/payload"
)

// PublishHandlerOptions configures [NewPublishHandler]. The zero value is
// valid: every field documents its default. NewPublishHandler copies the
// options.
type PublishHandlerOptions struct {
	// MaxBodyBytes bounds a request body, in bytes; a larger body gets 413.
	// Default: 1 MiB. The hub's MaxPayload bounds the payload itself.
	MaxBodyBytes int64
}

// MaxIdempotencyKeyLength bounds the idempotency key of an HTTP publish, in
// bytes.
const MaxIdempotencyKeyLength = payload.MaxIdempotencyKeyLength

// NewPublishHandler returns an http.Handler through which services publish
// to hub over HTTP, for producers written in any language.
//
// A request is a POST with a JSON body:
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
// The request is authenticated with [Hub.Authenticate] (transport "http")
// and authorized with [Hub.Authorize] and [ActionPublish]. The answer is 200
// with {"topic": ..., "position": {"epoch": ..., "seq": N}}, or an error
// status with {"error": {"code": ..., "message": ...}}, the code being
// [ErrorCode]'s: 400 (bad_request, invalid_topic), 401 (unauthenticated), 403
// (forbidden), 405 (bad_request: not a POST), 413 (too_large: body or
// payload), 503 (closed, unavailable: retry later, elsewhere) or 500
// (internal).
//
// The handler is safe for concurrent use.
func NewPublishHandler(hub *Hub, opts *PublishHandlerOptions) http.Handler {
	h := &publishHandler{hub: hub}
	if opts != nil {
		h.opts = *opts
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
		writeHTTPError(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: method %s, want POST", ErrBadRequest, r.Method))
		return
	}
	ctx := r.Context()
	p, err := h.hub.Authenticate(ctx, CredentialsFromRequest(r, "http"))
	if err != nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeHTTPError(w, http.StatusUnauthorized, err)
		return
	}
	req, err := h.readRequest(w, r)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		writeHTTPError(w, status, err)
		return
	}
	if err := h.hub.Authorize(ctx, p, req.Topic, ActionPublish); err != nil {
		writeHTTPError(w, http.StatusForbidden, err)
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
	pos, err := h.hub.Publish(ctx, req.Topic, req.Data, opts...)
	if err != nil {
		writeHTTPError(w, publishStatus(ctx, err), err)
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

// publishStatus maps an error of Hub.Publish to an HTTP status.
func publishStatus(ctx context.Context, err error) int {
	switch {
	case errors.Is(err, ErrInvalidTopic), errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case ctx.Err() != nil:
		return http.StatusServiceUnavailable // the client went away; nobody reads this
	}
	return http.StatusInternalServerError
}

// writeHTTPError writes {"error":{"code":...,"message":...}}.
func writeHTTPError(w http.ResponseWriter, status int, err error) {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Error body `json:"error"`
	}{body{ErrorCode(err), err.Error()}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
