package fanout_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
)

// postBody posts body as JSON with the service's token and returns the
// status and the decoded answer.
func postBody(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer svc")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	return resp.StatusCode, v
}

// TestPublishBodyStrict: the body's field names match exactly, a member
// given twice is refused, and the error names the client's field, never a
// Go type.
func TestPublishBodyStrict(t *testing.T) {
	t.Parallel()
	_, srv := publishServer(t, nil, nil)
	for _, tc := range []struct{ body, mention string }{
		{`{"TOPIC":"t","data":1}`, `"TOPIC"`},
		{`{"topic":"t","Data":1}`, `"Data"`},
		{`{"topic":"t","data":1,"Idempotency_Key":"k"}`, `"Idempotency_Key"`},
		{`{"topic":"t","topic":"u","data":1}`, `"topic"`},
		{`{"topic":"t","data":1,"data":2}`, `"data"`},
		{`{"topic":"t","data":1,"header":{"a":"x","a":"y"}}`, `"a"`},
		{`{"topic":7,"data":1}`, `"topic"`},
		{`{"topic":"t","data":1,"key":["k"]}`, `"key"`},
		{`{"topic":"t","data":1,"idempotency_key":5}`, `"idempotency_key"`},
		{`{"topic":"t","data":1,"header":{"a":1}}`, `"a"`},
	} {
		status, v := postBody(t, srv.URL, tc.body)
		e, _ := v["error"].(map[string]any)
		if status != http.StatusBadRequest || e == nil || e["code"] != "bad_request" {
			t.Errorf("%s: got %d %v, want 400 bad_request", tc.body, status, v)
			continue
		}
		msg, _ := e["message"].(string)
		if !strings.Contains(msg, tc.mention) || strings.Contains(msg, "Go ") || strings.Contains(msg, "struct") ||
			strings.Count(msg, "fanout:") > 1 {
			t.Errorf("%s: got message %q, want it to name %s in the client's terms, once", tc.body, msg, tc.mention)
		}
	}
}

// TestPublishBodyHeader: the body's header reaches the message.
func TestPublishBodyHeader(t *testing.T) {
	t.Parallel()
	h, srv := publishServer(t, nil, nil)
	sess, err := h.NewSession(fanout.Principal{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close(fanout.CloseNormal, "") })
	ctx := context.Background()
	if err := sess.Subscribe(ctx, fanout.SubscribeRequest{Topic: "traced"}); err != nil {
		t.Fatal(err)
	}
	status, v := postBody(t, srv.URL, `{"topic":"traced","data":1,"header":{"traceparent":"00-1"},"idempotency_key":"e1"}`)
	if status != http.StatusOK {
		t.Fatalf("got %d %v, want 200", status, v)
	}
	for {
		fs, err := sess.Next(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.Type == fanout.FrameMessage {
				if got := f.Message.Header["traceparent"]; got != "00-1" {
					t.Fatalf("got header %v, want traceparent 00-1", f.Message.Header)
				}
				return
			}
		}
	}
}
