package fanout

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// InspectOptions configures [NewInspectHandler]. The zero value is valid.
type InspectOptions struct {
	// MaxTopics bounds the topics listed, MaxSessions the sessions; the
	// answer gives the counts of all of them. Defaults: 1000 each.
	MaxTopics, MaxSessions int
}

// NewInspectHandler returns a read-only HTTP handler for operators: a GET
// answers with JSON that lists this node's topics (name, local subscribers,
// last delivered position) and sessions (id, principal, transport,
// subscriptions with their positions, queue depth in frames, age),
// ordered by name and by id, at most [InspectOptions.MaxTopics] and
// [InspectOptions.MaxSessions] of them:
//
//	{"topics": {"count": 2, "items": [{"topic": ..., "subscribers": 1, "position": {"epoch": ..., "seq": 3}}]},
//	 "sessions": {"count": 1, "items": [{"id": 7, "principal": "u1", "transport": "websocket",
//	   "subscriptions": [{"topic": ..., "position": {...}}], "queue": 0, "age_seconds": 12.5}]}}
//
// The request is authenticated with [Hub.Authenticate] (transport "http")
// and must be made by a principal with an ID that the hub's authorizer
// allows [ActionInspect], with an empty topic; anonymous principals are
// refused whatever the authorizer says. Refusals have the body of
// [WriteError]: 401, 403, or 405 for another method than GET.
//
// Each listing locks one shard or one session at a time: the answer is
// not one instant's picture, and costs the hub no pause.
func NewInspectHandler(hub *Hub, opts *InspectOptions) http.Handler {
	h := &inspectHandler{hub: hub}
	if opts != nil {
		h.opts = *opts
	}
	if h.opts.MaxTopics <= 0 {
		h.opts.MaxTopics = 1000
	}
	if h.opts.MaxSessions <= 0 {
		h.opts.MaxSessions = 1000
	}
	return h
}

type inspectHandler struct {
	hub  *Hub
	opts InspectOptions
}

// inspectSub is one subscription in the inspection's answer.
type inspectSub struct {
	Topic    string   `json:"topic"`
	Position Position `json:"position"`
}

type inspectSession struct {
	ID            uint64       `json:"id"`
	Principal     string       `json:"principal"`
	Transport     string       `json:"transport"`
	Subscriptions []inspectSub `json:"subscriptions"`
	Queue         int          `json:"queue"`
	Age           float64      `json:"age_seconds"`
}

func (h *inspectHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		WriteError(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: method %s, use GET", ErrBadRequest, r.Method))
		return
	}
	ctx := r.Context()
	p, err := h.hub.Authenticate(ctx, CredentialsFromRequest(r, "http"))
	if err == nil && p.ID == "" {
		err = fmt.Errorf("%w: inspection needs credentials", ErrUnauthenticated)
	}
	if err != nil {
		WriteError(w, HTTPStatus(err), err)
		return
	}
	if err := h.hub.Authorize(ctx, p, "", ActionInspect); err != nil {
		WriteError(w, HTTPStatus(err), err)
		return
	}

	topics := h.hub.Topics()
	slices.SortFunc(topics, func(a, b Topic) int { return strings.Compare(a.Name, b.Name) })
	nTopics := len(topics)
	topics = topics[:min(nTopics, h.opts.MaxTopics)]

	h.hub.sessMu.Lock()
	sessions := h.hub.sessionList()
	h.hub.sessMu.Unlock()
	slices.SortFunc(sessions, func(a, b *Session) int { return cmp.Compare(a.id, b.id) })
	nSessions := len(sessions)
	sessions = sessions[:min(nSessions, h.opts.MaxSessions)]
	now := time.Now()
	items := make([]inspectSession, 0, len(sessions))
	for _, s := range sessions {
		items = append(items, s.inspect(now))
	}

	type list[T any] struct {
		Count int `json:"count"`
		Items []T `json:"items"`
	}
	b, err := json.Marshal(struct {
		Topics   list[Topic]          `json:"topics"`
		Sessions list[inspectSession] `json:"sessions"`
	}{list[Topic]{nTopics, topics}, list[inspectSession]{nSessions, items}})
	if err != nil {
		WriteError(w, http.StatusInternalServerError, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.Write(append(b, '\n'))
}

// inspect describes the session for [NewInspectHandler].
func (s *Session) inspect(now time.Time) inspectSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := inspectSession{
		ID:            s.id,
		Principal:     s.principal.ID,
		Transport:     s.transport,
		Subscriptions: make([]inspectSub, 0, len(s.subs)),
		Queue:         s.queue.n,
		Age:           now.Sub(s.created).Seconds(),
	}
	for name, sub := range s.subs {
		out.Subscriptions = append(out.Subscriptions, inspectSub{Topic: name, Position: Position{Epoch: sub.epoch, Seq: sub.last}})
	}
	slices.SortFunc(out.Subscriptions, func(a, b inspectSub) int { return strings.Compare(a.Topic, b.Topic) })
	return out
}
