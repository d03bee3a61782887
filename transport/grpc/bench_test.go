package fanoutgrpc_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	connectrpc "connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/gofanout/fanout"
	fanoutgrpc "github.com/gofanout/fanout/transport/grpc"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1/fanoutv1connect"
)

// BenchmarkSubscribeFanout publishes to one topic that subscribers receive
// over loopback Subscribe streams, and reports the cost per delivery (one
// message reaching one subscriber). Client and server run in this process,
// so time and allocations count both sides.
func BenchmarkSubscribeFanout(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("subs=%d/payload=%d", subs, size), func(b *testing.B) {
				benchFanout(b, subs, size)
			})
		}
	}
}

// window is how many messages the publisher may be ahead of the slowest
// subscriber; well below the session queue's bound.
const window = 256

func benchFanout(b *testing.B, subs, size int) {
	e := newEnv(b, envOptions{})
	// More connections, as many clients would have; 100 streams each.
	conns := []*env{e}
	for i := 100; i < subs; i += 100 {
		conns = append(conns, &env{sub: fanoutv1.NewSubscribeServiceClient(dial(b, e.conn.Target()))})
	}
	runFanout(b, e.hub, subs, size, func(ctx context.Context, i int) (func() (*fanoutv1.Frames, error), error) {
		st, err := conns[i/100].sub.Subscribe(ctx, &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: "bench"}}})
		if err != nil {
			return nil, err
		}
		return st.Recv, nil
	})
}

// BenchmarkHandlerFanout is BenchmarkSubscribeFanout against
// Server.Handler on a net/http server, over gRPC (grpc-go's client) and
// gRPC-Web (connectrpc.com/connect's client), both on h2c: the cost per
// delivery next to grpc.Server's.
func BenchmarkHandlerFanout(b *testing.B) {
	for _, protocol := range []string{"grpc", "grpcweb"} {
		for _, subs := range []int{1, 100, 1000} {
			for _, size := range []int{64, 1024} {
				b.Run(fmt.Sprintf("protocol=%s/subs=%d/payload=%d", protocol, subs, size), func(b *testing.B) {
					benchHandlerFanout(b, protocol, subs, size)
				})
			}
		}
	}
}

func benchHandlerFanout(b *testing.B, protocol string, subs, size int) {
	hub, err := fanout.NewHub(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { hub.Close() })
	srv := handlerServer(b, hub, nil)
	// 100 streams per connection, as for grpc.Server.
	var open []func(ctx context.Context) (func() (*fanoutv1.Frames, error), error)
	for i := 0; i < subs; i += 100 {
		req := &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{{Topic: "bench"}}}
		if protocol == "grpc" {
			c := fanoutv1.NewSubscribeServiceClient(dial(b, srv.Listener.Addr().String()))
			open = append(open, func(ctx context.Context) (func() (*fanoutv1.Frames, error), error) {
				st, err := c.Subscribe(ctx, req)
				if err != nil {
					return nil, err
				}
				return st.Recv, nil
			})
			continue
		}
		c := fanoutv1connect.NewSubscribeServiceClient(httpClient(b, true), srv.URL, connectrpc.WithGRPCWeb())
		open = append(open, func(ctx context.Context) (func() (*fanoutv1.Frames, error), error) {
			st, err := c.Subscribe(ctx, connectrpc.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return serverStreamRecv(st), nil
		})
	}
	runFanout(b, hub, subs, size, func(ctx context.Context, i int) (func() (*fanoutv1.Frames, error), error) {
		return open[i/100](ctx)
	})
}

// runFanout subscribes subs streams with open and measures the deliveries
// of b.N messages of size bytes to each.
func runFanout(b *testing.B, hub *fanout.Hub, subs, size int, open func(ctx context.Context, i int) (func() (*fanoutv1.Frames, error), error)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	progress := make(chan error, subs)
	for i := 0; i < subs; i++ {
		recv, err := open(ctx, i)
		if err != nil {
			b.Fatal(err)
		}
		fs := &frames{recv: recv}
		if _, err := fs.next(); err != nil { // the reply
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for want := uint64(1); ; want++ {
				fr, err := fs.next()
				if err != nil {
					if ctx.Err() == nil {
						progress <- err
					}
					return
				}
				if m := fr.GetMessage(); m == nil || m.Seq != want {
					progress <- fmt.Errorf("got %v, want seq %d", fr, want)
					return
				}
				if want%window == 0 || want == uint64(b.N) {
					progress <- nil
				}
			}
		}()
	}
	data := make([]byte, size)
	b.SetBytes(int64(size * subs))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if _, err := hub.Publish(ctx, "bench", data); err != nil {
			b.Fatal(err)
		}
		if i%window == 0 || i == b.N {
			for range subs {
				if err := <-progress; err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	deliveries := float64(b.N) * float64(subs)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
}

// BenchmarkEncodeBatch compares writing a batch of frames from the cached
// message encodings with marshalling the equivalent Frames message, which a
// stream would otherwise do for every subscriber.
func BenchmarkEncodeBatch(b *testing.B) {
	const n = 64
	msgs := make([]fanout.Frame, n)
	pbs := &fanoutv1.Frames{}
	for i := range msgs {
		m := &fanout.Message{Topic: "bench", Position: fanout.Position{Epoch: "e", Seq: uint64(i + 1)}, Data: make([]byte, 256)}
		msgs[i] = fanout.Frame{Type: fanout.FrameMessage, Message: m}
		m.Encode(fanoutgrpc.Protobuf)
		pbs.Frames = append(pbs.Frames, &fanoutv1.Frame{Frame: &fanoutv1.Frame_Message{Message: &fanoutv1.Message{Topic: m.Topic, Epoch: "e", Seq: m.Position.Seq, Data: m.Data}}})
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(n * 256)
		buf := make([]byte, 0, 64<<10)
		for b.Loop() {
			buf = buf[:0]
			for _, f := range msgs {
				buf, _ = fanoutgrpc.AppendFrame(buf, f)
			}
		}
	})
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(n * 256)
		buf := make([]byte, 0, 64<<10)
		for b.Loop() {
			buf, _ = proto.MarshalOptions{}.MarshalAppend(buf[:0], pbs)
		}
	})
}
