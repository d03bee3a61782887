package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/wire"
)

// errAbort ends a script that went wrong; the test has been told.
var errAbort = errors.New("script aborted")

// scripted is a WebSocket peer that plays a script against the client, for
// faults a correct server never produces: it reads the client's commands
// with the server's own parser and writes frames with the server's encoder.
type scripted struct {
	t  *testing.T
	ws *websocket.Conn
}

func (s scripted) expect(typ, topic string, since *fanout.Position) wire.Command {
	s.t.Helper()
	_, b, err := s.ws.Read(context.Background())
	if err != nil {
		s.t.Errorf("read: %v", err)
		panic(errAbort)
	}
	c, err := wire.ParseCommand(b)
	if err != nil {
		s.t.Errorf("parse %s: %v", b, err)
		panic(errAbort)
	}
	if c.Type != typ || c.Topic != topic || (since == nil) != (c.Since == nil) || (since != nil && *since != *c.Since) {
		s.t.Errorf("got %s, want %s %s since %v", b, typ, topic, since)
		panic(errAbort)
	}
	return c
}

func (s scripted) send(fs ...fanout.Frame) {
	s.t.Helper()
	if err := s.ws.Write(context.Background(), websocket.MessageText, encode(fs...)); err != nil {
		s.t.Errorf("write: %v", err)
		panic(errAbort)
	}
}

func reply(id string, pos *fanout.Position, recovered *bool) fanout.Frame {
	return fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Topic: "x", Position: pos, Recovered: recovered}}
}

func msg(epoch string, seq uint64) fanout.Frame {
	return fanout.Frame{Type: fanout.FrameMessage, Message: &fanout.Message{Topic: "x", Position: fanout.Position{Epoch: epoch, Seq: seq}, Data: []byte("1")}}
}

// TestGapResubscribes: a message whose Seq skips one, or whose epoch
// changes, makes the client resubscribe from its last position.
func TestGapResubscribes(t *testing.T) {
	t.Parallel()
	script := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			script <- err
			return
		}
		defer ws.CloseNow()
		defer func() {
			if r := recover(); r != nil {
				script <- errAbort
			}
		}()
		s := scripted{t, ws}
		yes, no := true, false
		p := func(e string, seq uint64) *fanout.Position { return &fanout.Position{Epoch: e, Seq: seq} }

		c := s.expect(wire.CmdSubscribe, "x", nil)
		s.send(reply(c.ID, p("e", 0), nil), msg("e", 1), msg("e", 3)) // 2 is missing
		c = s.expect(wire.CmdUnsubscribe, "x", nil)
		s.send(msg("e", 4), reply(c.ID, nil, nil)) // stale: dropped
		c = s.expect(wire.CmdSubscribe, "x", p("e", 1))
		s.send(reply(c.ID, p("e", 4), &yes), msg("e", 2), msg("e", 3), msg("e", 2), msg("e", 3), msg("e", 4))
		s.send(msg("f", 1)) // a new epoch
		c = s.expect(wire.CmdUnsubscribe, "x", nil)
		s.send(reply(c.ID, nil, nil))
		c = s.expect(wire.CmdSubscribe, "x", p("e", 4))
		s.send(reply(c.ID, p("f", 1), &no),
			fanout.Frame{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: "x", Position: *p("f", 1)}},
			msg("f", 1), msg("f", 2))
		if _, _, err := ws.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Errorf("got %v, want the client to close", err)
		}
		script <- nil
	}))
	t.Cleanup(srv.Close)
	c := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"), options(t, nil))
	s := subscribe(t, c, "x", nil)
	for i := uint64(1); i <= 4; i++ {
		if ev := next(t, s); ev.Kind != client.EventMessage || ev.Position != (fanout.Position{Epoch: "e", Seq: i}) {
			t.Fatalf("got %v %v, want message e:%d", ev.Kind, ev.Position, i)
		}
	}
	if ev := next(t, s); ev.Kind != client.EventReset || ev.Position.Seq != 4 {
		t.Fatalf("got %v %v, want a reset after e:4", ev.Kind, ev.Position)
	}
	if ev := next(t, s); ev.Kind != client.EventSnapshot || ev.Position != (fanout.Position{Epoch: "f", Seq: 1}) {
		t.Fatalf("got %v %v, want the snapshot at f:1", ev.Kind, ev.Position)
	}
	if ev := next(t, s); ev.Kind != client.EventMessage || ev.Position != (fanout.Position{Epoch: "f", Seq: 2}) {
		t.Fatalf("got %v %v, want message f:2", ev.Kind, ev.Position)
	}
	c.Close()
	if err := <-script; err != nil {
		t.Fatal(err)
	}
}
