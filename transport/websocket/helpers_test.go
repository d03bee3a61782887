package websocket_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/internal/wire"
	fws "github.com/gofanout/fanout/transport/websocket"
)

// server is a hub served over WebSocket on a loopback httptest server.
type server struct {
	hub    *fanout.Hub
	srv    *httptest.Server
	url    string // ws://host/
	events chan fanout.Event
}

// newServer starts a hub and a WebSocket server for it. Unless ho sets an
// observer, session-close events go to s.events.
func newServer(t testing.TB, ho *fanout.HubOptions, o *fws.Options) *server {
	t.Helper()
	return newServerListener(t, ho, o, nil)
}

// newServerListener is newServer with a hook that may wrap the listener.
func newServerListener(t testing.TB, ho *fanout.HubOptions, o *fws.Options, wrap func(net.Listener) net.Listener) *server {
	t.Helper()
	s := &server{events: make(chan fanout.Event, 1024)}
	var hopts fanout.HubOptions
	if ho != nil {
		hopts = *ho
	}
	if hopts.Observer == nil {
		hopts.Observer = closeObserver(s.events)
	}
	hub, err := fanout.NewHub(&hopts)
	if err != nil {
		t.Fatal(err)
	}
	s.hub = hub
	h := fws.New(hub, o)
	s.srv = testenv.NewServer(t, h, &testenv.ServerOptions{
		Stop:     func() { hub.Close(); h.Close() },
		Listener: wrap,
	})
	s.url = "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/"
	return s
}

// closeObserver passes on session-close events only.
type closeObserver chan fanout.Event

func (c closeObserver) Observe(e fanout.Event) {
	if e.Type != fanout.EventSessionClose {
		return
	}
	select {
	case c <- e:
	default:
	}
}

// waitClose returns the next session-close event.
func (s *server) waitClose(t testing.TB) fanout.Event {
	t.Helper()
	select {
	case e := <-s.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no session closed within 10s")
	}
	return fanout.Event{}
}

func (s *server) publish(t testing.TB, topic, data string, opts ...fanout.PublishOption) fanout.Position {
	t.Helper()
	p, err := s.hub.Publish(context.Background(), topic, []byte(data), opts...)
	if err != nil {
		t.Fatalf("publish to %q: %v", topic, err)
	}
	return p
}

// frame is any server frame, decoded strictly by the protocol's own
// decoder.
type frame = wire.Frame

// seqOf returns the seq of a msg frame, 0 for other frames.
func seqOf(f frame) uint64 {
	if f.Message == nil {
		return 0
	}
	return f.Message.Position.Seq
}

// dataOf returns the payload of a msg frame, nil for other frames.
func dataOf(f frame) []byte {
	if f.Message == nil {
		return nil
	}
	return f.Message.Data
}

// client is a WebSocket client of a test server.
type client struct {
	t       testing.TB
	c       *websocket.Conn
	pending []frame
	// messages counts the WebSocket messages read; largest is the size of
	// the largest.
	messages, largest int
}

func (s *server) dial(t testing.TB, opts *websocket.DialOptions) *client {
	t.Helper()
	c, resp, err := s.tryDial(opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	c.SetReadLimit(64 << 20) // batches of many frames are large
	cl := &client{t: t, c: c}
	t.Cleanup(func() { c.CloseNow() })
	return cl
}

func (s *server) tryDial(opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	var o websocket.DialOptions
	if opts != nil {
		o = *opts
	}
	if o.HTTPClient == nil {
		o.HTTPClient = s.srv.Client()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, s.url, &o)
}

func (c *client) send(cmd string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		c.t.Fatalf("send %s: %v", cmd, err)
	}
}

// read reads one WebSocket message and queues its frames.
func (c *client) read() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.c.Read(ctx)
	if err != nil {
		return err
	}
	c.messages++
	c.largest = max(c.largest, len(b))
	if typ != websocket.MessageText {
		c.t.Fatalf("got message type %v, want text", typ)
	}
	if c.pending, err = wire.ParseFrames(c.pending, b, true); err != nil {
		c.t.Fatalf("message %q: %v", b, err)
	}
	return nil
}

// next returns the next frame.
func (c *client) next() frame {
	c.t.Helper()
	for len(c.pending) == 0 {
		if err := c.read(); err != nil {
			c.t.Fatalf("read: %v", err)
		}
	}
	f := c.pending[0]
	c.pending = c.pending[1:]
	return f
}

// untilClosed reads until the connection ends and returns the frames read
// and the WebSocket close code (-1 when there was none).
func (c *client) untilClosed() ([]frame, websocket.StatusCode) {
	c.t.Helper()
	for {
		if err := c.read(); err != nil {
			fs := c.pending
			c.pending = nil
			return fs, websocket.CloseStatus(err)
		}
	}
}

// reply sends cmd and returns the next frame, which must be its reply.
func (c *client) reply(cmd string) frame {
	c.t.Helper()
	c.send(cmd)
	f := c.next()
	if f.Type != "reply" {
		c.t.Fatalf("after %s: got %+v, want a reply", cmd, f)
	}
	return f
}

// subscribe subscribes and fails the test unless the reply is ok.
func (c *client) subscribe(cmd string) frame {
	c.t.Helper()
	f := c.reply(cmd)
	if !f.OK {
		c.t.Fatalf("after %s: got %+v (error %+v), want ok", cmd, f, f.Error)
	}
	return f
}

// wantMsg reads the next frame and checks that it is the message topic:seq
// with JSON data.
func (c *client) wantMsg(topic string, seq uint64, data string) frame {
	c.t.Helper()
	f := c.next()
	if f.Type != "msg" || f.Topic != topic || seqOf(f) != seq || string(dataOf(f)) != data {
		c.t.Fatalf("got %+v (data %s), want msg %s:%d with data %s", f, dataOf(f), topic, seq, data)
	}
	return f
}

// wantError reads the next frame and checks that it is an error reply.
func (c *client) wantError(id, code string) frame {
	c.t.Helper()
	f := c.next()
	if f.Type != "reply" || f.OK || f.Error == nil || f.Error.Code != code || f.ID != id {
		c.t.Fatalf("got %+v (error %+v), want error reply id %q code %q", f, f.Error, id, code)
	}
	return f
}
