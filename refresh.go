package fanout

import (
	"context"
	"fmt"
	"time"
)

// AwaitCredentials marks a new session as unauthenticated: it acts as the
// anonymous principal for nothing, and may only authenticate, with
// [Session.Authenticate], within timeout; past it the session closes with
// [CloseUnauthorized]. A transport whose connection carried no credentials
// calls it before it reads the first command, and asks
// [Session.CheckCredentials] before every other command. It does nothing
// on a session that has credentials already.
func (s *Session) AwaitCredentials(timeout time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing != nil || !s.principal.ExpiresAt.IsZero() || s.principal.ID != "" {
		return
	}
	s.awaiting = true
	s.armExpiryLocked(time.Now().Add(timeout), fmt.Sprintf("no credentials within %v", timeout))
}

// AwaitingCredentials reports whether the session still waits for the
// credentials that [Session.AwaitCredentials] asked for.
func (s *Session) AwaitingCredentials() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.awaiting
}

// CheckCredentials reports whether the session may run a command other
// than auth. A session awaiting credentials may not: CheckCredentials then
// answers the command id with an unauthenticated error and closes the
// session with [CloseUnauthorized] after that reply.
func (s *Session) CheckCredentials(id string) bool {
	s.mu.Lock()
	awaiting := s.awaiting
	s.mu.Unlock()
	if !awaiting {
		return true
	}
	s.refuse(id, fmt.Errorf("%w: send an auth command first", ErrUnauthenticated), "no credentials")
	return false
}

// Authenticate gives the session the credentials c that its client sent
// after connecting, in its first command (id): it authenticates them with
// the hub, and on success the session acts as the new principal and
// answers with an ok reply carrying when the credentials expire. It is for
// a session that awaits credentials ([Session.AwaitCredentials]) or acts
// as the anonymous principal; others get a bad_request reply. Credentials
// that the authenticator refuses get an unauthenticated reply, after which
// the session closes with [CloseUnauthorized]. Authenticate answers the
// command itself; its error is the one it replied with.
func (s *Session) Authenticate(ctx context.Context, id string, c *Credentials) error {
	s.mu.Lock()
	ok := s.awaiting || s.principal.ID == ""
	s.mu.Unlock()
	if !ok {
		err := fmt.Errorf("%w: the session is authenticated already; use refresh", ErrBadRequest)
		s.Reply(Reply{ID: id, Err: err})
		return err
	}
	p, err := s.hub.Authenticate(ctx, c)
	if err != nil {
		s.refuse(id, err, "credentials rejected")
		return err
	}
	s.setPrincipal(id, p)
	return nil
}

// Refresh replaces the session's credentials by c, which its client sent
// in a refresh command (id), without reconnecting: the hub authenticates
// them, and the new principal, which must have the session's principal ID,
// replaces the old one, its ExpiresAt the session's expiry. The ok reply
// carries the new expiry. Credentials that the authenticator refuses get
// an unauthenticated reply, and a principal of another ID a forbidden one;
// either way the session keeps its credentials, and closes when they
// expire. Refresh answers the command itself; its error is the one it
// replied with.
func (s *Session) Refresh(ctx context.Context, id string, c *Credentials) error {
	p, err := s.hub.Authenticate(ctx, c)
	if err == nil {
		if old := s.Principal().ID; p.ID != old {
			err = fmt.Errorf("%w: refresh: the credentials are %q's, the session is %q's", ErrForbidden, p.ID, old)
		}
	}
	if err != nil {
		s.Reply(Reply{ID: id, Err: err})
		return err
	}
	s.setPrincipal(id, p)
	return nil
}

// setPrincipal makes p the session's principal, arms its expiry and
// answers the command id.
func (s *Session) setPrincipal(id string, p Principal) {
	s.mu.Lock()
	if s.closing == nil {
		s.principal = p
		s.awaiting = false
		if p.ExpiresAt.IsZero() {
			s.stopExpiryLocked()
		} else {
			s.armExpiryLocked(p.ExpiresAt, ReasonExpired)
		}
	}
	s.pushLocked(Frame{Type: FrameReply, Reply: &Reply{ID: id, ExpiresAt: p.ExpiresAt}})
	s.mu.Unlock()
	s.signal()
	// auth names the session's principal: index it by its new ID.
	h := s.hub
	h.sessMu.Lock()
	if _, open := h.sessions[s]; open && s.indexedID != p.ID {
		h.unindexSession(s)
		h.indexSession(s, p.ID)
	}
	h.sessMu.Unlock()
}

// refuse answers the command id with err, then closes the session with
// [CloseUnauthorized] and reason, after the reply and what was queued
// before it.
func (s *Session) refuse(id string, err error, reason string) {
	s.mu.Lock()
	s.pushLocked(Frame{Type: FrameReply, Reply: &Reply{ID: id, Err: err}})
	s.closeLocked(CloseUnauthorized, reason, true)
	s.mu.Unlock()
	s.signal()
	s.Close(CloseUnauthorized, reason)
}
