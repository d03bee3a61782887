package transporttest_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
	"github.com/gofanout/fanout/transport/transporttest"
)

// TestParseJSON parses what the server's JSON encoder writes.
func TestParseJSON(t *testing.T) {
	t.Parallel()
	pos := fanout.Position{Epoch: "e1", Seq: 7}
	m := &fanout.Message{Topic: "t", Position: pos, Key: "k", Data: []byte{0, 0xff}}
	yes := true
	for _, tc := range []struct {
		f    fanout.Frame
		want transporttest.Event
	}{
		{fanout.Frame{Type: fanout.FrameMessage, Message: m},
			transporttest.Event{Type: transporttest.EventMessage, Topic: "t", Position: pos, Key: "k", Data: []byte{0, 0xff}}},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "1", Topic: "t", Position: &pos, Recovered: &yes}},
			transporttest.Event{Type: transporttest.EventReply, ID: "1", Topic: "t", Position: pos, Recovered: &yes}},
		{fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "2", Err: errors.Join(fanout.ErrForbidden)}},
			transporttest.Event{Type: transporttest.EventReply, ID: "2", Error: "forbidden"}},
		{fanout.Frame{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: "t", Items: []*fanout.Message{m}, Position: pos}},
			transporttest.Event{Type: transporttest.EventSnapshot, Topic: "t", Position: pos, Items: []transporttest.Event{
				{Type: transporttest.EventMessage, Topic: "t", Position: pos, Key: "k", Data: []byte{0, 0xff}}}}},
		{fanout.Frame{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseShutdown, Reason: "bye", Reconnect: true}},
			transporttest.Event{Type: transporttest.EventClose, Code: fanout.CloseShutdown, Reason: "bye", Reconnect: true}},
	} {
		b := wire.AppendFrame(nil, tc.f)
		got, err := transporttest.ParseJSON(b)
		if err != nil {
			t.Fatalf("parse %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("parse %s: got %+v, want %+v", b, got, tc.want)
		}
	}
}

// FuzzParseJSON: any input is parsed or rejected, never a panic; a message
// frame the server encodes parses back to its exact payload.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"type":"msg","topic":"t","epoch":"e","seq":1,"data":{"a":1}}`), []byte("x"))
	f.Add([]byte(`{"type":"reply","id":"1","ok":false,"error":{"code":"forbidden","message":"no"}}`), []byte(`{"json":true}`))
	f.Add([]byte(`{"type":"snapshot","topic":"t","position":{"epoch":"e","seq":2},"items":[{"type":"close"}]}`), []byte{})
	f.Fuzz(func(t *testing.T, frame, payload []byte) {
		if len(frame) > 1024 || len(payload) > 256 {
			t.Skip() // longer inputs explore nothing more, and slow the fuzzer's minimization
		}
		transporttest.ParseJSON(frame)
		m := &fanout.Message{Topic: "t", Position: fanout.Position{Epoch: "e", Seq: 1}, Data: payload}
		b := wire.AppendFrame(nil, fanout.Frame{Type: fanout.FrameMessage, Message: m})
		ev, err := transporttest.ParseJSON(b)
		if err != nil {
			t.Fatalf("parse %s: %v", b, err)
		}
		if !bytes.Equal(ev.Data, payload) {
			t.Fatalf("payload %q came back as %q", payload, ev.Data)
		}
	})
}
