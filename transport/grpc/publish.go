package fanoutgrpc

import (
	"context"
	"fmt"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// Limits of a publish's headers, which are meant for small metadata such as
// trace context. (The idempotency key has the HTTP publish endpoint's
// limit, [fanout.MaxIdempotencyKeyLength].)
const (
	// maxHeaders and maxHeaderBytes bound a message's headers.
	maxHeaders     = 32
	maxHeaderBytes = 4 << 10
)

// publishService implements fanout.v1.PublishService for grpc.Server.
type publishService struct {
	fanoutv1.UnimplementedPublishServiceServer
	s *Server
}

// Publish publishes for a service; see [Server.publish].
func (p publishService) Publish(ctx context.Context, req *fanoutv1.PublishRequest) (*fanoutv1.PublishResponse, error) {
	return p.s.publish(ctx, req)
}

// publishOptions checks a publish's key, idempotency key and headers and
// turns them into options. Its errors match [fanout.ErrBadRequest].
func publishOptions(key, idem string, headers map[string]string) ([]fanout.PublishOption, error) {
	var opts []fanout.PublishOption
	if key != "" {
		opts = append(opts, fanout.WithKey(key))
	}
	if idem != "" {
		if len(idem) > fanout.MaxIdempotencyKeyLength {
			return nil, fmt.Errorf("%w: idempotency key longer than %d bytes", fanout.ErrBadRequest, fanout.MaxIdempotencyKeyLength)
		}
		opts = append(opts, fanout.WithIdempotencyKey(idem))
	}
	if len(headers) > 0 {
		if len(headers) > maxHeaders {
			return nil, fmt.Errorf("%w: more than %d headers", fanout.ErrBadRequest, maxHeaders)
		}
		n := 0
		for k, v := range headers {
			n += len(k) + len(v)
		}
		if n > maxHeaderBytes {
			return nil, fmt.Errorf("%w: headers larger than %d bytes", fanout.ErrBadRequest, maxHeaderBytes)
		}
		opts = append(opts, fanout.WithHeader(headers))
	}
	return opts, nil
}
