package fanoutgrpc

import (
	"context"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// AppendFrame exposes appendFrame to the fuzz test.
func AppendFrame(b []byte, f fanout.Frame) ([]byte, error) { return appendFrame(b, f) }

// Protobuf exposes the message encoding.
var Protobuf = protobuf

// RunWriter attaches a stream to sess and waits until it ends.
func RunWriter(ctx context.Context, s *Server, sess *fanout.Session, send func(*fanoutv1.Frames) error) error {
	st := s.newStream(sess, send, nil)
	s.attach(st, nil, false)
	return st.wait(ctx)
}

// Command executes one Connect command on sess.
func Command(ctx context.Context, sess *fanout.Session, c *fanoutv1.Command) { command(ctx, sess, c) }
