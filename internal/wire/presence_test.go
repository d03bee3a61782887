package wire_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

func TestPresenceFrames(t *testing.T) {
	info := json.RawMessage(`{"name":"Alice"}`)
	n := 2
	for _, tc := range []struct {
		f    fanout.Frame
		want string
	}{
		{fanout.Frame{Type: fanout.FrameJoin, Event: &fanout.PresenceEvent{Topic: "room", Client: fanout.ClientInfo{Principal: "alice", Session: "ab:1", Info: info}}},
			`{"type":"join","topic":"room","client":{"principal":"alice","session":"ab:1","info":{"name":"Alice"}}}`},
		{fanout.Frame{Type: fanout.FrameLeave, Event: &fanout.PresenceEvent{Topic: "room", Leave: true, Client: fanout.ClientInfo{Session: "ab:2", Info: json.RawMessage("{\n\"a\": 1}")}}},
			`{"type":"leave","topic":"room","client":{"principal":"","session":"ab:2","info":{"a":1}}}`},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "1", Topic: "room", Presence: []fanout.ClientInfo{{Principal: "a", Session: "s"}, {Principal: "b", Session: "t", Info: info}}}},
			`{"type":"reply","id":"1","ok":true,"topic":"room","presence":[{"principal":"a","session":"s"},{"principal":"b","session":"t","info":{"name":"Alice"}}]}`},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "2", Topic: "room", Presence: []fanout.ClientInfo{}}},
			`{"type":"reply","id":"2","ok":true,"topic":"room","presence":[]}`},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "3", Topic: "room", Count: &n}},
			`{"type":"reply","id":"3","ok":true,"topic":"room","count":2}`},
	} {
		got := string(wire.AppendFrame(nil, tc.f))
		if got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
			continue
		}
		fr, err := wire.ParseFrame([]byte(got))
		if err != nil {
			t.Errorf("parse %s: %v", got, err)
			continue
		}
		if again := string(fr.Append(nil)); again != got {
			t.Errorf("parsed and encoded again: %s, want %s", again, got)
		}
	}
}

func TestPresenceFrameMalformed(t *testing.T) {
	for _, s := range []string{
		`{"type":"join","topic":"room"}`,
		`{"type":"join","client":{"session":"s"}}`,
		`{"type":"join","topic":"room","client":{"principal":"a"}}`,
		`{"type":"join","topic":"room","client":[]}`,
		`{"type":"reply","id":"1","ok":true,"presence":{}}`,
		`{"type":"reply","id":"1","ok":true,"count":-1}`,
	} {
		if _, err := wire.ParseFrame([]byte(s)); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", s, err)
		}
	}
}

func TestPresenceCommands(t *testing.T) {
	for _, typ := range []string{wire.CmdPresence, wire.CmdPresenceCount} {
		b := wire.AppendCommand(nil, wire.Command{ID: "1", Type: typ, Topic: "room"})
		c, err := wire.ParseCommand(b)
		if err != nil || c.Type != typ || c.Topic != "room" || c.ID != "1" {
			t.Errorf("%s: got %+v, %v", b, c, err)
		}
	}
	if _, err := wire.ParseCommand([]byte(`{"type":"presence"}`)); !errors.Is(err, fanout.ErrInvalidTopic) {
		t.Errorf("presence without topic: %v", err)
	}
	if _, err := wire.ParseCommand([]byte(`{"type":"presence","topic":"a","snapshot":true}`)); !errors.Is(err, fanout.ErrBadRequest) {
		t.Errorf("presence with snapshot: %v", err)
	}
}
