package js_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/gofanout/fanout/client/js"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/fanout.js", js.Handler())
	mux.Handle("/static/", js.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

func TestHandlerServesTheFiles(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	cases := []struct {
		path, file, contentType string
	}{
		{"/fanout.js", "fanout.js", "text/javascript; charset=utf-8"},
		{"/static/fanout.js", "fanout.js", "text/javascript; charset=utf-8"},
		{"/static/fanout.d.ts", "fanout.d.ts", "application/typescript; charset=utf-8"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			t.Parallel()
			want, err := os.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			res, body := do(t, http.MethodGet, srv.URL+c.path, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status: got %d, want 200", res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); got != c.contentType {
				t.Errorf("Content-Type: got %q, want %q", got, c.contentType)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control: got %q, want no-cache", got)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options: got %q, want nosniff", got)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("body: got %d bytes, want the %d bytes of %s", len(body), len(want), c.file)
			}
			etag := res.Header.Get("ETag")
			if len(etag) < 10 || !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) {
				t.Fatalf("ETag: got %q, want a strong quoted tag", etag)
			}
			res, body = do(t, http.MethodGet, srv.URL+c.path, map[string]string{"If-None-Match": etag})
			if res.StatusCode != http.StatusNotModified || len(body) != 0 {
				t.Errorf("revalidation: got %d with %d bytes, want 304 with none", res.StatusCode, len(body))
			}
			res, _ = do(t, http.MethodGet, srv.URL+c.path, map[string]string{"If-None-Match": `"stale"`})
			if res.StatusCode != http.StatusOK {
				t.Errorf("stale ETag: got %d, want 200", res.StatusCode)
			}
			res, body = do(t, http.MethodHead, srv.URL+c.path, nil)
			if res.StatusCode != http.StatusOK || len(body) != 0 || res.Header.Get("ETag") != etag {
				t.Errorf("HEAD: got %d with %d bytes and ETag %q, want 200, none, %q", res.StatusCode, len(body), res.Header.Get("ETag"), etag)
			}
		})
	}
}

func TestHandlerRejects(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	cases := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/static/other.js", http.StatusNotFound},
		{http.MethodGet, "/static/", http.StatusNotFound},
		{http.MethodPost, "/fanout.js", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/static/fanout.d.ts", http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		res, _ := do(t, c.method, srv.URL+c.path, nil)
		if res.StatusCode != c.want {
			t.Errorf("%s %s: got %d, want %d", c.method, c.path, res.StatusCode, c.want)
		}
		if c.want == http.StatusMethodNotAllowed && res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow: got %q, want %q", c.method, c.path, res.Header.Get("Allow"), "GET, HEAD")
		}
	}
}
