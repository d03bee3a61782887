package fanoutgrpc_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// FuzzAppendFrame checks that the frames written by hand from cached
// message encodings decode, with the generated code, to what marshalling
// the equivalent fanoutv1 values would give.
func FuzzAppendFrame(f *testing.F) {
	f.Add("t", "e1", uint64(1), "", []byte("{}"), int64(1), "", "", "", "reason")
	f.Add("inv:sku/1", "", uint64(0), "k", []byte{}, int64(0), "traceparent", "00-ab", "id", "")
	f.Add("a", "\xff", uint64(1<<63), "\xfe", []byte{0, 0xff}, int64(-1), "\xc3", "\x80", "\xff", "\xff")
	f.Add("room:1", "e", uint64(2), "node:1", []byte("x"), int64(5), "", "", "alice", `{"name":"Alice"}`)
	f.Add("room:1", "e", uint64(3), "node:2", []byte("x"), int64(5), "", "", "", "{\n\"a\":\n1}")
	f.Fuzz(func(t *testing.T, topic, epoch string, seq uint64, key string, data []byte, unixNano int64, hk, hv, id, reason string) {
		if fanout.ValidateTopic(topic) != nil {
			t.Skip()
		}
		var tm time.Time
		if unixNano != 0 {
			tm = time.Unix(0, unixNano)
		}
		var header map[string]string
		if hk != "" || hv != "" {
			header = map[string]string{hk: hv}
		}
		msg := func(s uint64) *fanout.Message {
			return &fanout.Message{Topic: topic, Position: fanout.Position{Epoch: epoch, Seq: s}, Key: key, Data: data, Time: tm, Header: header}
		}
		want := func(s uint64) *fanoutv1.Message {
			m := &fanoutv1.Message{Topic: topic, Epoch: valid(epoch), Seq: s, Key: valid(key), Data: data}
			if !tm.IsZero() {
				m.Time = timestamppb.New(tm)
			}
			if header != nil {
				m.Headers = map[string]string{valid(hk): valid(hv)}
			}
			return m
		}
		recovered := seq%2 == 0
		pos := fanout.Position{Epoch: epoch, Seq: seq}
		info, _ := json.Marshal(reason)
		client := fanout.ClientInfo{Principal: id, Session: key, Info: info}
		noInfo := fanout.ClientInfo{Principal: id, Session: key, Info: json.RawMessage(reason)}
		count := int(seq % 1000)
		wantClient := &fanoutv1.ClientInfo{Principal: valid(id), Session: valid(key), Info: string(info)}
		wantNoInfo := &fanoutv1.ClientInfo{Principal: valid(id), Session: valid(key)}
		if json.Valid([]byte(reason)) {
			wantNoInfo.Info = valid(reason)
		}
		wantCount := uint64(count)
		frames := []fanout.Frame{
			{Type: fanout.FrameMessage, Message: msg(seq)},
			{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: topic, Position: pos, Items: []*fanout.Message{msg(seq), msg(seq + 1)}}},
			{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: topic}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Topic: topic, Err: fmt.Errorf("%w: %s", fanout.ErrBadRequest, reason), Position: &pos, Recovered: &recovered}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id}},
			{Type: fanout.FrameJoin, Event: &fanout.PresenceEvent{Topic: topic, Client: client}},
			{Type: fanout.FrameLeave, Event: &fanout.PresenceEvent{Topic: topic, Leave: true, Client: noInfo}},
			{Type: fanout.FrameSubscribed, Reply: &fanout.Reply{Topic: topic, Position: &pos, Snapshot: recovered}},
			{Type: fanout.FrameUnsubscribed, Reply: &fanout.Reply{Topic: topic}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Topic: topic, Presence: []fanout.ClientInfo{client, noInfo}}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Topic: topic, Presence: []fanout.ClientInfo{}}},
			{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: id, Topic: topic, Count: &count}},
			{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseShutdown, Reason: reason, Reconnect: true}},
		}
		wantPos := &fanoutv1.Position{Epoch: valid(epoch), Seq: seq}
		wantFrames := []*fanoutv1.Frame{
			{Frame: &fanoutv1.Frame_Message{Message: want(seq)}},
			{Frame: &fanoutv1.Frame_Snapshot{Snapshot: &fanoutv1.Snapshot{Topic: topic, Position: wantPos, Items: []*fanoutv1.Message{want(seq), want(seq + 1)}}}},
			{Frame: &fanoutv1.Frame_Snapshot{Snapshot: &fanoutv1.Snapshot{Topic: topic, Position: &fanoutv1.Position{}}}},
			{Frame: &fanoutv1.Frame_Reply{Reply: &fanoutv1.Reply{Id: valid(id), Topic: topic, Position: wantPos, Recovered: &recovered,
				Error: &fanoutv1.Error{Code: "bad_request", Message: "bad request: " + valid(reason)}}}},
			{Frame: &fanoutv1.Frame_Reply{Reply: &fanoutv1.Reply{Id: valid(id)}}},
			{Frame: &fanoutv1.Frame_Join{Join: &fanoutv1.PresenceEvent{Topic: topic, Client: wantClient}}},
			{Frame: &fanoutv1.Frame_Leave{Leave: &fanoutv1.PresenceEvent{Topic: topic, Client: wantNoInfo}}},
			{Frame: &fanoutv1.Frame_Subscribed{Subscribed: &fanoutv1.Subscribed{Topic: topic, Position: wantPos, Snapshot: recovered}}},
			{Frame: &fanoutv1.Frame_Unsubscribed{Unsubscribed: &fanoutv1.Unsubscribed{Topic: topic}}},
			{Frame: &fanoutv1.Frame_Reply{Reply: &fanoutv1.Reply{Id: valid(id), Topic: topic,
				Presence: &fanoutv1.Presence{Clients: []*fanoutv1.ClientInfo{wantClient, wantNoInfo}}}}},
			{Frame: &fanoutv1.Frame_Reply{Reply: &fanoutv1.Reply{Id: valid(id), Topic: topic, Presence: &fanoutv1.Presence{}}}},
			{Frame: &fanoutv1.Frame_Reply{Reply: &fanoutv1.Reply{Id: valid(id), Topic: topic, Count: &wantCount}}},
			{Frame: &fanoutv1.Frame_Close{Close: &fanoutv1.Close{Code: 4000, Reason: valid(reason), Reconnect: true}}},
		}
		var b []byte
		for _, fr := range frames {
			var err error
			if b, err = fanoutgrpc.AppendFrame(b, fr); err != nil {
				t.Fatal(err)
			}
		}
		var got fanoutv1.Frames
		if err := proto.Unmarshal(b, &got); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if w := (&fanoutv1.Frames{Frames: wantFrames}); !proto.Equal(&got, w) {
			t.Fatalf("got %v, want %v", &got, w)
		}
		// The cached encoding is what the message marshals to.
		if err := proto.Unmarshal(msg(seq).Encode(fanoutgrpc.Protobuf), new(fanoutv1.Message)); err != nil {
			t.Fatalf("cached encoding: %v", err)
		}
	})
}

func valid(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// TestFramesTravelAsUnknownFields checks the premise of writing frames by
// hand: a Frames message whose bytes are set as unknown fields marshals to
// exactly those bytes.
func TestFramesTravelAsUnknownFields(t *testing.T) {
	t.Parallel()
	b, err := fanoutgrpc.AppendFrame(nil, fanout.Frame{Type: fanout.FrameMessage, Message: &fanout.Message{Topic: "t", Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	fs := new(fanoutv1.Frames)
	fs.ProtoReflect().SetUnknown(b)
	out, err := proto.Marshal(fs)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(b) {
		t.Fatalf("got %x, want %x", out, b)
	}
}
