// Package fanoutv1 is the generated Go code of fanout's gRPC protocol,
// fanout.v1 (transport/grpc/proto/fanout/v1/fanout.proto): its messages, and
// the clients and server interfaces of SubscribeService and PublishService.
// Servers use package fanoutgrpc (transport/grpc) rather than implementing
// the interfaces.
package fanoutv1
