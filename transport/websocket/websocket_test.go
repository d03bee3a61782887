package websocket_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	fws "github.com/gofanout/fanout/transport/websocket"
)

func TestSubscribeReceive(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	c := s.dial(t, nil)
	r := c.subscribe(`{"id":"1","type":"subscribe","topic":"stock:42"}`)
	if r.ID != "1" || r.Topic != "stock:42" || r.Position == nil || r.Position.Seq != 0 || r.Recovered != nil {
		t.Fatalf("got reply %+v, want id 1, topic stock:42, position seq 0, no recovered", r)
	}
	for i := 1; i <= 3; i++ {
		s.publish(t, "stock:42", fmt.Sprintf(`{"qty":%d}`, i))
	}
	for i := 1; i <= 3; i++ {
		f := c.wantMsg("stock:42", uint64(i), fmt.Sprintf(`{"qty":%d}`, i))
		if f.Message.Position.Epoch == "" || f.Message.Time.IsZero() {
			t.Fatalf("got epoch %q time %v, want both set", f.Message.Position.Epoch, f.Message.Time)
		}
	}
	// A ping is answered with an ok reply carrying its id.
	if f := c.reply(`{"id":"p","type":"ping"}`); f.ID != "p" || !f.OK {
		t.Fatalf("got %+v, want ok reply to ping", f)
	}
}

func TestFanOutOnlyToSubscribers(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	a, b, ab := s.dial(t, nil), s.dial(t, nil), s.dial(t, nil)
	a.subscribe(`{"type":"subscribe","topic":"a"}`)
	b.subscribe(`{"type":"subscribe","topic":"b"}`)
	ab.subscribe(`{"type":"subscribe","topic":"a"}`)
	ab.subscribe(`{"type":"subscribe","topic":"b"}`)

	s.publish(t, "a", `"for a"`)
	s.publish(t, "b", `"for b"`)
	a.wantMsg("a", 1, `"for a"`)
	ab.wantMsg("a", 1, `"for a"`)
	ab.wantMsg("b", 1, `"for b"`)
	// b's first frame is b's message: the one to a never reached it.
	b.wantMsg("b", 1, `"for b"`)
	// And a got nothing of b: its next frame answers its ping.
	if f := a.reply(`{"id":"x","type":"ping"}`); f.ID != "x" {
		t.Fatalf("got %+v, want the ping reply", f)
	}
}

func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	c := s.dial(t, nil)
	c.subscribe(`{"id":"1","type":"subscribe","topic":"t"}`)
	s.publish(t, "t", "1")
	c.wantMsg("t", 1, "1")
	if f := c.reply(`{"id":"2","type":"unsubscribe","topic":"t"}`); !f.OK || f.ID != "2" || f.Topic != "t" {
		t.Fatalf("got %+v, want ok reply to unsubscribe", f)
	}
	s.publish(t, "t", "2")
	if f := c.reply(`{"id":"3","type":"ping"}`); f.ID != "3" {
		t.Fatalf("got %+v, want the ping reply, not a message after unsubscribe", f)
	}
	c.send(`{"id":"4","type":"unsubscribe","topic":"t"}`)
	c.wantError("4", "not_subscribed")
}

func TestSnapshotSubscribe(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	s.publish(t, "saga:7", `{"step":"flight","status":"pending"}`, fanout.WithKey("flight"))
	s.publish(t, "saga:7", `{"step":"hotel","status":"pending"}`, fanout.WithKey("hotel"))
	last := s.publish(t, "saga:7", `{"step":"flight","status":"confirmed"}`, fanout.WithKey("flight"))

	c := s.dial(t, nil)
	r := c.subscribe(`{"id":"s","type":"subscribe","topic":"saga:7","snapshot":true}`)
	if r.Position == nil || r.Position.Seq != 3 || r.Position.Epoch != last.Epoch {
		t.Fatalf("got reply position %+v, want %v", r.Position, last)
	}
	f := c.next()
	if f.Type != "snapshot" || f.Topic != "saga:7" || f.Position == nil || f.Position.Seq != 3 || len(f.Items) != 2 {
		t.Fatalf("got %+v, want a snapshot of 2 items at seq 3", f)
	}
	// Items come in Seq order: hotel (2), then flight (3).
	if it := f.Items[0]; it.Key != "hotel" || it.Position.Seq != 2 {
		t.Fatalf("got item %+v, want hotel at seq 2", it)
	}
	if it := f.Items[1]; it.Key != "flight" || it.Position.Seq != 3 || string(it.Data) != `{"step":"flight","status":"confirmed"}` {
		t.Fatalf("got item %+v (data %s), want the confirmed flight at seq 3", it, it.Data)
	}
	s.publish(t, "saga:7", `{"step":"car","status":"pending"}`, fanout.WithKey("car"))
	if m := c.wantMsg("saga:7", 4, `{"step":"car","status":"pending"}`); m.Message.Key != "car" {
		t.Fatalf("got key %q, want car", m.Message.Key)
	}
}

func TestResumeSince(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	var last fanout.Position
	for i := 1; i <= 5; i++ {
		last = s.publish(t, "t", fmt.Sprint(i), fanout.WithKey(fmt.Sprint("k", i%2)))
	}
	c := s.dial(t, nil)
	r := c.subscribe(fmt.Sprintf(`{"id":"r","type":"subscribe","topic":"t","since":{"epoch":%q,"seq":2}}`, last.Epoch))
	if r.Recovered == nil || !*r.Recovered || r.Position == nil || r.Position.Seq != 5 {
		t.Fatalf("got %+v, want recovered=true at seq 5", r)
	}
	for i := 3; i <= 5; i++ {
		c.wantMsg("t", uint64(i), fmt.Sprint(i))
	}
	s.publish(t, "t", "6")
	c.wantMsg("t", 6, "6")

	// From another epoch, history does not reach back: recovered=false and
	// the snapshot.
	old := s.dial(t, nil)
	r = old.subscribe(`{"id":"o","type":"subscribe","topic":"t","since":{"epoch":"gone","seq":3}}`)
	if r.Recovered == nil || *r.Recovered {
		t.Fatalf("got %+v, want recovered=false", r)
	}
	if f := old.next(); f.Type != "snapshot" || len(f.Items) != 2 || f.Position.Seq != 6 {
		t.Fatalf("got %+v, want the snapshot at seq 6", f)
	}
	s.publish(t, "t", "7")
	old.wantMsg("t", 7, "7")
}

func TestClientPublish(t *testing.T) {
	t.Parallel()
	s := newServer(t, &fanout.HubOptions{
		Authorize: func(_ context.Context, _ fanout.Principal, topic string, a fanout.Action) error {
			if a == fanout.ActionPublish && !strings.HasPrefix(topic, "open/") {
				return errors.New("read only")
			}
			return nil
		},
	}, nil)
	sub := s.dial(t, nil)
	sub.subscribe(`{"type":"subscribe","topic":"open/chat"}`)
	pub := s.dial(t, nil)

	r := pub.reply(`{"id":"1","type":"publish","topic":"open/chat","data":{"text":"hi"},"key":"k"}`)
	if !r.OK || r.ID != "1" || r.Topic != "open/chat" || r.Position == nil || r.Position.Seq != 1 {
		t.Fatalf("got %+v, want ok reply at seq 1", r)
	}
	if f := sub.wantMsg("open/chat", 1, `{"text":"hi"}`); f.Message.Key != "k" {
		t.Fatalf("got key %q, want k", f.Message.Key)
	}

	// Bytes that are not JSON travel as data64, both ways.
	raw := []byte{0, 1, 2, 0xff, '\n'}
	r = pub.reply(fmt.Sprintf(`{"id":"2","type":"publish","topic":"open/chat","data64":%q}`, base64.StdEncoding.EncodeToString(raw)))
	if !r.OK || r.Position.Seq != 2 {
		t.Fatalf("got %+v, want ok reply at seq 2", r)
	}
	f := sub.next()
	if f.Type != "msg" || seqOf(f) != 2 || !bytes.Equal(dataOf(f), raw) {
		t.Fatalf("got %+v, want %v", f, raw)
	}

	pub.send(`{"id":"3","type":"publish","topic":"closed/news","data":1}`)
	e := pub.wantError("3", "forbidden")
	if e.Topic != "closed/news" {
		t.Fatalf("got topic %q, want closed/news", e.Topic)
	}
	pub.send(`{"id":"4","type":"publish","topic":"open/chat"}`)
	pub.wantError("4", "bad_request")
}

func TestDefaultAuthorizerDeniesClientPublish(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	c := s.dial(t, nil)
	c.send(`{"id":"1","type":"publish","topic":"t","data":1}`)
	c.wantError("1", "forbidden")
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	s := newServer(t, &fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			if c.Transport != "websocket" {
				return fanout.Principal{}, fmt.Errorf("transport %q", c.Transport)
			}
			if c.Token != "secret" {
				return fanout.Principal{}, errors.New("bad token")
			}
			return fanout.Principal{ID: "alice"}, nil
		},
	}, nil)

	_, resp, err := s.tryDial(&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer wrong"}}})
	if err == nil {
		t.Fatal("dial with a wrong token: got a connection, want 401")
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("got response %v, want status 401", resp)
	}
	if resp.Header.Get("Upgrade") != "" || resp.Header.Get("Sec-WebSocket-Accept") != "" {
		t.Fatalf("got upgrade headers %v on a rejected request", resp.Header)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("got Content-Type %q, want application/json", ct)
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil || body.Error.Code != "unauthenticated" || body.Error.Message == "" {
		t.Fatalf("got body %s (%v), want an unauthenticated error", b, err)
	}

	// The token is taken from the header, the query or the cookie.
	s.dial(t, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer secret"}}}).
		subscribe(`{"type":"subscribe","topic":"t"}`)
	c, _, err := websocket.Dial(context.Background(), s.url+"?token=secret", &websocket.DialOptions{HTTPClient: s.srv.Client()})
	if err != nil {
		t.Fatalf("dial with ?token: %v", err)
	}
	c.CloseNow()
	s.dial(t, &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {"access_token=secret"}}}).
		subscribe(`{"type":"subscribe","topic":"t"}`)
}

func TestOrigin(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	_, resp, err := s.tryDial(&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: got %v, %v, want status 403", resp, err)
	}
	// The same origin and no origin (non-browser clients) are accepted.
	host := strings.TrimPrefix(s.srv.URL, "http://")
	s.dial(t, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://" + host}}}).reply(`{"type":"ping"}`)
	s.dial(t, nil).reply(`{"type":"ping"}`)

	allowed := newServer(t, nil, &fws.Options{OriginPatterns: []string{"*.trusted.example"}})
	allowed.dial(t, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.trusted.example"}}}).reply(`{"type":"ping"}`)
	if _, resp, err := allowed.tryDial(&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://trusted.example.evil"}}}); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("origin outside the patterns: got %v, %v, want status 403", resp, err)
	}
}

func TestBadCommands(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	c := s.dial(t, nil)
	c.subscribe(`{"id":"ok","type":"subscribe","topic":"t"}`)
	for _, tc := range []struct {
		cmd, id, code string
	}{
		{`not json`, "", "bad_request"},
		{`{"id":"1","type":"subscribe","topic":"t",}`, "", "bad_request"},
		{`{"id":"2","type":"subscribe","topic":"t","extra":1}`, "2", "bad_request"},
		{`{"id":"3","type":"subscribe","topic":"t"}}`, "", "bad_request"},
		{`{"id":"4","type":"dance"}`, "4", "bad_request"},
		{`{"id":"5"}`, "5", "bad_request"},
		{`{"id":"6","type":"subscribe","topic":"no spaces"}`, "6", "invalid_topic"},
		{`{"id":"7","type":"subscribe","topic":""}`, "7", "invalid_topic"},
		{`{"id":"8","type":"subscribe","topic":"` + strings.Repeat("x", 201) + `"}`, "8", "invalid_topic"},
		{`{"id":"9","type":"subscribe","topic":"t"}`, "9", "already_subscribed"},
		{`{"id":"10","type":"subscribe","topic":"u","since":{"epoch":"e"}}`, "10", "bad_request"},
		{`{"id":"11","type":"unsubscribe","topic":"t","data":1}`, "11", "bad_request"},
		{`{"id":"12","type":"publish","topic":"t","data":1,"data64":"AA=="}`, "12", "bad_request"},
		{`{"id":"13","type":"publish","topic":"t","data64":"%%%"}`, "13", "bad_request"},
		{`{"id":"` + strings.Repeat("i", 65) + `","type":"ping"}`, "", "bad_request"},
		{`{"id":"14","type":"subscribe","topic":7}`, "14", "bad_request"},
	} {
		c.send(tc.cmd)
		f := c.wantError(tc.id, tc.code)
		if f.Error.Message == "" {
			t.Fatalf("%s: got an empty error message", tc.cmd)
		}
	}
	// The connection still works.
	s.publish(t, "t", "1")
	c.wantMsg("t", 1, "1")
}

func TestOversizedMessage(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, &fws.Options{ReadLimit: 1024})
	c := s.dial(t, nil)
	c.reply(`{"type":"ping","id":"` + strings.Repeat("x", 900) + `"}`) // within the limit (id too long, but read)
	c.send(`{"type":"ping","id":"` + strings.Repeat("x", 2000) + `"}`)
	_, code := c.untilClosed()
	if code != websocket.StatusMessageTooBig {
		t.Fatalf("got close code %v, want 1009", code)
	}
	if e := s.waitClose(t); e.Code != fanout.CloseTooLarge {
		t.Fatalf("got session close code %v, want %v", e.Code, fanout.CloseTooLarge)
	}
}

func TestBinaryMessage(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	c := s.dial(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageBinary, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	fs, code := c.untilClosed()
	if code != websocket.StatusCode(fanout.CloseBadRequest) {
		t.Fatalf("got close code %v, want %d", code, fanout.CloseBadRequest)
	}
	if len(fs) != 1 || fs[0].Type != "close" || fs[0].Code != fanout.CloseBadRequest || fs[0].Reconnect {
		t.Fatalf("got frames %+v, want one close frame 4003 without reconnect", fs)
	}
}

func TestCommandFloodRateLimited(t *testing.T) {
	t.Parallel()
	s := newServer(t, &fanout.HubOptions{CommandRate: 1e-9, CommandBurst: 5}, nil)
	c := s.dial(t, nil)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.c.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`))
		cancel()
		if err != nil {
			break // the server closed the connection
		}
	}
	fs, code := c.untilClosed()
	if code != websocket.StatusCode(fanout.CloseRateLimited) {
		t.Fatalf("got close code %v, want %d", code, fanout.CloseRateLimited)
	}
	// The close discards what was still queued: some of the five replies
	// may be missing, never the close frame.
	if len(fs) < 1 || len(fs) > 6 {
		t.Fatalf("got %d frames, want at most 5 replies and the close frame: %+v", len(fs), fs)
	}
	for _, f := range fs[:len(fs)-1] {
		if f.Type != "reply" || !f.OK {
			t.Fatalf("got %+v, want an ok reply", f)
		}
	}
	if f := fs[len(fs)-1]; f.Type != "close" || f.Code != fanout.CloseRateLimited || !f.Reconnect {
		t.Fatalf("got %+v, want close 4004 with reconnect", f)
	}
}

// smallBuffers shrinks the kernel buffers of accepted connections.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

func TestSlowConsumerClosed(t *testing.T) {
	t.Parallel()
	s := newServerListener(t, &fanout.HubOptions{QueueMessages: 4, QueueBytes: 64 << 10},
		&fws.Options{WriteTimeout: time.Minute},
		func(l net.Listener) net.Listener { return smallBuffers{l} })

	// The slow client reads through a small socket buffer, and the server
	// writes through a small one: a few KiB back the connection up.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	slow := s.dial(t, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	slow.subscribe(`{"type":"subscribe","topic":"t"}`)
	fast := s.dial(t, nil)
	fast.subscribe(`{"type":"subscribe","topic":"t"}`)

	// Publish 64 messages of 16 KiB, each after the fast client got the
	// previous one: 1 MiB, far more than the slow connection's buffers and
	// queue (4 messages) hold, so its queue overflows while its writer
	// waits for the socket.
	data := `"` + strings.Repeat("x", 16<<10) + `"`
	var seq uint64
	for ; seq < 64; seq++ {
		s.publish(t, "t", data)
		fast.wantMsg("t", seq+1, data)
	}
	// The slow client, reading at last, finds the messages that were
	// written or queued before the overflow, in order, then the close.
	fs, code := slow.untilClosed()
	if code != websocket.StatusCode(fanout.CloseSlowConsumer) {
		t.Fatalf("got close code %v, want %d", code, fanout.CloseSlowConsumer)
	}
	if len(fs) < 2 || len(fs) > 60 {
		t.Fatalf("got %d frames, want some messages and a close frame", len(fs))
	}
	for i, f := range fs[:len(fs)-1] {
		if f.Type != "msg" || seqOf(f) != uint64(i+1) {
			t.Fatalf("frame %d: got %s seq %d, want msg seq %d", i, f.Type, seqOf(f), i+1)
		}
	}
	if f := fs[len(fs)-1]; f.Type != "close" || f.Code != fanout.CloseSlowConsumer || !f.Reconnect {
		t.Fatalf("got %+v, want close 4001 with reconnect", f)
	}
	if e := s.waitClose(t); e.Code != fanout.CloseSlowConsumer {
		t.Fatalf("got session close code %v, want %v", e.Code, fanout.CloseSlowConsumer)
	}
	// The fast client goes on receiving.
	for i := 0; i < 10; i++ {
		seq++
		s.publish(t, "t", "1")
		fast.wantMsg("t", seq, "1")
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	clients := make([]*client, 3)
	for i := range clients {
		clients[i] = s.dial(t, nil)
		clients[i].subscribe(`{"type":"subscribe","topic":"t"}`)
	}
	s.publish(t, "t", `"last"`)
	done := make(chan error, 1)
	go func() { done <- s.hub.Shutdown(context.Background()) }()
	for i, c := range clients {
		fs, code := c.untilClosed()
		if code != websocket.StatusCode(fanout.CloseShutdown) {
			t.Fatalf("client %d: got close code %v, want %d", i, code, fanout.CloseShutdown)
		}
		if len(fs) != 2 || fs[0].Type != "msg" || string(dataOf(fs[0])) != `"last"` {
			t.Fatalf("client %d: got %+v, want the queued message, then the close", i, fs)
		}
		if f := fs[1]; f.Type != "close" || f.Code != fanout.CloseShutdown || !f.Reconnect {
			t.Fatalf("client %d: got %+v, want close 4000 with reconnect", i, f)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// A hub that shut down accepts no connection.
	_, resp, err := s.tryDial(nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: got %v, %v, want status 503", resp, err)
	}
}

func TestClientCloses(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil, nil)
	c := s.dial(t, nil)
	c.subscribe(`{"type":"subscribe","topic":"t"}`)
	if err := c.c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if e := s.waitClose(t); e.Code != fanout.CloseNormal {
		t.Fatalf("got session close code %v, want %v", e.Code, fanout.CloseNormal)
	}
	c2 := s.dial(t, nil)
	c2.subscribe(`{"type":"subscribe","topic":"t"}`)
	c2.c.CloseNow()
	if e := s.waitClose(t); e.Code != fanout.CloseGoingAway {
		t.Fatalf("got session close code %v, want %v", e.Code, fanout.CloseGoingAway)
	}
}

func TestCoalescing(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 1 << 10} {
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil, nil)
			const n = 1000
			data := func(i int) string { return fmt.Sprintf(`"%0*d"`, size, i) }
			var last fanout.Position
			for i := 1; i <= n; i++ {
				last = s.publish(t, "t", data(i))
			}
			c := s.dial(t, nil)
			// A resume queues the reply and the n messages of history at
			// once, so the writer finds them together: 1001 frames in
			// batches of at most 256.
			c.send(fmt.Sprintf(`{"type":"subscribe","topic":"t","since":{"epoch":%q,"seq":0}}`, last.Epoch))
			if f := c.next(); f.Type != "reply" || !*f.Recovered {
				t.Fatalf("got %+v, want a recovered reply", f)
			}
			for i := 1; i <= n; i++ {
				c.wantMsg("t", uint64(i), data(i))
			}
			if size == 1 {
				// Small frames: one WebSocket message per batch.
				if want := (n + 1 + 255) / 256; c.messages != want {
					t.Fatalf("got %d WebSocket messages for %d frames, want %d", c.messages, n+1, want)
				}
				return
			}
			// Large frames: a batch continues in another message once a
			// message reached 64 KiB.
			if max := 64<<10 + 2*size; c.largest > max {
				t.Fatalf("got a message of %d bytes, want at most %d", c.largest, max)
			}
			if min := n * size / (64<<10 + 2*size); c.messages < min || c.messages > n/2 {
				t.Fatalf("got %d WebSocket messages, want between %d and %d", c.messages, min, n/2)
			}
		})
	}
}

// TestCompression runs a resume of many large messages, which spans several
// WebSocket messages per batch, and live traffic over compressed
// connections.
func TestCompression(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		server fws.CompressionMode
		client websocket.CompressionMode
	}{
		{"context takeover", fws.CompressionContextTakeover, websocket.CompressionContextTakeover},
		{"no context takeover", fws.CompressionNoContextTakeover, websocket.CompressionNoContextTakeover},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil, &fws.Options{CompressionMode: tc.server})
			const n = 300
			data := func(i int) string { return fmt.Sprintf(`"%0*d"`, 1<<10, i) }
			var last fanout.Position
			for i := 1; i <= n; i++ {
				last = s.publish(t, "t", data(i))
			}
			conn, resp, err := s.tryDial(&websocket.DialOptions{CompressionMode: tc.client})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseNow()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
				t.Fatalf("got extensions %q, want permessage-deflate", ext)
			}
			conn.SetReadLimit(64 << 20)
			c := &client{t: t, c: conn}
			c.send(fmt.Sprintf(`{"type":"subscribe","topic":"t","since":{"epoch":%q,"seq":0}}`, last.Epoch))
			if f := c.next(); f.Type != "reply" || !*f.Recovered {
				t.Fatalf("got %+v, want a recovered reply", f)
			}
			for i := 1; i <= n; i++ {
				c.wantMsg("t", uint64(i), data(i))
			}
			s.publish(t, "t", `{"live":true}`)
			c.wantMsg("t", n+1, `{"live":true}`)
			if f := c.reply(`{"id":"p","type":"ping"}`); f.ID != "p" || !f.OK {
				t.Fatalf("got %+v, want ok reply to ping", f)
			}
		})
	}
}
