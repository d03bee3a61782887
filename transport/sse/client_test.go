package sse_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/transporttest"
)

// event is one dispatched Server-Sent Event, as a browser sees it.
type event struct {
	Name string // the event field; "message" when absent
	ID   string // the last event id after this event
	Data string
}

// eventReader parses text/event-stream as the HTML standard says, keeping
// the last event id across events like EventSource does: an id field sets
// the id buffer, which becomes the last event id only when its event is
// dispatched (at the blank line), so that an event cut off in the middle
// does not count.
type eventReader struct {
	r      *bufio.Reader
	idBuf  string
	lastID string
	retry  string // the last retry field
	// cut is set when the stream ended in the middle of an event.
	cut bool
}

func newEventReader(r io.Reader, lastID string) *eventReader {
	return &eventReader{r: bufio.NewReader(r), idBuf: lastID, lastID: lastID}
}

// next returns the next dispatched event. Comments and fields of an event
// that is cut off before its blank line are not dispatched: the error is
// then io.EOF or the read error.
func (er *eventReader) next() (event, error) {
	var name string
	var data strings.Builder
	hasData, pending := false, false
	for {
		line, err := er.r.ReadString('\n')
		if err != nil {
			er.cut = pending || line != ""
			return event{}, err
		}
		pending = true
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			er.lastID = er.idBuf
			pending = false
			if !hasData {
				name = ""
				continue
			}
			if name == "" {
				name = "message"
			}
			return event{Name: name, ID: er.lastID, Data: strings.TrimSuffix(data.String(), "\n")}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			name = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !strings.Contains(value, "\x00") {
				er.idBuf = value
			}
		case "retry":
			er.retry = value
		}
	}
}

// streamURL returns the URL of a stream of topics.
func streamURL(base string, topics []string, extra url.Values) string {
	q := url.Values{}
	for _, t := range topics {
		q.Add("topic", t)
	}
	for k, v := range extra {
		q[k] = v
	}
	return base + "?" + q.Encode()
}

// refusal turns a non-200 answer into an error matching the fanout
// sentinel of its error code.
func refusal(resp *http.Response) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("status %d with a body that is not a JSON error: %q", resp.StatusCode, body)
	}
	want := map[int][]string{
		http.StatusBadRequest:         {"bad_request", "invalid_topic", "too_many_subscriptions", "already_subscribed"},
		http.StatusMethodNotAllowed:   {"bad_request"},
		http.StatusUnauthorized:       {"unauthenticated"},
		http.StatusForbidden:          {"forbidden"},
		http.StatusServiceUnavailable: {"closed", "unavailable"},
	}[resp.StatusCode]
	for _, code := range want {
		if code == e.Error.Code {
			return fmt.Errorf("status %d: %w: %s", resp.StatusCode, sentinels[code], e.Error.Message)
		}
	}
	return fmt.Errorf("status %d with error code %q", resp.StatusCode, e.Error.Code)
}

var sentinels = map[string]error{
	"bad_request":            fanout.ErrBadRequest,
	"invalid_topic":          fanout.ErrInvalidTopic,
	"too_many_subscriptions": fanout.ErrTooManySubscriptions,
	"already_subscribed":     fanout.ErrAlreadySubscribed,
	"unauthenticated":        fanout.ErrUnauthenticated,
	"forbidden":              fanout.ErrForbidden,
	"closed":                 fanout.ErrClosed,
	"unavailable":            fanout.ErrUnavailable,
}

// sseClient is an open stream as a transporttest.Client: a goroutine reads
// events and hands them over one at a time, so that a client that does not
// call Next stops reading the connection.
type sseClient struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan result
	done   chan struct{} // closed by Close
	exited chan struct{} // closed when the reader goroutine ends
	once   sync.Once
	ended  bool // the close event was returned: EOF must follow; owned by Next
}

type result struct {
	ev  transporttest.Event
	raw event
	err error
}

func startClient(resp *http.Response, cancel context.CancelFunc) *sseClient {
	c := &sseClient{resp: resp, cancel: cancel, events: make(chan result), done: make(chan struct{}), exited: make(chan struct{})}
	go c.read()
	return c
}

func (c *sseClient) read() {
	defer close(c.exited)
	er := newEventReader(c.resp.Body, "")
	for {
		raw, err := er.next()
		var r result
		switch {
		case err != nil:
			r.err = err
		case raw.Name == "msg" || raw.Name == "reply" || raw.Name == "snapshot" || raw.Name == "close":
			r.ev, r.err = transporttest.ParseJSON([]byte(raw.Data))
			r.raw = raw
			if r.err == nil && r.ev.Type.String() != raw.Name {
				r.err = fmt.Errorf("event %q carries a %s frame", raw.Name, r.ev.Type)
			}
		default:
			r.err = fmt.Errorf("unexpected event %q", raw.Name)
		}
		select {
		case c.events <- r:
		case <-c.done:
			return
		}
		if r.err != nil {
			return
		}
	}
}

func (c *sseClient) Next(ctx context.Context) (transporttest.Event, error) {
	select {
	case r, ok := <-c.events:
		if !ok {
			return transporttest.Event{}, errors.New("sse client: closed")
		}
		if c.ended {
			if r.err == io.EOF {
				return transporttest.Event{}, io.EOF
			}
			return transporttest.Event{}, fmt.Errorf("after the close event: got %+v, %v; want the end of the stream", r.ev, r.err)
		}
		if r.err == io.EOF {
			return transporttest.Event{}, errors.New("stream ended without a close event")
		}
		c.ended = r.err == nil && r.ev.Type == transporttest.EventClose
		return r.ev, r.err
	case <-c.done:
		return transporttest.Event{}, errors.New("sse client: closed")
	case <-c.exited:
		return transporttest.Event{}, errors.New("sse client: reader ended")
	case <-ctx.Done():
		return transporttest.Event{}, ctx.Err()
	}
}

func (c *sseClient) Subscribe(context.Context, string, transporttest.Subscription) error {
	return transporttest.ErrUnsupported
}

func (c *sseClient) Unsubscribe(context.Context, string, string) error {
	return transporttest.ErrUnsupported
}

func (c *sseClient) Publish(context.Context, string, string, []byte) error {
	return transporttest.ErrUnsupported
}

func (c *sseClient) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.cancel()
		c.resp.Body.Close()
	})
	<-c.exited
	return nil
}

// bodyOf returns the first bytes of a stream, for tests that look at the
// exact text.
func bodyOf(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes of the stream: %v", n, err)
	}
	return string(bytes.Clone(b))
}
