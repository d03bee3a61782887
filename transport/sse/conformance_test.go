package sse_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/sse"
	"github.com/gofanout/fanout/transport/transporttest"
)

// TestConformance runs the transport suite over HTTP/1.1 and over HTTP/2
// (with TLS, as browsers speak it).
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP1", true: "HTTP2"}[h2], func(t *testing.T) {
			t.Parallel()
			transporttest.Run(t, func(t *testing.T, hub *fanout.Hub) transporttest.Transport {
				return newTransport(t, sse.New(hub, nil), h2)
			}, transporttest.Features{})
		})
	}
}

// transport serves a handler on a loopback server, over HTTP/1.1 or, with
// h2, over HTTP/2 with TLS.
type transport struct {
	t      *testing.T
	url    string
	client *http.Client
}

func newTransport(t *testing.T, h http.Handler, h2 bool) *transport {
	srv := httptest.NewUnstartedServer(h)
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	client := srv.Client()
	t.Cleanup(client.CloseIdleConnections)
	return &transport{t: t, url: srv.URL, client: client}
}

// open starts a stream: it returns the response of any status.
func (tr *transport) open(ctx context.Context, rawURL string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return tr.client.Do(req)
}

func (tr *transport) Dial(ctx context.Context, o transporttest.DialOptions) (transporttest.Client, error) {
	var topics []string
	since := map[string]fanout.Position{}
	extra := url.Values{}
	for _, s := range o.Subscriptions {
		topics = append(topics, s.Topic)
		if s.Since != nil {
			since[s.Topic] = *s.Since
		}
		if s.Snapshot {
			extra.Set("snapshot", "1")
		}
	}
	if len(since) > 0 {
		extra.Set("since", sse.EncodeCursor(topics, since))
	}
	h := http.Header{}
	if o.Token != "" {
		h.Set("Authorization", "Bearer "+o.Token)
	}
	// The stream outlives Dial's ctx: Close ends it.
	connCtx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	resp, err := tr.open(connCtx, streamURL(tr.url, topics, extra), h)
	stop()
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		// The refusal's body is read before the request's context ends:
		// a cancelled HTTP/2 stream drops what it has not read yet.
		err := refusal(resp)
		cancel()
		return nil, err
	}
	return startClient(resp, cancel), nil
}

// BadInputs are the malformed requests of the SSE transport.
func (tr *transport) BadInputs() []transporttest.BadInput {
	get := func(query string, header http.Header) func(ctx context.Context) (transporttest.Event, error) {
		return func(ctx context.Context) (transporttest.Event, error) {
			resp, err := tr.open(ctx, tr.url+query, header)
			if err != nil {
				return transporttest.Event{}, err
			}
			if resp.StatusCode == http.StatusOK {
				resp.Body.Close()
				tr.t.Errorf("%s: got status 200, want a refusal", query)
				return transporttest.Event{}, nil
			}
			return transporttest.Event{}, refusal(resp)
		}
	}
	leid := func(id string) http.Header { return http.Header{"Last-Event-Id": {id}} }
	other := sse.EncodeCursor([]string{"x", "y"}, map[string]fanout.Position{"x": {Epoch: "e", Seq: 3}})
	valid := sse.EncodeCursor([]string{"a"}, map[string]fanout.Position{"a": {Epoch: "e", Seq: 3}})
	return []transporttest.BadInput{
		{Name: "NoTopic", Want: fanout.ErrBadRequest, Send: get("", nil)},
		{Name: "InvalidTopic", Want: fanout.ErrInvalidTopic, Send: get("?topic=a&topic=.hidden", nil)},
		{Name: "TopicTooLong", Want: fanout.ErrInvalidTopic, Send: get("?topic="+strings.Repeat("t", 201), nil)},
		{Name: "BadEscape", Want: fanout.ErrBadRequest, Send: get("?topic=%zz", nil)},
		{Name: "BadSnapshotFlag", Want: fanout.ErrBadRequest, Send: get("?topic=a&snapshot=maybe", nil)},
		{Name: "GarbageCursor", Want: fanout.ErrBadRequest, Send: get("?topic=a", leid("not a cursor!"))},
		{Name: "OtherTopicsCursor", Want: fanout.ErrBadRequest, Send: get("?topic=a", leid(other))},
		{Name: "TruncatedCursor", Want: fanout.ErrBadRequest, Send: get("?topic=a", leid(valid[:len(valid)-2]))},
		{Name: "HugeCursor", Want: fanout.ErrBadRequest, Send: get("?topic=a", leid(strings.Repeat("A", 20000)))},
		{Name: "BadSinceParam", Want: fanout.ErrBadRequest, Send: get("?topic=b&since="+valid, nil)},
		{Name: "Post", Want: fanout.ErrBadRequest, Send: func(ctx context.Context) (transporttest.Event, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tr.url+"?topic=a", strings.NewReader("x"))
			resp, err := tr.client.Do(req)
			if err != nil {
				return transporttest.Event{}, err
			}
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
				tr.t.Errorf("POST: got status %d Allow %q, want 405 Allow GET", resp.StatusCode, resp.Header.Get("Allow"))
			}
			return transporttest.Event{}, refusal(resp)
		}},
	}
}
