package fanout

import (
	"testing"
	"unsafe"
)

// TestSessionLayout keeps what a delivery touches in the first two cache
// lines of a session, and the session a size class that keeps it aligned.
func TestSessionLayout(t *testing.T) {
	var s Session
	if size := unsafe.Sizeof(s); size != 384 {
		t.Errorf("Session is %d bytes, want 384", size)
	}
	hot := map[string]uintptr{
		"mu":        unsafe.Offsetof(s.mu) + unsafe.Sizeof(s.mu),
		"queue":     unsafe.Offsetof(s.queue) + unsafe.Sizeof(s.queue),
		"closing":   unsafe.Offsetof(s.closing) + unsafe.Sizeof(s.closing),
		"pendN":     unsafe.Offsetof(s.pendN) + unsafe.Sizeof(s.pendN),
		"pendBytes": unsafe.Offsetof(s.pendBytes) + unsafe.Sizeof(s.pendBytes),
		"hub":       unsafe.Offsetof(s.hub) + unsafe.Sizeof(s.hub),
		"notify":    unsafe.Offsetof(s.notify) + unsafe.Sizeof(s.notify),
		"writer":    unsafe.Offsetof(s.writer) + unsafe.Sizeof(s.writer),
	}
	for name, end := range hot {
		if end > 128 {
			t.Errorf("Session.%s ends at byte %d, past the first 128", name, end)
		}
	}
}
