package websocket_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
	"github.com/gofanout/fanout/transport/transporttest"
	fws "github.com/gofanout/fanout/transport/websocket"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, hub *fanout.Hub) transporttest.Transport {
		h := fws.New(hub, nil)
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			h.Close()
			srv.CloseClientConnections()
			srv.Close()
		})
		return &wsTransport{url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	}, transporttest.Features{Commands: true, Publish: true})
}

// wsTransport dials the server with the coder/websocket client.
type wsTransport struct{ url string }

func (tr *wsTransport) Dial(ctx context.Context, o transporttest.DialOptions) (transporttest.Client, error) {
	c, err := tr.dial(ctx, o.Token)
	if err != nil {
		return nil, err
	}
	for i, s := range o.Subscriptions {
		if err := c.Subscribe(ctx, fmt.Sprintf("dial-%d", i), s); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (tr *wsTransport) dial(ctx context.Context, token string) (*wsClient, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := websocket.Dial(ctx, tr.url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, refusal(resp)
		}
		return nil, err
	}
	ws.SetReadLimit(-1)
	c := &wsClient{ws: ws, events: make(chan wsResult), done: make(chan struct{}), exited: make(chan struct{})}
	go c.read()
	return c, nil
}

// refusal turns a refused handshake into an error matching the sentinel of
// its JSON error code.
func refusal(resp *http.Response) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(body, &e) != nil {
		return fmt.Errorf("status %d: %q", resp.StatusCode, body)
	}
	for _, s := range []error{fanout.ErrUnauthenticated, fanout.ErrForbidden, fanout.ErrBadRequest, fanout.ErrClosed, fanout.ErrUnavailable} {
		if fanout.ErrorCode(s) == e.Error.Code {
			return fmt.Errorf("status %d: %w: %s", resp.StatusCode, s, e.Error.Message)
		}
	}
	return fmt.Errorf("status %d: error code %q", resp.StatusCode, e.Error.Code)
}

// wsClient reads messages in a goroutine and hands over their frames one
// at a time: a client that does not call Next stops reading.
type wsClient struct {
	ws     *websocket.Conn
	events chan wsResult
	done   chan struct{} // closed by Close
	exited chan struct{} // closed when the reader ends
	once   sync.Once
	ended  bool // a close frame was returned; owned by Next
}

type wsResult struct {
	ev  transporttest.Event
	err error
}

func (c *wsClient) read() {
	defer close(c.exited)
	send := func(r wsResult) bool {
		select {
		case c.events <- r:
			return r.err == nil
		case <-c.done:
			return false
		}
	}
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			if code := websocket.CloseStatus(err); code != -1 {
				// The connection was closed with a code: a close frame (if
				// the server sent one) came first; this ends the stream.
				send(wsResult{ev: transporttest.Event{Type: transporttest.EventClose, Code: fanout.CloseCode(code), Reconnect: fanout.CloseCode(code).Reconnect()}, err: errWSClosed})
				return
			}
			send(wsResult{err: err})
			return
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			ev, err := transporttest.ParseJSON(line)
			if !send(wsResult{ev: ev, err: err}) {
				return
			}
		}
	}
}

// errWSClosed marks the WebSocket close that follows (or replaces) the
// close frame.
var errWSClosed = errors.New("websocket closed")

func (c *wsClient) Next(ctx context.Context) (transporttest.Event, error) {
	select {
	case r := <-c.events:
		if errors.Is(r.err, errWSClosed) {
			if c.ended {
				return transporttest.Event{}, io.EOF
			}
			// Closed without a close frame (e.g. 1009 from the library):
			// report the code as the close.
			c.ended = true
			return r.ev, nil
		}
		if c.ended {
			return transporttest.Event{}, fmt.Errorf("after the close frame: got %+v, %v", r.ev, r.err)
		}
		c.ended = r.err == nil && r.ev.Type == transporttest.EventClose
		return r.ev, r.err
	case <-c.done:
		return transporttest.Event{}, errors.New("websocket client: closed")
	case <-c.exited:
		if c.ended {
			return transporttest.Event{}, io.EOF
		}
		return transporttest.Event{}, errors.New("websocket client: reader ended")
	case <-ctx.Done():
		return transporttest.Event{}, ctx.Err()
	}
}

func (c *wsClient) send(ctx context.Context, cmd wire.Command) error {
	return c.ws.Write(ctx, websocket.MessageText, wire.AppendCommand(nil, cmd))
}

func (c *wsClient) Subscribe(ctx context.Context, id string, s transporttest.Subscription) error {
	return c.send(ctx, wire.Command{ID: id, Type: wire.CmdSubscribe, Topic: s.Topic, Since: s.Since, Snapshot: s.Snapshot})
}

func (c *wsClient) Unsubscribe(ctx context.Context, id, topic string) error {
	return c.send(ctx, wire.Command{ID: id, Type: wire.CmdUnsubscribe, Topic: topic})
}

func (c *wsClient) Publish(ctx context.Context, id, topic string, data []byte) error {
	return c.send(ctx, wire.Command{ID: id, Type: wire.CmdPublish, Topic: topic, Data: data})
}

func (c *wsClient) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.ws.CloseNow()
	})
	<-c.exited
	return nil
}

// BadInputs are malformed client messages: each gets an error reply or a
// close with its documented code.
func (tr *wsTransport) BadInputs() []transporttest.BadInput {
	send := func(typ websocket.MessageType, msg []byte) func(ctx context.Context) (transporttest.Event, error) {
		return func(ctx context.Context) (transporttest.Event, error) {
			c, err := tr.dial(ctx, "")
			if err != nil {
				return transporttest.Event{}, err
			}
			defer c.Close()
			if err := c.ws.Write(ctx, typ, msg); err != nil {
				return transporttest.Event{}, err
			}
			return c.Next(ctx)
		}
	}
	text := func(s string) func(ctx context.Context) (transporttest.Event, error) {
		return send(websocket.MessageText, []byte(s))
	}
	return []transporttest.BadInput{
		{Name: "NotJSON", Want: fanout.ErrBadRequest, Send: text(`{"id":"1","type":`)},
		{Name: "UnknownType", Want: fanout.ErrBadRequest, Send: text(`{"id":"1","type":"explode","topic":"a"}`)},
		{Name: "UnknownField", Want: fanout.ErrBadRequest, Send: text(`{"id":"1","type":"subscribe","topic":"a","evil":1}`)},
		{Name: "FieldNameCase", Want: fanout.ErrBadRequest, Send: text(`{"id":"1","TYPE":"ping"}`)},
		{Name: "DuplicateField", Want: fanout.ErrBadRequest, Send: text(`{"id":"1","type":"ping","type":"ping"}`)},
		{Name: "InvalidTopic", Want: fanout.ErrInvalidTopic, Send: text(`{"id":"1","type":"subscribe","topic":"a b"}`)},
		{Name: "SinceWithoutSeq", Want: fanout.ErrBadRequest, Send: text(`{"id":"1","type":"subscribe","topic":"a","since":{"epoch":"e"}}`)},
		{Name: "Binary", Want: fanout.ErrBadRequest, WantClose: fanout.CloseBadRequest, Send: send(websocket.MessageBinary, []byte{1, 2, 3})},
		{Name: "TooLarge", Want: fanout.ErrTooLarge, WantClose: fanout.CloseTooLarge, Send: text(`{"id":"1","type":"ping","pad":"` + strings.Repeat("x", 70<<10) + `"}`)},
	}
}
