package client_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/wire"
)

// encode writes frames as the server does: one line each, joined by "\n".
func encode(fs ...fanout.Frame) []byte {
	var b []byte
	for i, f := range fs {
		if i > 0 {
			b = append(b, '\n')
		}
		b = wire.AppendFrame(b, f)
	}
	return b
}

func TestDecodeServerFrames(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1700000000123)
	m1 := &fanout.Message{Topic: "stock:1", Position: fanout.Position{Epoch: "e1", Seq: 7}, Key: "qty", Data: []byte(`{"n":1}`), Time: now, Header: map[string]string{"traceparent": "x"}}
	m2 := &fanout.Message{Topic: "stock:1", Position: fanout.Position{Epoch: "e1", Seq: 8}, Data: []byte{0, 1, 0xff, '\n'}}
	m3 := &fanout.Message{Topic: "stock:1", Position: fanout.Position{Epoch: "e1", Seq: 9}, Data: []byte{}}
	yes := false
	pos := fanout.Position{Epoch: "e1", Seq: 9}
	b := encode(
		fanout.Frame{Type: fanout.FrameMessage, Message: m1},
		fanout.Frame{Type: fanout.FrameMessage, Message: m2},
		fanout.Frame{Type: fanout.FrameMessage, Message: m3},
		fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "a1", Topic: "stock:1", Position: &pos, Recovered: &yes}},
		fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "a2", Err: fanout.ErrForbidden}},
		fanout.Frame{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: "stock:1", Position: pos, Items: []*fanout.Message{m1, m2}}},
		fanout.Frame{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseShutdown, Reason: "bye", Reconnect: true}},
	)
	fs, err := client.DecodeFrames(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 7 {
		t.Fatalf("got %d frames, want 7", len(fs))
	}
	if got := fs[0].Message; fs[0].Type != "msg" || got.Key != "qty" || string(got.Data) != string(m1.Data) || !got.Time.Equal(now) ||
		!reflect.DeepEqual(got.Header, m1.Header) || got.Position != m1.Position {
		t.Errorf("frame 0: got %+v, want %+v", got, m1)
	}
	if got := fs[1].Message; !bytes.Equal(got.Data, m2.Data) || got.Position != m2.Position {
		t.Errorf("frame 1: got %+v, want data %q at %v", got, m2.Data, m2.Position)
	}
	if got := fs[2].Message; got.Data == nil || len(got.Data) != 0 {
		t.Errorf("frame 2: got data %#v, want empty and not nil", got.Data)
	}
	if r := fs[3]; r.Type != "reply" || r.ID != "a1" || !r.OK || r.Position == nil || *r.Position != pos || r.Recovered == nil || *r.Recovered {
		t.Errorf("frame 3: got %+v, want ok reply a1 at %v, recovered=false", r, pos)
	}
	if r := fs[4]; r.OK || r.Error == nil || r.Error.Code != "forbidden" || r.Error.Message == "" || r.Recovered != nil {
		t.Errorf("frame 4: got %+v, want forbidden error", r)
	}
	if s := fs[5]; s.Type != "snapshot" || s.Topic != "stock:1" || *s.Position != pos || len(s.Items) != 2 || s.Items[1].Position.Seq != 8 {
		t.Errorf("frame 5: got %+v, want snapshot of 2 items at %v", s, pos)
	}
	if c := fs[6]; c.Type != "close" || c.Code != fanout.CloseShutdown || c.Reason != "bye" || !c.Reconnect {
		t.Errorf("frame 6: got %+v, want close 4000", c)
	}
}

func TestDecodeSkipsUnknownTypesAndBlankLines(t *testing.T) {
	t.Parallel()
	fs, err := client.DecodeFrames([]byte("\n{\"type\":\"future\",\"x\":1}\r\n\n{\"type\":\"reply\",\"id\":\"1\",\"ok\":true,\"new\":2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].ID != "1" {
		t.Fatalf("got %+v, want the one reply", fs)
	}
}

func TestDecodeRejectsMalformedFrames(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{`,
		`[]`,
		`{"type":""}`,
		`{}`,
		`{"type":"msg","topic":"a","seq":1}`,
		`{"type":"msg","topic":"a","data":1}`,
		`{"type":"msg","seq":1,"data":1}`,
		`{"type":"msg","topic":"a","seq":-1,"data":1}`,
		`{"type":"msg","topic":"a","seq":1,"data":1,"data64":""}`,
		`{"type":"msg","topic":"a","seq":1,"data64":"!!"}`,
		`{"type":"reply","id":"1"}`,
		`{"type":"reply","id":"1","ok":false}`,
		`{"type":"reply","id":"1","ok":true,"position":{"epoch":"e"}}`,
		`{"type":"snapshot","topic":"a"}`,
		`{"type":"snapshot","topic":"a","position":{"seq":1},"items":[{"type":"reply"}]}`,
		`{"type":"snapshot","topic":"a","position":{"seq":1},"items":[{"type":"msg","topic":"b","seq":1,"data":1}]}`,
		`{"type":"close"}`,
		"{\"type\":\"reply\",\"id\":\"1\",\"ok\":true}\n{",
	} {
		if _, err := client.DecodeFrames([]byte(in)); err == nil {
			t.Errorf("%s: got no error, want one", in)
		}
	}
}

func TestCommandsParseOnTheServer(t *testing.T) {
	t.Parallel()
	since := fanout.Position{Epoch: "e", Seq: 3}
	c, err := wire.ParseCommand(client.SubscribeCommand("7", "a/b", &since, false))
	if err != nil || c.Type != wire.CmdSubscribe || c.ID != "7" || c.Topic != "a/b" || c.Since == nil || *c.Since != since {
		t.Errorf("subscribe: got %+v, %v", c, err)
	}
	c, err = wire.ParseCommand(client.SubscribeCommand("8", "a", nil, true))
	if err != nil || c.Since != nil || !c.Snapshot {
		t.Errorf("subscribe with snapshot: got %+v, %v", c, err)
	}
}

func FuzzDecodeFrames(f *testing.F) {
	pos := fanout.Position{Epoch: "e", Seq: 2}
	m := &fanout.Message{Topic: "t", Position: pos, Key: "k", Data: []byte(`{"a":[1,2]}`)}
	f.Add(encode(fanout.Frame{Type: fanout.FrameMessage, Message: m}))
	f.Add(encode(fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "1", Position: &pos}}))
	f.Add(encode(fanout.Frame{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: "t", Position: pos, Items: []*fanout.Message{m}}}))
	f.Add(encode(fanout.Frame{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: 4001, Reason: "slow"}}))
	f.Add([]byte("{\"type\":\"msg\",\"topic\":\"t\",\"seq\":1,\"data64\":\"AA==\"}\n{\"type\":\"x\"}"))
	f.Add([]byte(`{"type":"reply","ok":false,"error":{"code":"forbidden","message":"no"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1024 {
			t.Skip() // longer inputs explore nothing more, and slow the fuzzer's minimization
		}
		fs, err := client.DecodeFrames(b)
		if err != nil {
			return
		}
		for _, fr := range fs {
			switch fr.Type {
			case "msg":
				if fr.Message.Topic == "" || fr.Message.Data == nil {
					t.Errorf("accepted a msg without topic or data: %+v", fr)
				}
			case "snapshot":
				if fr.Position == nil {
					t.Errorf("accepted a snapshot without position: %+v", fr)
				}
			case "reply":
				if !fr.OK && (fr.Error == nil || fr.Error.Code == "") {
					t.Errorf("accepted a failed reply without code: %+v", fr)
				}
			case "close":
			default:
				t.Errorf("got frame type %q", fr.Type)
			}
		}
	})
}

// FuzzMessageRoundTrip checks that every message the server encodes decodes
// to the same message.
func FuzzMessageRoundTrip(f *testing.F) {
	f.Add("stock:1", "e1", uint64(1), "", []byte(`{"qty":3}`))
	f.Add("t", "", uint64(1<<63), "k\n\"", []byte("\x00\xff binary"))
	f.Add("t", "e", uint64(2), "k", []byte("[1,\n 2]"))
	f.Add("t", "e", uint64(2), "", []byte{})
	f.Fuzz(func(t *testing.T, topic, epoch string, seq uint64, key string, data []byte) {
		if len(topic)+len(epoch)+len(key) > 192 || len(data) > 256 {
			t.Skip() // longer inputs explore nothing more, and slow the fuzzer's minimization
		}
		if topic == "" || !utf8.ValidString(topic) || !utf8.ValidString(epoch) || !utf8.ValidString(key) {
			return // the server writes valid topics; strings are replaced otherwise
		}
		m := &fanout.Message{Topic: topic, Position: fanout.Position{Epoch: epoch, Seq: seq}, Key: key, Data: data}
		fs, err := client.DecodeFrames(encode(fanout.Frame{Type: fanout.FrameMessage, Message: m}))
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if len(fs) != 1 {
			t.Fatalf("got %d frames, want 1", len(fs))
		}
		got := fs[0].Message
		if got.Topic != topic || got.Position != m.Position || got.Key != key {
			t.Fatalf("got %q %v %q, want %q %v %q", got.Topic, got.Position, got.Key, topic, m.Position, key)
		}
		want := data // payloads travel byte for byte
		if !bytes.Equal(got.Data, want) {
			t.Fatalf("got data %q, want %q", got.Data, want)
		}
	})
}

func TestServerErrorMatchesFanoutErrors(t *testing.T) {
	t.Parallel()
	err := error(&client.ServerError{Code: "forbidden", Message: "no"})
	if !errors.Is(err, fanout.ErrForbidden) || errors.Is(err, fanout.ErrInvalidTopic) {
		t.Errorf("got %v matching the wrong sentinels", err)
	}
	if errors.Unwrap(&client.ServerError{Code: "internal"}) != nil {
		t.Errorf("got a sentinel for internal, want none")
	}
}
