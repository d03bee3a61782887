#!/bin/sh
# gen.sh regenerates the code derived from proto/fanout/v1/fanout.proto with
# pinned tools; `go generate` in this directory runs it. Only regenerating
# needs protoc and npm: the generated code is committed.
#
#   protoc                  3.21.12, Debian's protobuf-compiler (with its
#                           recommended libprotobuf-dev for timestamp.proto)
#   protoc-gen-go           the version of google.golang.org/protobuf in go.mod
#   protoc-gen-go-grpc      v1.6.2 (module google.golang.org/grpc/cmd/protoc-gen-go-grpc)
#   protoc-gen-connect-go   the version of connectrpc.com/connect in go.mod
#   protoc-gen-es           2.17.0 (npm @bufbuild/protoc-gen-es), for browsers
#
# Outputs: fanoutv1 (messages and grpc-go services), fanoutv1/fanoutv1connect
# (Connect, gRPC and gRPC-Web services and clients of connectrpc.com/connect),
# and es/fanout/v1/fanout_pb.js with its .d.ts (messages and service
# descriptors for @bufbuild/protobuf and @connectrpc/connect-web).
set -eu

PROTOC_VERSION="libprotoc 3.21.12"
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
PROTOC_GEN_ES_VERSION=2.17.0

cd "$(dirname "$0")"
have=$(protoc --version 2>/dev/null || echo "no protoc")
if [ "$have" != "$PROTOC_VERSION" ]; then
	echo "gen.sh: want $PROTOC_VERSION (apt-get install protobuf-compiler), have: $have" >&2
	exit 1
fi
PROTOC_GEN_GO_VERSION=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
PROTOC_GEN_CONNECT_GO_VERSION=$(go list -m -f '{{.Version}}' connectrpc.com/connect)

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin GOFLAGS= go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
GOBIN=$bin GOFLAGS= go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
GOBIN=$bin GOFLAGS= go install "connectrpc.com/connect/cmd/protoc-gen-connect-go@$PROTOC_GEN_CONNECT_GO_VERSION"
npm install --prefix "$bin/es" --no-save --no-audit --no-fund --loglevel=error \
	"@bufbuild/protoc-gen-es@$PROTOC_GEN_ES_VERSION" >/dev/null

protoc -I proto \
	--plugin=protoc-gen-go="$bin/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
	--plugin=protoc-gen-connect-go="$bin/protoc-gen-connect-go" \
	--plugin=protoc-gen-es="$bin/es/node_modules/.bin/protoc-gen-es" \
	--go_out=. --go_opt=module=github.com/gofanout/fanout/transport/grpc \
	--go-grpc_out=. --go-grpc_opt=module=github.com/gofanout/fanout/transport/grpc \
	--connect-go_out=. --connect-go_opt=module=github.com/gofanout/fanout/transport/grpc \
	--es_out=es --es_opt=target=js+dts,import_extension=js \
	fanout/v1/fanout.proto
