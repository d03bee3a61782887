package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
)

// BenchmarkDecodeFrames decodes WebSocket messages as the server batches
// them: frames per message × payload size.
func BenchmarkDecodeFrames(b *testing.B) {
	for _, frames := range []int{1, 16, 256} {
		for _, size := range []int{16, 1024} {
			b.Run(fmt.Sprintf("frames=%d/payload=%d", frames, size), func(b *testing.B) {
				data := []byte(`"` + strings.Repeat("x", size-2) + `"`)
				fs := make([]fanout.Frame, frames)
				for i := range fs {
					m := &fanout.Message{Topic: "stock:42", Position: fanout.Position{Epoch: "e1", Seq: uint64(i + 1)}, Data: data}
					fs[i] = fanout.Frame{Type: fanout.FrameMessage, Message: m}
				}
				msg := encode(fs...)
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := client.DecodeFrames(msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkReceive measures messages from hub.Publish to Subscription.Next
// over a loopback WebSocket, by payload size.
func BenchmarkReceive(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			srv := newServer(b, nil)
			c := dial(b, "ws://"+srv.addr+"/", options(b, nil))
			s := subscribe(b, c, "bench", nil)
			data := []byte(`"` + strings.Repeat("x", size-2) + `"`)
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := srv.hub.Publish(ctx, "bench", data); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Next(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
