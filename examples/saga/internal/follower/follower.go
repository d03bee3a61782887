// Package follower is the client side of the saga example: it starts a
// booking over HTTP and follows its saga over a Subscribe stream, the way
// a service in another process would: over gRPC with grpc-go's client
// ([GRPC]), or over gRPC, gRPC-Web or Connect with connectrpc.com/connect's
// ([Connect]). The follow command uses it, and the saga server's tests run
// it against the real server.
package follower

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1/fanoutv1connect"
)

// Subscriber opens Subscribe streams, whatever the protocol; [GRPC] and
// [Connect] make one from a generated client. Its errors are gRPC status
// errors.
type Subscriber interface {
	// Subscribe opens a stream with the bearer token, when not empty.
	Subscribe(ctx context.Context, req *fanoutv1.SubscribeRequest, token string) (Stream, error)
}

// Stream is an open Subscribe stream. Recv returns io.EOF once the server
// ended it with OK.
type Stream interface {
	Recv() (*fanoutv1.Frames, error)
}

// GRPC subscribes through grpc-go's client.
func GRPC(c fanoutv1.SubscribeServiceClient) Subscriber { return grpcSubscriber{c} }

type grpcSubscriber struct {
	c fanoutv1.SubscribeServiceClient
}

func (g grpcSubscriber) Subscribe(ctx context.Context, req *fanoutv1.SubscribeRequest, token string) (Stream, error) {
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	st, err := g.c.Subscribe(ctx, req)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Connect subscribes through connectrpc.com/connect's client, whose
// options choose the protocol: connect.WithGRPCWeb(), connect.WithGRPC(),
// or none for the Connect protocol.
func Connect(c fanoutv1connect.SubscribeServiceClient) Subscriber { return connectSubscriber{c} }

type connectSubscriber struct {
	c fanoutv1connect.SubscribeServiceClient
}

func (cs connectSubscriber) Subscribe(ctx context.Context, req *fanoutv1.SubscribeRequest, token string) (Stream, error) {
	r := connect.NewRequest(req)
	if token != "" {
		r.Header().Set("Authorization", "Bearer "+token)
	}
	st, err := cs.c.Subscribe(ctx, r)
	if err != nil {
		return nil, grpcError(err)
	}
	return connectStream{st}, nil
}

type connectStream struct {
	st *connect.ServerStreamForClient[fanoutv1.Frames]
}

func (c connectStream) Recv() (*fanoutv1.Frames, error) {
	if c.st.Receive() {
		return c.st.Msg(), nil
	}
	if err := c.st.Err(); err != nil {
		return nil, grpcError(err)
	}
	return nil, io.EOF
}

// grpcError converts a connect error into a gRPC status error with the
// same code and message.
func grpcError(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return status.Error(codes.Code(ce.Code()), ce.Message())
	}
	return err
}

// Update is the payload of a saga's messages (see the saga command).
type Update struct {
	Tx     string   `json:"tx"`
	Step   string   `json:"step"`
	Status string   `json:"status"`
	Detail string   `json:"detail,omitempty"`
	Steps  []string `json:"steps,omitempty"`
	Final  bool     `json:"final,omitempty"`
}

// Booking is the answer of POST /bookings.
type Booking struct {
	Tx    string   `json:"tx"`
	Topic string   `json:"topic"`
	Steps []string `json:"steps"`
	// Token follows the booking, from a server run with a secret.
	Token string `json:"token,omitempty"`
}

// StartBooking starts a booking on the saga server at baseURL, failing at
// step fail when it is not empty.
func StartBooking(ctx context.Context, c *http.Client, baseURL, fail string) (Booking, error) {
	body, _ := json.Marshal(map[string]string{"fail": fail})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/bookings", bytes.NewReader(body))
	if err != nil {
		return Booking{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return Booking{}, fmt.Errorf("start booking: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return Booking{}, fmt.Errorf("start booking: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return Booking{}, fmt.Errorf("start booking: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var bk Booking
	if err := json.Unmarshal(b, &bk); err != nil {
		return Booking{}, fmt.Errorf("start booking: %w", err)
	}
	return bk, nil
}

// Options configures [Follow]. The zero value is valid.
type Options struct {
	// Out receives one line per update. Default: io.Discard.
	Out io.Writer
	// Retries bounds the reconnections in a row that bring nothing new.
	// Default: 10.
	Retries int
	// Backoff is the wait before the first reconnection; it doubles up to
	// 2s. Default: 100ms.
	Backoff time.Duration
	// Token is the bearer token of the booking (see POST /bookings), for
	// a server that wants one. Default: none.
	Token string
}

// Follow follows the saga of topic over a Subscribe stream and
// returns its final update. It asks for the topic's snapshot first (the
// current state of every step), then prints every update in order, until
// the final update, live or in the snapshot. The saga publishes it with
// fanout.WithFinal, so the server ends the stream right after it: a close
// frame 1000 "topic ended" in the same Frames message, then the end of the
// call (io.EOF); Follow prints that the server ended the stream. It stops
// at the final update all the same: from a server that does not end the
// stream, it cancels the call itself.
//
// When the stream breaks (the server drains, the connection drops), Follow
// subscribes again with since set to the last position it received, so it
// receives exactly what it missed, nothing twice. If the server answers
// that history no longer reaches back, it prints the snapshot again.
func Follow(ctx context.Context, c Subscriber, topic string, opts *Options) (Update, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Retries <= 0 {
		o.Retries = 10
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	f := &stream{topic: topic, out: o.Out, token: o.Token}
	backoff, failures := o.Backoff, 0
	for {
		final, progressed, err := f.subscribe(ctx, c)
		if err == nil {
			return final, nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return Update{}, err
		}
		if progressed {
			backoff, failures = o.Backoff, 0
		}
		if failures++; failures > o.Retries {
			return Update{}, fmt.Errorf("gave up after %d attempts: %w", failures, err)
		}
		fmt.Fprintf(o.Out, "stream ended (%v); resuming after #%d\n", status.Code(err), f.pos.GetSeq())
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Update{}, ctx.Err()
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// retryable reports whether a broken stream is worth resubscribing: the
// codes by which the server says "reconnect" (docs/PROTOCOL.md).
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

// stream holds what a Follow received so far, across its Subscribe calls.
type stream struct {
	topic string
	token string
	out   io.Writer
	pos   *fanoutv1.Position // the last position received; nil before any
}

// subscribe runs one Subscribe call until the final update or an error;
// progressed says whether it received anything.
func (f *stream) subscribe(ctx context.Context, c Subscriber) (final Update, progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends a stream that the server did not end
	sub := &fanoutv1.Subscription{Topic: f.topic, Since: f.pos, Snapshot: f.pos == nil}
	st, err := c.Subscribe(ctx, &fanoutv1.SubscribeRequest{Subscriptions: []*fanoutv1.Subscription{sub}}, f.token)
	if err != nil {
		return Update{}, false, err
	}
	for {
		batch, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "the server ended the stream")
			}
			return Update{}, progressed, err
		}
		for i, fr := range batch.Frames {
			var u Update
			switch x := fr.Frame.(type) {
			case *fanoutv1.Frame_Reply:
				if e := x.Reply.Error; e != nil {
					return Update{}, progressed, status.Errorf(codes.FailedPrecondition, "subscribe: %s: %s", e.Code, e.Message)
				}
				if x.Reply.Recovered != nil && !*x.Reply.Recovered {
					fmt.Fprintln(f.out, "history no longer reaches back: current state follows")
				}
			case *fanoutv1.Frame_Snapshot:
				progressed = true
				f.pos = x.Snapshot.Position
				for _, m := range x.Snapshot.Items {
					s, err := f.print(m, "snapshot")
					if err != nil {
						return Update{}, progressed, err
					}
					if s.Final {
						u = s
					}
				}
			case *fanoutv1.Frame_Message:
				progressed = true
				m := x.Message
				f.pos = &fanoutv1.Position{Epoch: m.Epoch, Seq: m.Seq}
				if u, err = f.print(m, ""); err != nil {
					return Update{}, progressed, err
				}
			case *fanoutv1.Frame_Close:
				// The call's status follows and says what to do.
			}
			if u.Final {
				f.end(st, batch.Frames[i+1:])
				return u, progressed, nil
			}
		}
	}
}

// end notes how the stream of a saga that reached its final update ends:
// the server ends it with a close frame right after the final update, in
// the same Frames message, and then the call.
func (f *stream) end(st Stream, rest []*fanoutv1.Frame) {
	for _, fr := range rest {
		c := fr.GetClose()
		if c == nil {
			continue
		}
		if _, err := st.Recv(); errors.Is(err, io.EOF) {
			fmt.Fprintf(f.out, "the server ended the stream (%d %s)\n", c.Code, c.Reason)
		}
		return
	}
}

func (f *stream) print(m *fanoutv1.Message, note string) (Update, error) {
	var u Update
	if err := json.Unmarshal(m.Data, &u); err != nil {
		return Update{}, fmt.Errorf("message #%d: %w", m.Seq, err)
	}
	if note != "" {
		note = " (" + note + ")"
	}
	fmt.Fprintf(f.out, "#%-3d %-6s %-12s %s%s\n", m.Seq, u.Step, u.Status, u.Detail, note)
	return u, nil
}
