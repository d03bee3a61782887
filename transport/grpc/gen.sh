#!/bin/sh
# gen.sh regenerates package fanoutv1 from proto/fanout/v1/fanout.proto with
# pinned tools; `go generate` in this directory runs it. Only regenerating
# needs protoc: the generated code is committed.
#
#   protoc              3.21.12, Debian's protobuf-compiler (with its
#                       recommended libprotobuf-dev for timestamp.proto)
#   protoc-gen-go       the version of google.golang.org/protobuf in go.mod
#   protoc-gen-go-grpc  v1.6.2 (module google.golang.org/grpc/cmd/protoc-gen-go-grpc)
set -eu

PROTOC_VERSION="libprotoc 3.21.12"
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

cd "$(dirname "$0")"
have=$(protoc --version 2>/dev/null || echo "no protoc")
if [ "$have" != "$PROTOC_VERSION" ]; then
	echo "gen.sh: want $PROTOC_VERSION (apt-get install protobuf-compiler), have: $have" >&2
	exit 1
fi
PROTOC_GEN_GO_VERSION=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin GOFLAGS= go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
GOBIN=$bin GOFLAGS= go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"

protoc -I proto \
	--plugin=protoc-gen-go="$bin/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
	--go_out=. --go_opt=module=github.com/gofanout/fanout/transport/grpc \
	--go-grpc_out=. --go-grpc_opt=module=github.com/gofanout/fanout/transport/grpc \
	fanout/v1/fanout.proto
