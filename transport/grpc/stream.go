package fanoutgrpc

import (
	"google.golang.org/grpc"

	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// subscribeService implements fanout.v1.SubscribeService for grpc.Server.
type subscribeService struct {
	fanoutv1.UnimplementedSubscribeServiceServer
	s *Server
}

// Subscribe serves a server stream; see [Server.subscribe].
func (ss subscribeService) Subscribe(req *fanoutv1.SubscribeRequest, stream grpc.ServerStreamingServer[fanoutv1.Frames]) error {
	return ss.s.subscribe(stream.Context(), req, stream, nil)
}

// Connect serves a bidirectional stream; see [Server.connect].
func (ss subscribeService) Connect(stream grpc.BidiStreamingServer[fanoutv1.Command, fanoutv1.Frames]) error {
	return ss.s.connect(stream.Context(), stream, nil)
}
