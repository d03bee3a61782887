package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

func TestOperationsEndpoints(t *testing.T) {
	ts := newTestServer(t, config{Token: "s3cret"})
	if r := ts.do(t, "GET", "/healthz", "", nil); r.status != 200 {
		t.Errorf("healthz: got %d", r.status)
	}
	if r := ts.do(t, "GET", "/readyz", "", nil); r.status != 200 {
		t.Errorf("readyz: got %d %s", r.status, r.body)
	}

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":"1","type":"subscribe","topic":"inventory.SKU-1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	m := ts.do(t, "GET", "/metrics", "", nil)
	for _, want := range []string{`fanout_connections{transport="websocket"} 1`, `fanout_subscribes_total 1`, "go_goroutines"} {
		if !strings.Contains(m.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if r := ts.do(t, "GET", "/inspect", "", nil); r.status != 401 {
		t.Errorf("inspect without token: got %d, want 401", r.status)
	}
	r := ts.do(t, "GET", "/inspect", "", map[string]string{"Authorization": "Bearer s3cret"})
	if r.status != 200 {
		t.Fatalf("inspect: got %d %s", r.status, r.body)
	}
	var got struct {
		Sessions struct{ Count int }
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || got.Sessions.Count != 1 {
		t.Errorf("inspect: got %s, want one session", r.body)
	}

	ts.hub.Shutdown(ctx)
	if r := ts.do(t, "GET", "/readyz", "", nil); r.status != 503 {
		t.Errorf("readyz after shutdown: got %d, want 503", r.status)
	}
}

func TestCheckAuth(t *testing.T) {
	if err := checkAuth("", false); err == nil {
		t.Error("no token and not insecure: started")
	}
	if err := checkAuth("", true); err != nil {
		t.Errorf("insecure: %v", err)
	}
	if err := checkAuth("t", false); err != nil {
		t.Errorf("token: %v", err)
	}
}
