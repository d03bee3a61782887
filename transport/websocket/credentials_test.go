package websocket_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/internal/wire"
	fws "github.com/gofanout/fanout/transport/websocket"
)

// expiringAuth authenticates tokens "id:seconds": principal id, whose
// credentials expire that many seconds from now (0: never). The empty
// token and any other are refused.
func expiringAuth(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
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

// credConn is a client connection of a synctest test, with fake time: its
// reads wait as long as it takes.
type credConn struct {
	t       *testing.T
	c       *websocket.Conn
	done    <-chan struct{}
	pending []wire.Frame
}

// dialCred connects to a hub that expiringAuth authenticates, over an
// in-memory pipe.
func dialCred(t *testing.T, o *fws.Options, opts *websocket.DialOptions) *credConn {
	t.Helper()
	hub, err := fanout.NewHub(&fanout.HubOptions{Authenticate: expiringAuth})
	if err != nil {
		t.Fatal(err)
	}
	if o == nil {
		// A client that reads only when the test does cannot answer pings.
		o = &fws.Options{PingInterval: -1}
	}
	h := fws.New(hub, o)
	c, done := pipeDial(t, h, opts)
	t.Cleanup(func() {
		c.CloseNow()
		h.Close()
		hub.Close()
	})
	return &credConn{t: t, c: c, done: done}
}

func (c *credConn) send(cmd string) {
	c.t.Helper()
	if err := c.c.Write(context.Background(), websocket.MessageText, []byte(cmd)); err != nil {
		c.t.Fatalf("send %s: %v", cmd, err)
	}
}

// next returns the next frame, or the close status once the connection
// ended.
func (c *credConn) next() (wire.Frame, websocket.StatusCode) {
	c.t.Helper()
	for len(c.pending) == 0 {
		_, b, err := c.c.Read(context.Background())
		if err != nil {
			return wire.Frame{}, websocket.CloseStatus(err)
		}
		if c.pending, err = wire.ParseFrames(c.pending, b, true); err != nil {
			c.t.Fatalf("message %q: %v", b, err)
		}
	}
	f := c.pending[0]
	c.pending = c.pending[1:]
	return f, -1
}

func (c *credConn) frame(typ string) wire.Frame {
	c.t.Helper()
	f, code := c.next()
	if f.Type != typ {
		c.t.Fatalf("got frame %+v (close status %d), want %s", f, code, typ)
	}
	return f
}

// wantClosed reads the close frame and the WebSocket close, both with
// code, at d after start.
func (c *credConn) wantClosed(start time.Time, d time.Duration, code fanout.CloseCode) {
	c.t.Helper()
	f := c.frame(wire.FrameClose)
	if f.Code != code || f.Reconnect {
		c.t.Fatalf("got close %+v, want %v without reconnect", f, code)
	}
	if got := time.Since(start); got != d {
		c.t.Fatalf("closed after %v, want %v", got, d)
	}
	if _, status := c.next(); status != websocket.StatusCode(code) {
		c.t.Fatalf("got WebSocket close %d, want %d", status, code)
	}
}

// open checks that the server has not closed the connection.
func (c *credConn) open() {
	c.t.Helper()
	synctest.Wait()
	select {
	case <-c.done:
		c.t.Fatal("the server closed the connection")
	default:
	}
}

// offerV1 offers the subprotocol without credentials: the client will
// authenticate in its first message.
var offerV1 = &websocket.DialOptions{Subprotocols: []string{fws.Protocol}}

func bearer(token string) *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}}
}

func TestExpiryWithoutRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := dialCred(t, nil, bearer("alice:60"))
		start := time.Now()
		if f := c.frame(wire.FrameExpiry); !f.Expires.Equal(start.Add(time.Minute).Truncate(time.Millisecond)) {
			t.Fatalf("expiry at %v, want +1m", f.Expires)
		}
		time.Sleep(59 * time.Second)
		c.open()
		c.wantClosed(start, time.Minute, fanout.CloseUnauthorized)
	})
}

func TestExpiryWithRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := dialCred(t, nil, bearer("alice:60"))
		start := time.Now()
		c.frame(wire.FrameExpiry)
		time.Sleep(50 * time.Second)
		c.send(`{"id":"r","type":"refresh","token":"alice:60"}`)
		f := c.frame(wire.FrameReply)
		if !f.OK || f.ID != "r" || !f.Expires.Equal(start.Add(110*time.Second).Truncate(time.Millisecond)) {
			t.Fatalf("got %+v, want an ok reply with the expiry at +110s", f)
		}
		time.Sleep(59 * time.Second)
		c.open()
		c.send(`{"id":"s","type":"subscribe","topic":"t"}`)
		if f := c.frame(wire.FrameReply); !f.OK {
			t.Fatalf("subscribe after the refresh: %+v", f.Error)
		}
		c.wantClosed(start, 110*time.Second, fanout.CloseUnauthorized)
	})
}

func TestRefreshAnotherPrincipal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := dialCred(t, nil, bearer("alice:60"))
		start := time.Now()
		c.frame(wire.FrameExpiry)
		c.send(`{"id":"r","type":"refresh","token":"bob:600"}`)
		if f := c.frame(wire.FrameReply); f.OK || f.Error.Code != "forbidden" || !f.Expires.IsZero() {
			t.Fatalf("got %+v, want a forbidden reply", f)
		}
		c.send(`{"id":"r2","type":"refresh","token":"garbage"}`)
		if f := c.frame(wire.FrameReply); f.OK || f.Error.Code != "unauthenticated" {
			t.Fatalf("got %+v, want an unauthenticated reply", f)
		}
		// The session keeps alice's credentials, until they expire.
		c.wantClosed(start, time.Minute, fanout.CloseUnauthorized)
	})
}

func TestAuthFirstMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := dialCred(t, nil, offerV1) // no credentials in the handshake
		start := time.Now()
		c.send(`{"id":"a","type":"auth","token":"alice:60"}`)
		c.send(`{"id":"s","type":"subscribe","topic":"t"}`)
		if f := c.frame(wire.FrameReply); !f.OK || f.ID != "a" || !f.Expires.Equal(start.Add(time.Minute).Truncate(time.Millisecond)) {
			t.Fatalf("got %+v, want the auth reply with its expiry", f)
		}
		if f := c.frame(wire.FrameReply); !f.OK || f.ID != "s" {
			t.Fatalf("got %+v, want the subscribe reply", f)
		}
		c.send(`{"id":"a2","type":"auth","token":"alice:60"}`)
		if f := c.frame(wire.FrameReply); f.OK || f.Error.Code != "bad_request" {
			t.Fatalf("a second auth: got %+v, want bad_request", f)
		}
		c.wantClosed(start, time.Minute, fanout.CloseUnauthorized)
	})
}

func TestAuthDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := dialCred(t, &fws.Options{AuthTimeout: 5 * time.Second, PingInterval: -1}, offerV1)
		start := time.Now()
		time.Sleep(4 * time.Second)
		c.open()
		c.wantClosed(start, 5*time.Second, fanout.CloseUnauthorized)
	})
}

func TestAuthDefaultDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := dialCred(t, &fws.Options{PingInterval: -1}, offerV1)
		c.wantClosed(time.Now(), 10*time.Second, fanout.CloseUnauthorized)
	})
}

func TestOtherCommandBeforeAuth(t *testing.T) {
	for _, cmd := range []string{
		`{"id":"1","type":"subscribe","topic":"t"}`,
		`{"id":"1","type":"ping"}`,
		`{"id":"1","type":"refresh","token":"alice:60"}`,
		`{"id":"1","type":"nonsense"}`,
	} {
		synctest.Test(t, func(t *testing.T) {
			c := dialCred(t, nil, offerV1)
			c.send(cmd)
			f := c.frame(wire.FrameReply)
			if f.OK || f.Error.Code != "unauthenticated" || f.ID != "1" || !strings.Contains(f.Error.Message, "auth") {
				t.Fatalf("%s: got %+v, want an unauthenticated reply that asks for auth", cmd, f.Error)
			}
			c.wantClosed(time.Now(), 0, fanout.CloseUnauthorized)
		})
	}
}

func TestAuthRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := dialCred(t, nil, offerV1)
		c.send(`{"id":"a","type":"auth","token":"garbage"}`)
		if f := c.frame(wire.FrameReply); f.OK || f.Error.Code != "unauthenticated" || f.ID != "a" {
			t.Fatalf("got %+v, want the unauthenticated reply", f)
		}
		c.wantClosed(time.Now(), 0, fanout.CloseUnauthorized)
	})
}

func TestProtocolBearer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := dialCred(t, nil, &websocket.DialOptions{Subprotocols: []string{fws.Protocol, fws.ProtocolBearer("alice:60")}})
		if p := c.c.Subprotocol(); p != fws.Protocol {
			t.Fatalf("server chose subprotocol %q, want %q", p, fws.Protocol)
		}
		c.frame(wire.FrameExpiry)
		c.send(`{"id":"s","type":"subscribe","topic":"t"}`)
		if f := c.frame(wire.FrameReply); !f.OK {
			t.Fatalf("subscribe: %+v", f.Error)
		}
	})
}

func TestNoProtocolNoCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A client that does not offer fanout.v1 gets the 401 it always got.
		hub, err := fanout.NewHub(&fanout.HubOptions{Authenticate: expiringAuth})
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		h := fws.New(hub, nil)
		defer h.Close()
		p := testenv.NewPipe()
		srv := &http.Server{Handler: h}
		go srv.Serve(p)
		defer srv.Close()
		tr := &http.Transport{DialContext: p.Dial}
		defer tr.CloseIdleConnections()
		_, resp, err := websocket.Dial(context.Background(), "ws://pipe/", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("got %v, %v; want 401", resp, err)
		}
	})
}

func TestProtocolOfferedAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A client that offers fanout.v1 without credentials gets it, and
		// authenticates in its first message.
		c := dialCred(t, nil, &websocket.DialOptions{Subprotocols: []string{fws.Protocol}})
		if p := c.c.Subprotocol(); p != fws.Protocol {
			t.Fatalf("server chose subprotocol %q", p)
		}
		c.send(`{"id":"a","type":"auth","token":"alice:0"}`)
		if f := c.frame(wire.FrameReply); !f.OK {
			t.Fatalf("auth: %+v", f.Error)
		}
	})
}

// FuzzProtocolToken feeds the Sec-WebSocket-Protocol parser arbitrary
// headers: it never panics, refuses only with bad_request, and finds the
// token that ProtocolBearer encoded.
func FuzzProtocolToken(f *testing.F) {
	f.Add("fanout.v1, "+fws.ProtocolBearer("t0k3n"), "")
	f.Add("bearer.", "fanout.v1")
	f.Add("fanout.v1,bearer.a+b", "bearer.YQ")
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		h := http.Header{"Sec-Websocket-Protocol": {v1, v2}}
		tok, err := fws.ProtocolTokenForTest(h)
		if err != nil && !errors.Is(err, fanout.ErrBadRequest) {
			t.Fatalf("got %v, want bad_request", err)
		}
		if err == nil && tok != "" && !strings.Contains(v1+","+v2, fws.ProtocolBearer(tok)) {
			t.Fatalf("token %q from %q, %q", tok, v1, v2)
		}
		enc := http.Header{"Sec-Websocket-Protocol": {fws.Protocol + ", " + fws.ProtocolBearer(v1)}}
		if tok, err := fws.ProtocolTokenForTest(enc); (err == nil && tok != v1) || (err != nil && len(v1) <= 16<<10) {
			t.Fatalf("token %q came back as %q, %v", v1, tok, err)
		}
	})
}
