package fanoutgrpc

// Package fanoutv1 is generated from proto/fanout/v1/fanout.proto by gen.sh,
// which pins protoc 3.21.12 (Debian's protobuf-compiler), protoc-gen-go at the
// go.mod version of google.golang.org/protobuf and protoc-gen-go-grpc v1.6.2.
//go:generate sh gen.sh
