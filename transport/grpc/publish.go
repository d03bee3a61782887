package fanoutgrpc

import (
	"context"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
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

// publishOptions turns a publish's key, idempotency key and headers into
// options; [fanout.Hub.Publish] checks them against the hub's limits, as for
// every other path.
func publishOptions(key, idem string, headers map[string]string) []fanout.PublishOption {
	var opts []fanout.PublishOption
	if key != "" {
		opts = append(opts, fanout.WithKey(key))
	}
	if idem != "" {
		opts = append(opts, fanout.WithIdempotencyKey(idem))
	}
	if len(headers) > 0 {
		opts = append(opts, fanout.WithHeader(headers))
	}
	return opts
}
