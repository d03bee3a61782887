package metrics_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCollector(t *testing.T) {
	c := metrics.New(&metrics.Options{ConstLabels: prometheus.Labels{"replica": "a"}})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	h, err := fanout.NewHub(&fanout.HubOptions{Observer: c})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	s, err := h.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(ctx, "t", []byte("12345")); err != nil {
		t.Fatal(err)
	}
	s.Close(fanout.CloseSlowConsumer, "")
	want := `
# HELP fanout_deliveries_total Messages handed to local subscriptions.
# TYPE fanout_deliveries_total counter
fanout_deliveries_total{replica="a"} 1
# HELP fanout_published_bytes_total Payload bytes published through this hub.
# TYPE fanout_published_bytes_total counter
fanout_published_bytes_total{replica="a"} 5
# HELP fanout_session_closes_total Sessions closed, by close code (4001 is a slow consumer).
# TYPE fanout_session_closes_total counter
fanout_session_closes_total{code="4001",replica="a"} 1
# HELP fanout_sessions Sessions currently open.
# TYPE fanout_sessions gauge
fanout_sessions{replica="a"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"fanout_deliveries_total", "fanout_published_bytes_total", "fanout_session_closes_total", "fanout_sessions"); err != nil {
		t.Fatal(err)
	}
}
