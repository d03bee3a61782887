package fanout

import (
	"fmt"
	"time"
)

// FrameExpiry is the type of a frame that tells the client when its
// credentials expire: the first frame of a session whose principal has an
// ExpiresAt. Its number is apart from the other frame types'.
const FrameExpiry FrameType = 32

// ExpiryFrame tells the client when the session's credentials expire, so
// that it can refresh them in time (see [Session.Refresh]).
type ExpiryFrame struct {
	ExpiresAt time.Time
}

// ReasonExpired is the reason of the close with [CloseUnauthorized] that
// ends a session whose credentials expired.
const ReasonExpired = "credentials expired"

// errExpired refuses a principal whose ExpiresAt has passed.
var errExpired = fmt.Errorf("%w: %s", ErrUnauthenticated, ReasonExpired)

// expired reports whether p's credentials have expired at now.
func expired(p Principal, now time.Time) bool {
	return !p.ExpiresAt.IsZero() && !p.ExpiresAt.After(now)
}

// startExpiry arms the expiry of a new session and queues the frame that
// announces it.
func (s *Session) startExpiry() {
	s.mu.Lock()
	at := s.principal.ExpiresAt
	if !at.IsZero() {
		s.armExpiryLocked(at, ReasonExpired)
		s.pushLocked(Frame{Type: FrameExpiry, Expiry: &ExpiryFrame{ExpiresAt: at}})
	}
	s.mu.Unlock()
	if !at.IsZero() {
		s.signal()
	}
}

// armExpiryLocked makes the session close with [CloseUnauthorized] and
// reason at the time at, in place of any expiry armed before. One timer
// per session (time.AfterFunc: no goroutine while it waits). s.mu must be
// held.
func (s *Session) armExpiryLocked(at time.Time, reason string) {
	s.stopExpiryLocked()
	if s.closing != nil {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(time.Until(at), func() {
		s.mu.Lock()
		current := s.expiry == t
		if current {
			s.expiry = nil
		}
		s.mu.Unlock()
		// A refresh that replaced this timer after it fired wins.
		if current {
			s.Close(CloseUnauthorized, reason)
		}
	})
	s.expiry = t
}

// stopExpiryLocked disarms the session's expiry. s.mu must be held.
func (s *Session) stopExpiryLocked() {
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
}

// ExpiresAt returns when the session's credentials expire, and the session
// closes with [CloseUnauthorized] unless they are refreshed first; zero
// means never.
func (s *Session) ExpiresAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.principal.ExpiresAt
}
