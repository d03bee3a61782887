package fanoutgrpc_test

import (
	"os"
	"regexp"
	"testing"
)

// TestGeneratedCodeVersions checks that the committed code was generated
// by the tools gen.sh pins: protoc-gen-go at the version of
// google.golang.org/protobuf in go.mod, and the protoc-gen-go-grpc,
// protoc-gen-es and protoc versions gen.sh names. (protoc-gen-connect-go
// names no version in its output; CI regenerates the code instead.)
func TestGeneratedCodeVersions(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile("gen.sh")
	if err != nil {
		t.Fatal(err)
	}
	find := func(b []byte, re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no match for %s", re)
		}
		return string(m[1])
	}
	wantGRPC := find(script, `PROTOC_GEN_GO_GRPC_VERSION=(v\S+)`)
	wantES := find(script, `PROTOC_GEN_ES_VERSION=(\S+)`)
	wantProtoc := find(script, `PROTOC_VERSION="libprotoc (\S+)"`)
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	wantGo := find(gomod, `(?m)^\s*google\.golang\.org/protobuf (v\S+)`)

	pb, err := os.ReadFile("fanoutv1/fanout.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	grpcPB, err := os.ReadFile("fanoutv1/fanout_grpc.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadFile("es/fanout/v1/fanout_pb.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"protoc-gen-es", find(es, `protoc-gen-es v(\S+)`), wantES},
		{"protoc-gen-go", find(pb, `protoc-gen-go (v\S+)`), wantGo},
		{"protoc (fanout.pb.go)", find(pb, `protoc +v(\S+)`), wantProtoc},
		{"protoc-gen-go-grpc", find(grpcPB, `protoc-gen-go-grpc (v\S+)`), wantGRPC},
		{"protoc (fanout_grpc.pb.go)", find(grpcPB, `protoc +v(\S+)`), wantProtoc},
	} {
		if c.got != c.want {
			t.Errorf("%s: generated with %s, want %s: run go generate", c.name, c.got, c.want)
		}
	}
}
