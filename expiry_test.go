package fanout_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
)

// tokenAuth authenticates tokens "id:seconds": principal id, whose
// credentials expire that many seconds from now (0: never). Any other
// token is refused.
func tokenAuth(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
	if c.Token == "" {
		return fanout.Principal{}, nil
	}
	id, secs, ok := strings.Cut(c.Token, ":")
	n, err := strconv.Atoi(secs)
	if !ok || err != nil {
		return fanout.Principal{}, errors.New("bad token")
	}
	p := fanout.Principal{ID: id}
	if n != 0 {
		p.ExpiresAt = time.Now().Add(time.Duration(n) * time.Second)
	}
	return p, nil
}

// credSession opens a session with the credentials of token, in a hub
// that tokenAuth authenticates.
func credSession(t *testing.T, token string) (*fanout.Hub, *fanout.Session) {
	t.Helper()
	h, err := fanout.NewHub(&fanout.HubOptions{Authenticate: tokenAuth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	p, err := h.Authenticate(context.Background(), &fanout.Credentials{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.NewSession(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(fanout.CloseGoingAway, "") })
	return h, s
}

// nextFrame takes the session's next frame.
func nextSessionFrame(t *testing.T, s *fanout.Session) fanout.Frame {
	t.Helper()
	fs, err := s.Next(context.Background(), make([]fanout.Frame, 0, 1))
	if err != nil || len(fs) != 1 {
		t.Fatalf("next: %v, %v", fs, err)
	}
	return fs[0]
}

// wantClose takes the close frame and checks its code, and that it came
// after d.
func wantClose(t *testing.T, s *fanout.Session, start time.Time, d time.Duration, code fanout.CloseCode) {
	t.Helper()
	f := nextSessionFrame(t, s)
	if f.Type != fanout.FrameClose || f.Close.Code != code {
		t.Fatalf("got frame %+v, want close %v", f, code)
	}
	if got := time.Since(start); got != d {
		t.Fatalf("closed after %v, want %v", got, d)
	}
	if f.Close.Reconnect {
		t.Fatalf("close %+v says reconnect", f.Close)
	}
}

// stillOpen checks that the session has not closed.
func stillOpen(t *testing.T, s *fanout.Session) {
	t.Helper()
	synctest.Wait()
	select {
	case <-s.Done():
		t.Fatal("the session closed")
	default:
	}
}

func TestExpiryClosesSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "alice:60")
		start := time.Now()
		f := nextSessionFrame(t, s)
		if f.Type != fanout.FrameExpiry || !f.Expiry.ExpiresAt.Equal(start.Add(time.Minute)) {
			t.Fatalf("first frame %+v, want the expiry at +1m", f)
		}
		if got := s.ExpiresAt(); !got.Equal(start.Add(time.Minute)) {
			t.Fatalf("ExpiresAt %v", got)
		}
		time.Sleep(59 * time.Second)
		stillOpen(t, s)
		wantClose(t, s, start, time.Minute, fanout.CloseUnauthorized)
	})
}

func TestNoExpiryNoFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "alice:0")
		time.Sleep(24 * time.Hour)
		stillOpen(t, s)
		s.Reply(fanout.Reply{ID: "x"})
		if f := nextSessionFrame(t, s); f.Type != fanout.FrameReply {
			t.Fatalf("got %+v, want only the reply", f)
		}
	})
}

func TestRefreshExtends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "alice:60")
		start := time.Now()
		nextSessionFrame(t, s) // expiry
		time.Sleep(30 * time.Second)
		if err := s.Refresh(context.Background(), "r1", &fanout.Credentials{Token: "alice:60"}); err != nil {
			t.Fatal(err)
		}
		f := nextSessionFrame(t, s)
		if f.Type != fanout.FrameReply || f.Reply.ID != "r1" || f.Reply.Err != nil || !f.Reply.ExpiresAt.Equal(start.Add(90*time.Second)) {
			t.Fatalf("got %+v, want an ok reply with the expiry at +90s", f.Reply)
		}
		time.Sleep(59 * time.Second)
		stillOpen(t, s)
		wantClose(t, s, start, 90*time.Second, fanout.CloseUnauthorized)
	})
}

func TestRefreshToNever(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "alice:60")
		nextSessionFrame(t, s)
		if err := s.Refresh(context.Background(), "r", &fanout.Credentials{Token: "alice:0"}); err != nil {
			t.Fatal(err)
		}
		if f := nextSessionFrame(t, s); f.Reply == nil || !f.Reply.ExpiresAt.IsZero() {
			t.Fatalf("got %+v, want a reply without expiry", f)
		}
		time.Sleep(time.Hour)
		stillOpen(t, s)
	})
}

func TestRefreshRefused(t *testing.T) {
	for _, c := range []struct {
		name, token string
		want        error
	}{
		{"another principal", "bob:600", fanout.ErrForbidden},
		{"bad credentials", "garbage", fanout.ErrUnauthenticated},
		{"expired credentials", "alice:-1", fanout.ErrUnauthenticated},
		{"anonymous", "", fanout.ErrForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, s := credSession(t, "alice:60")
				start := time.Now()
				nextSessionFrame(t, s)
				err := s.Refresh(context.Background(), "r", &fanout.Credentials{Token: c.token})
				if !errors.Is(err, c.want) {
					t.Fatalf("refresh: got %v, want %v", err, c.want)
				}
				f := nextSessionFrame(t, s)
				if f.Reply == nil || f.Reply.ID != "r" || !errors.Is(f.Reply.Err, c.want) {
					t.Fatalf("got %+v, want the error reply", f)
				}
				// The session keeps its principal and its expiry.
				if p := s.Principal(); p.ID != "alice" || !p.ExpiresAt.Equal(start.Add(time.Minute)) {
					t.Fatalf("principal %+v", p)
				}
				wantClose(t, s, start, time.Minute, fanout.CloseUnauthorized)
			})
		})
	}
}

func TestAuthenticateRefusesExpired(t *testing.T) {
	h, err := fanout.NewHub(&fanout.HubOptions{Authenticate: tokenAuth})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Authenticate(context.Background(), &fanout.Credentials{Token: "alice:-5"})
	if !errors.Is(err, fanout.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("got %v, want unauthenticated: credentials expired", err)
	}
}

func TestAwaitCredentialsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "")
		start := time.Now()
		s.AwaitCredentials(10 * time.Second)
		if !s.AwaitingCredentials() {
			t.Fatal("not awaiting")
		}
		time.Sleep(9 * time.Second)
		stillOpen(t, s)
		wantClose(t, s, start, 10*time.Second, fanout.CloseUnauthorized)
	})
}

func TestAwaitCredentialsOtherCommandFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "")
		s.AwaitCredentials(10 * time.Second)
		if s.CheckCredentials("1") {
			t.Fatal("a command ran before auth")
		}
		f := nextSessionFrame(t, s)
		if f.Reply == nil || f.Reply.ID != "1" || !errors.Is(f.Reply.Err, fanout.ErrUnauthenticated) {
			t.Fatalf("got %+v, want the unauthenticated reply", f)
		}
		wantClose(t, s, time.Now(), 0, fanout.CloseUnauthorized)
	})
}

func TestAuthenticateFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "")
		start := time.Now()
		s.AwaitCredentials(10 * time.Second)
		time.Sleep(5 * time.Second)
		if err := s.Authenticate(context.Background(), "a", &fanout.Credentials{Token: "alice:60"}); err != nil {
			t.Fatal(err)
		}
		if s.AwaitingCredentials() || !s.CheckCredentials("x") || s.Principal().ID != "alice" {
			t.Fatalf("after auth: awaiting %v, principal %+v", s.AwaitingCredentials(), s.Principal())
		}
		f := nextSessionFrame(t, s)
		if f.Reply == nil || f.Reply.Err != nil || !f.Reply.ExpiresAt.Equal(start.Add(65*time.Second)) {
			t.Fatalf("got %+v, want the ok reply with the expiry", f)
		}
		// The deadline no longer holds; the credentials' expiry does.
		wantClose(t, s, start, 65*time.Second, fanout.CloseUnauthorized)
	})
}

func TestAuthenticateRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "")
		s.AwaitCredentials(10 * time.Second)
		err := s.Authenticate(context.Background(), "a", &fanout.Credentials{Token: "garbage"})
		if !errors.Is(err, fanout.ErrUnauthenticated) {
			t.Fatalf("got %v", err)
		}
		if f := nextSessionFrame(t, s); f.Reply == nil || !errors.Is(f.Reply.Err, fanout.ErrUnauthenticated) {
			t.Fatalf("got %+v, want the error reply", f)
		}
		wantClose(t, s, time.Now(), 0, fanout.CloseUnauthorized)
	})
}

func TestAuthenticateOnlyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, s := credSession(t, "alice:0")
		err := s.Authenticate(context.Background(), "a", &fanout.Credentials{Token: "bob:0"})
		if !errors.Is(err, fanout.ErrBadRequest) || s.Principal().ID != "alice" {
			t.Fatalf("got %v, principal %+v", err, s.Principal())
		}
	})
}
