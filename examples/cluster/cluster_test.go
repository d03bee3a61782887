package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
)

// newTestCluster starts three nodes on loopback with the given backplane,
// under a name of their own, and removes their data at the end.
func newTestCluster(t *testing.T, backplane string) *cluster {
	t.Helper()
	var b [5]byte
	rand.Read(b[:])
	cfg := config{
		Backplane: backplane,
		Addrs:     []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"},
		Name:      "cluster-test-" + hex.EncodeToString(b[:]),
	}
	switch backplane {
	case "nats":
		cfg.NATSURL = testenv.NATS(t)
		t.Cleanup(func() { deleteStreams(t, cfg) })
	case "redis":
		cfg.RedisAddr = testenv.Redis(t)
		t.Cleanup(func() { deleteKeys(t, cfg) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return c
}

func deleteStreams(t *testing.T, cfg config) {
	nc, err := nats.Connect(cfg.NATSURL)
	if err != nil {
		t.Errorf("connect: %v", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := strings.ToUpper(strings.ReplaceAll(cfg.Name, "-", "_"))
	for _, s := range []string{stream, stream + "_KEYS", stream + "_IDEM", stream + "_EXPIRE", stream + "_LIVE"} {
		if err := js.DeleteStream(ctx, s); err != nil {
			t.Errorf("delete stream %s: %v", s, err)
		}
	}
}

func deleteKeys(t *testing.T, cfg config) {
	rc := goredis.NewClient(&goredis.Options{Addr: cfg.RedisAddr})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The Redis backplane names its keys "{prefix:topic}:...".
	iter := rc.Scan(ctx, 0, "{"+cfg.Name+":*", 100).Iterator()
	for iter.Next(ctx) {
		rc.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("delete keys: %v", err)
	}
}

// TestScenario plays the example's scenario on each backplane: a client on
// one node receives what another publishes, leaves, and resumes on a third
// node with nothing lost or repeated.
func TestScenario(t *testing.T) {
	t.Parallel()
	for _, backplane := range []string{"nats", "redis"} {
		t.Run(backplane, func(t *testing.T) {
			t.Parallel()
			c := newTestCluster(t, backplane)
			var out bytes.Buffer
			if err := play(context.Background(), &out, c, "news"); err != nil {
				t.Fatalf("play: %v\n%s", err, out.String())
			}
			got := out.String()
			// Each delivery is "  client on NODE received EPOCH:SEQ DATA".
			var deliveries []string
			for _, line := range strings.Split(got, "\n") {
				if rest, ok := strings.CutPrefix(line, "  client on "); ok {
					node, rest, _ := strings.Cut(rest, " received ")
					_, seqData, _ := strings.Cut(rest, ":")
					deliveries = append(deliveries, node+" "+seqData)
				}
			}
			want := []string{
				`node-1 1 "update 1 from node-2"`,
				`node-1 2 "update 2 from node-2"`,
				`node-1 3 "update 3 from node-2"`,
				`node-3 4 "update 4 from node-3"`,
				`node-3 5 "update 5 from node-3"`,
				`node-3 6 "update 6 from node-1"`,
			}
			if !slices.Equal(deliveries, want) {
				t.Errorf("deliveries: got %q, want %q\n%s", deliveries, want, got)
			}
			if !strings.Contains(got, "nothing lost or repeated") {
				t.Errorf("output lacks the conclusion:\n%s", got)
			}
		})
	}
}

// TestPublishEndpoint: a publish posted to one node reaches a WebSocket
// client of another.
func TestPublishEndpoint(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, "nats")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.nodes[0].wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sub, err := cl.Subscribe(ctx, "posted", nil)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s/publish?topic=posted", c.nodes[1].ln.Addr())
	resp, err := http.Post(url, "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "published on node-2 at ") {
		t.Fatalf("POST /publish: got %d %q, want 200 and the position", resp.StatusCode, body)
	}
	m, err := nextMessage(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "hello" || m.Position.Seq != 1 {
		t.Fatalf("client on node-1: got %q at %v, want \"hello\" at Seq 1", m.Data, m.Position)
	}
	resp, err = http.Post(fmt.Sprintf("http://%s/publish?topic=bad.", c.nodes[1].ln.Addr()), "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("POST /publish to an invalid topic: got %d (%s), want 400 with the JSON error body", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, err = http.Get(fmt.Sprintf("http://%s/publish?topic=news", c.nodes[1].ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /publish: got %d (%s, Allow %q), want 405 with the JSON error body and Allow POST", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Allow"))
	}
}

func TestUnknownBackplane(t *testing.T) {
	t.Parallel()
	_, err := start(context.Background(), config{Backplane: "carrier-pigeon", Addrs: []string{"127.0.0.1:0"}})
	if err == nil || !strings.Contains(err.Error(), "unknown backplane") {
		t.Fatalf("start with an unknown backplane: got %v, want an error naming it", err)
	}
}

func TestOperationsEndpoints(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, "redis")
	base := fmt.Sprintf("http://%s", c.nodes[1].ln.Addr())
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Errorf("healthz: got %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("readyz: got %d %s", code, body)
	}
	resp, err := http.Post(base+"/publish?topic=ops", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, `fanout_published_messages_total{node="node-2"} 1`) ||
		!strings.Contains(body, `fanout_backplane_duration_seconds_count{node="node-2",op="ready"} 1`) {
		t.Errorf("metrics: got %d\n%s", code, body)
	}
}
