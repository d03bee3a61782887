package websocket_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	fws "github.com/gofanout/fanout/transport/websocket"
)

// handshake opens a TCP connection to s and performs the WebSocket
// handshake by hand, so that the test can then send frames that no
// WebSocket library would.
func handshake(t *testing.T, s *server) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr := strings.TrimPrefix(s.srv.URL, "http://")
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: got status %d, want 101", resp.StatusCode)
	}
	return c, r
}

// rawFrame encodes one frame: the first byte (FIN, RSV bits, opcode) as
// given, the payload masked unless unmasked.
func rawFrame(b0 byte, payload []byte, unmasked bool) []byte {
	b := []byte{b0}
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	b = append(b, mask|byte(len(payload))) // short payloads only
	if unmasked {
		return append(b, payload...)
	}
	key := [4]byte{1, 2, 3, 4}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i&3])
	}
	return b
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// TestProtocolViolationCloses sends frames that break RFC 6455 after a real
// handshake: the hub records each session as closed with 1002 (protocol
// error), and the client must not reconnect.
func TestProtocolViolationCloses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"continuation without a start", rawFrame(0x80, []byte("x"), false)}, // FIN, opcode 0
		{"unmasked frame", rawFrame(0x80|0x1, []byte(`{"type":"ping"}`), true)},
		{"unknown data opcode", rawFrame(0x80|0x3, []byte("x"), false)},
		{"unknown control opcode", rawFrame(0x80|0xB, nil, false)},
		{"reserved bit", rawFrame(0x80|0x40|0x1, []byte("x"), false)},
		{"fragmented ping", rawFrame(0x9, []byte("x"), false)},
		{"text message inside a fragmented one", append(rawFrame(0x1, []byte("{"), false), rawFrame(0x80|0x1, []byte("}"), false)...)},
		{"close code not allowed on the wire", rawFrame(0x80|0x8, closePayload(1005, ""), false)},
		{"close payload of one byte", rawFrame(0x80|0x8, []byte{3}, false)},
		{"close reason not UTF-8", rawFrame(0x80|0x8, closePayload(1000, "\xff\xfe"), false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil, &fws.Options{PingInterval: -1})
			c, _ := handshake(t, s)
			if _, err := c.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			e := s.waitClose(t)
			if e.Code != fanout.CloseProtocol || e.Code.Reconnect() {
				t.Fatalf("got close code %d (reconnect %v), want %d without reconnect", e.Code, e.Code.Reconnect(), fanout.CloseProtocol)
			}
		})
	}
}

// TestClientCloseIsNotAViolation keeps the codes of the connections that
// end within the protocol.
func TestClientCloseIsNotAViolation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		frame []byte // nil: the TCP connection just ends
		want  fanout.CloseCode
	}{
		{"normal close", rawFrame(0x80|0x8, closePayload(1000, "bye"), false), fanout.CloseNormal},
		{"going away", rawFrame(0x80|0x8, closePayload(1001, "tab closed"), false), fanout.CloseGoingAway},
		{"close without code", rawFrame(0x80|0x8, nil, false), fanout.CloseGoingAway},
		{"connection lost", nil, fanout.CloseGoingAway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil, &fws.Options{PingInterval: -1})
			c, _ := handshake(t, s)
			if tc.frame == nil {
				c.Close()
			} else if _, err := c.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			if e := s.waitClose(t); e.Code != tc.want {
				t.Fatalf("got close code %d, want %d", e.Code, tc.want)
			}
		})
	}
}

// sessionCounter counts the sessions the hub opens and passes on the
// session-close events.
type sessionCounter struct {
	opened atomic.Int64
	closes chan fanout.Event
}

func newSessionCounter() *sessionCounter {
	return &sessionCounter{closes: make(chan fanout.Event, 16)}
}

func (c *sessionCounter) Observe(e fanout.Event) {
	switch e.Type {
	case fanout.EventSessionOpen:
		c.opened.Add(1)
	case fanout.EventSessionClose:
		c.closes <- e
	}
}

// errorBody decodes the one error body shape, strictly.
func errorBody(t *testing.T, resp *http.Response) (code, message string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("got Content-Type %q, want application/json", ct)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := d.Decode(&body); err != nil || body.Error == nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("body %s: want {\"error\":{\"code\",\"message\"}} (%v)", b, err)
	}
	if strings.Contains(body.Error.Message, "fanout:") {
		t.Errorf("message %q: want no package prefix", body.Error.Message)
	}
	return body.Error.Code, body.Error.Message
}

// TestOriginBeforeAuthentication refuses a page of a foreign origin before
// its credentials are looked at, and without a session.
func TestOriginBeforeAuthentication(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	sc := newSessionCounter()
	s := newServer(t, &fanout.HubOptions{
		Observer: sc,
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			calls.Add(1)
			if c.Token != "good" {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "u"}, nil
		},
	}, nil)
	for _, token := range []string{"good", "bad", ""} {
		h := http.Header{"Origin": {"https://evil.example"}}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		_, resp, err := s.tryDial(&websocket.DialOptions{HTTPHeader: h})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("token %q from a foreign origin: got %v, %v, want status 403", token, resp, err)
		}
		if code, _ := errorBody(t, resp); code != "forbidden" {
			t.Fatalf("got code %q, want forbidden", code)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the authenticator ran %d times for refused origins, want 0", n)
	}
	// The same origin with good credentials is served.
	host := strings.TrimPrefix(s.srv.URL, "http://")
	c := s.dial(t, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://" + host}, "Authorization": {"Bearer good"}}})
	c.reply(`{"type":"ping","id":"p"}`)
	c.c.Close(websocket.StatusNormalClosure, "")
	// The first session close is the served connection's: the refused
	// handshakes recorded none.
	select {
	case e := <-sc.closes:
		if e.Code != fanout.CloseNormal {
			t.Fatalf("got a session close with code %d, want the served session's %d", e.Code, fanout.CloseNormal)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no session closed within 10s")
	}
	if o := sc.opened.Load(); o != 1 {
		t.Fatalf("got %d sessions opened, want 1 (refused handshakes open none)", o)
	}
}

// TestHandshakeRefusals answers every refused handshake with the one error
// body, and creates no session for any.
func TestHandshakeRefusals(t *testing.T) {
	t.Parallel()
	sc := newSessionCounter()
	s := newServer(t, &fanout.HubOptions{
		Observer: sc,
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Token != "good" {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "u"}, nil
		},
	}, nil)
	upgrade := http.Header{
		"Upgrade": {"websocket"}, "Connection": {"Upgrade"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Version": {"13"},
	}
	for _, tc := range []struct {
		name   string
		method string
		header http.Header
		status int
		code   string
	}{
		{"not an upgrade", "GET", http.Header{"Authorization": {"Bearer good"}}, http.StatusUpgradeRequired, "bad_request"},
		{"post", "POST", upgrade, http.StatusMethodNotAllowed, "bad_request"},
		{"no credentials", "GET", upgrade, http.StatusUnauthorized, "unauthenticated"},
		{"wrong credentials", "GET", with(upgrade, "Authorization", "Bearer bad"), http.StatusUnauthorized, "unauthenticated"},
		{"bearer protocol without fanout.v1", "GET", with(upgrade, "Sec-Websocket-Protocol", fws.ProtocolBearer("good")), http.StatusBadRequest, "bad_request"},
		{"bearer protocol not base64url", "GET", with(upgrade, "Sec-Websocket-Protocol", "fanout.v1, bearer.a+b"), http.StatusBadRequest, "bad_request"},
		{"wrong version", "GET", with(upgrade, "Sec-Websocket-Version", "8"), http.StatusBadRequest, "bad_request"},
		{"no key", "GET", with(upgrade, "Sec-Websocket-Key", ""), http.StatusBadRequest, "bad_request"},
	} {
		req, err := http.NewRequest(tc.method, s.srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.header {
			if v[0] != "" {
				req.Header[k] = v
			}
		}
		resp, err := s.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := errorBody(t, resp)
		resp.Body.Close()
		if resp.StatusCode != tc.status || code != tc.code {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, resp.StatusCode, code, tc.status, tc.code)
		}
		switch resp.StatusCode {
		case http.StatusMethodNotAllowed:
			if a := resp.Header.Get("Allow"); a != "GET" {
				t.Errorf("%s: got Allow %q, want GET", tc.name, a)
			}
		case http.StatusUnauthorized:
			if a := resp.Header.Get("WWW-Authenticate"); a != "Bearer" {
				t.Errorf("%s: got WWW-Authenticate %q, want Bearer", tc.name, a)
			}
		case http.StatusUpgradeRequired:
			if a := resp.Header.Get("Upgrade"); a != "websocket" {
				t.Errorf("%s: got Upgrade %q, want websocket", tc.name, a)
			}
		}
	}
	// A closed hub: 503 with a Retry-After, and no session.
	s.hub.Close()
	_, resp, err := s.tryDial(&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer good"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("closed hub: got %v, %v, want 503", resp, err)
	}
	if code, _ := errorBody(t, resp); code != "closed" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("closed hub: got code %q, Retry-After %q, want closed with a Retry-After", code, resp.Header.Get("Retry-After"))
	}
	if o, c := sc.opened.Load(), len(sc.closes); o != 0 || c != 0 {
		t.Fatalf("got %d sessions opened and %d closed, want none", o, c)
	}
}

// with returns a copy of h with k set to v ("" removes it).
func with(h http.Header, k, v string) http.Header {
	h = h.Clone()
	h.Set(k, v)
	return h
}

// TestBearerCaseInsensitive takes the scheme in any case (RFC 7235).
func TestBearerCaseInsensitive(t *testing.T) {
	t.Parallel()
	s := newServer(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Token != "good" {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "u"}, nil
		},
	}, nil)
	for _, a := range []string{"Bearer good", "bearer good", "BEARER good", "bEaReR good"} {
		c := s.dial(t, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {a}}})
		c.reply(`{"type":"ping","id":"p"}`)
		c.c.Close(websocket.StatusNormalClosure, "")
	}
}

// FuzzHandshake sends handshake requests with any method and headers: a
// refusal carries the JSON error body, and the authenticator never sees a
// request of a foreign origin.
func FuzzHandshake(f *testing.F) {
	f.Add("GET", "Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ==", "")
	f.Add("GET", "keep-alive, Upgrade", "WebSocket", "13", "dGhlIHNhbXBsZSBub25jZQ==", "https://evil.example")
	f.Add("POST", "Upgrade", "websocket", "8", "", "http://example.com")
	f.Add("GET", "close", "h2c", "13", "short", "null")
	var foreign atomic.Int64
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if o := c.Header.Get("Origin"); o != "" && o != "http://example.com" {
				foreign.Add(1)
			}
			return fanout.Principal{}, nil
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	h := fws.New(hub, nil)
	f.Cleanup(func() { hub.Close(); h.Close() })
	f.Fuzz(func(t *testing.T, method, connection, upgrade, version, key, origin string) {
		if !validMethod(method) {
			return // not a request net/http would serve
		}
		r, err := http.NewRequest(method, "http://example.com/", nil)
		if err != nil {
			return
		}
		for k, v := range map[string]string{"Connection": connection, "Upgrade": upgrade, "Sec-WebSocket-Version": version, "Sec-WebSocket-Key": key, "Origin": origin} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		// A recorder cannot be hijacked: a handshake that passes every
		// check fails in the WebSocket library, after its 101.
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusSwitchingProtocols && w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d: got Content-Type %q, want application/json", w.Code, w.Header().Get("Content-Type"))
		}
		if n := foreign.Load(); n != 0 {
			t.Fatalf("origin %q: the authenticator ran", origin)
		}
	})
}

// validMethod reports whether m is an HTTP token.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}
