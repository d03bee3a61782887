package fanoutgrpc

import (
	"context"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// publishService implements fanout.v1.PublishService.
type publishService struct {
	fanoutv1.UnimplementedPublishServiceServer
	s *Server
}

// Publish publishes for a service, as the HTTP publish endpoint
// ([fanout.NewPublishHandler]) does: authenticated, checked, authorized as
// [fanout.ActionPublish], with the same idempotency key rules.
func (p publishService) Publish(ctx context.Context, req *fanoutv1.PublishRequest) (*fanoutv1.PublishResponse, error) {
	s := p.s
	principal, err := s.authenticate(ctx)
	if err != nil {
		return nil, errStatus(err)
	}
	if err := fanout.ValidateTopic(req.Topic); err != nil {
		return nil, errStatus(err)
	}
	opts := publishOptions(req.Key, req.IdempotencyKey, req.Headers)
	if err := s.hub.Authorize(ctx, principal, req.Topic, fanout.ActionPublish); err != nil {
		return nil, errStatus(err)
	}
	pos, err := s.hub.Publish(ctx, req.Topic, req.Data, opts...)
	if err != nil {
		return nil, errStatus(err)
	}
	return &fanoutv1.PublishResponse{Position: position(pos)}, nil
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
