// Package js serves fanout's browser client, fanout.js (a dependency-free ES
// module), and its TypeScript declarations, fanout.d.ts, from the same
// server as the WebSocket and SSE endpoints, so that a page needs no build
// step and no third-party host:
//
//	mux.Handle("/fanout.js", js.Handler())
//
// and, in the page:
//
//	<script type="module">
//	  import { connect } from '/fanout.js';
//	</script>
//
// The handler serves by the last element of the request path: "fanout.js"
// or "fanout.d.ts", so it may also be mounted on a directory prefix
// ("/static/" serves "/static/fanout.js").
package js

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"path"
	"time"
)

//go:embed fanout.js
var script []byte

//go:embed fanout.d.ts
var types []byte

type asset struct {
	name        string
	body        []byte
	contentType string
	etag        string
}

func newAsset(name string, body []byte, contentType string) asset {
	sum := sha256.Sum256(body)
	return asset{
		name:        name,
		body:        body,
		contentType: contentType,
		etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
	}
}

var assets = map[string]asset{
	"fanout.js":   newAsset("fanout.js", script, "text/javascript; charset=utf-8"),
	"fanout.d.ts": newAsset("fanout.d.ts", types, "application/typescript; charset=utf-8"),
}

// Handler returns an http.Handler that serves fanout.js and fanout.d.ts. It
// answers GET and HEAD, with a strong ETag (the content's hash) and
// "Cache-Control: no-cache", so browsers keep the file but revalidate it:
// an unchanged file costs a 304, an upgraded library is picked up at once.
// Other paths get 404, other methods 405. The handler is safe for
// concurrent use.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[path.Base(r.URL.Path)]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers If-None-Match, If-Match and ranges from the ETag.
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}
