package wire_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/wire"
)

// BenchmarkEncodeMessage encodes a fresh message as a msg frame, as the hub
// does once per message and wire format.
func BenchmarkEncodeMessage(b *testing.B) {
	for _, tc := range []struct {
		name   string
		data   []byte
		header map[string]string
	}{
		{"json-64B", []byte(`{"sku":"SKU-42","stock":5,"warehouse":"north","updated":17000000}`), nil},
		{"json-64B-header", []byte(`{"sku":"SKU-42","stock":5,"warehouse":"north","updated":17000000}`),
			map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "north"}},
		{"json-1KiB", []byte(`{"v":"` + strings.Repeat("x", 1016) + `"}`), nil},
		{"binary-1KiB", []byte(strings.Repeat("\x00\xff", 512)), nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.data)))
			now := time.UnixMilli(1700000000123)
			for i := 0; b.Loop(); i++ {
				m := &fanout.Message{Topic: "stock:SKU-42", Position: fanout.Position{Epoch: "3f9c2a1b7d0e", Seq: uint64(i)},
					Key: "SKU-42", Data: tc.data, Time: now, Header: tc.header}
				if len(m.Encode(wire.JSON)) == 0 {
					b.Fatal("empty encoding")
				}
			}
		})
	}
}

// BenchmarkAppendFrame encodes the frames that are not messages.
func BenchmarkAppendFrame(b *testing.B) {
	pos := &fanout.Position{Epoch: "3f9c2a1b7d0e", Seq: 42}
	yes := true
	items := make([]*fanout.Message, 16)
	for i := range items {
		items[i] = &fanout.Message{Topic: "saga/7f3a", Position: fanout.Position{Epoch: "e", Seq: uint64(i + 1)},
			Key: fmt.Sprint("step", i), Data: []byte(`{"status":"confirmed"}`)}
	}
	for _, tc := range []struct {
		name string
		f    fanout.Frame
	}{
		{"reply", fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "17", Topic: "stock:SKU-42", Position: pos, Recovered: &yes}}},
		{"error", fanout.Frame{Type: fanout.FrameReply, Reply: &fanout.Reply{ID: "18", Topic: "a", Err: fmt.Errorf("publish %q: %w", "a", fanout.ErrForbidden)}}},
		{"snapshot-16", fanout.Frame{Type: fanout.FrameSnapshot, Snapshot: &fanout.SnapshotFrame{Topic: "saga/7f3a", Position: *pos, Items: items}}},
		{"close", fanout.Frame{Type: fanout.FrameClose, Close: &fanout.CloseFrame{Code: fanout.CloseShutdown, Reason: "server shutting down", Reconnect: true}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = wire.AppendFrame(buf[:0], tc.f)
			}
		})
	}
}

// BenchmarkParseCommand decodes client commands.
func BenchmarkParseCommand(b *testing.B) {
	for _, tc := range []struct{ name, cmd string }{
		{"ping", `{"id":"1","type":"ping"}`},
		{"subscribe", `{"id":"2","type":"subscribe","topic":"saga/7f3a","since":{"epoch":"3f9c2a1b7d0e","seq":17}}`},
		{"publish", `{"id":"4","type":"publish","topic":"chat/room-1","data":{"text":"hi","n":[1,2,3]},"key":"last"}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.cmd)))
			in := []byte(tc.cmd)
			for b.Loop() {
				if _, err := wire.ParseCommand(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
