package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gofanout/fanout"
)

// Options configures a [Client]. The zero value is valid: every field
// documents its default. Dial copies the options.
type Options struct {
	// Token returns the bearer token to connect with, which the client
	// sends in the handshake's Authorization header. The client calls it
	// before every connection attempt, so it can refresh an expired token;
	// an error fails that attempt, which is retried after a backoff. When
	// the server says that the credentials expire, the client also calls
	// it RefreshMargin before, and refreshes them in place with a refresh
	// command: the connection and its subscriptions stay. Default: nil, no
	// token.
	Token func(ctx context.Context) (string, error)
	// RefreshMargin is how long before the credentials expire the client
	// refreshes them (half-way when less than twice that is left).
	// Default: 30s.
	RefreshMargin time.Duration
	// HTTPClient makes the WebSocket handshakes. Default:
	// http.DefaultClient.
	HTTPClient *http.Client
	// HTTPHeader is sent with every handshake. Default: none.
	HTTPHeader http.Header
	// URLs are more endpoints of the same cluster, such as one per node,
	// tried after the URL given to Dial. Each connection attempt goes to
	// the next endpoint in turn, after the usual backoff, so that a client
	// whose node is gone lands on another one and resumes every
	// subscription there; Dial tries each once before it fails. Default:
	// none, only Dial's URL.
	URLs []string

	// BackoffMin and BackoffMax bound the wait between reconnect attempts:
	// before the nth attempt the client waits a random time between zero
	// and min(BackoffMax, BackoffMin*2^(n-1)). Defaults: 250ms and 30s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// HealthyAfter is how long a connection must last for the next
	// reconnect to count as a first attempt again. Default: 10s.
	HealthyAfter time.Duration
	// PingInterval is how often the client pings the server; a server
	// that sends nothing for PingTimeout after a ping is taken as gone,
	// and the client reconnects. Negative disables pings. Default: 15s.
	PingInterval time.Duration
	// PingTimeout also bounds each write; each handshake may take
	// max(PingTimeout, 10s). Default: 10s.
	PingTimeout time.Duration

	// Buffer bounds the events each subscription holds for the
	// application (see [Subscription]). Default: 1024.
	Buffer int

	// OnStatus receives the client's statuses, in order, from a goroutine
	// of the client: a slow OnStatus delays only later statuses (which
	// queue meanwhile), and it may call the client's methods, except
	// Close, which waits for it to return. Default: none.
	OnStatus func(Status)
	// OnServerSubscribe receives the subscriptions that server code makes
	// for this client ([fanout.Hub.Subscribe]), from the client's
	// connection goroutine: it must not block (start a goroutine that
	// reads [Subscription.Next]). Such a subscription is an ordinary one
	// from then on: the first event is its snapshot when the server asked
	// for one, [Subscription.Close] unsubscribes it, and after a reconnect
	// the client resumes it as its own, which the server's authorizer
	// judges. When the server ends it ([fanout.Hub.Unsubscribe]), Next
	// returns the buffered events, then [ErrUnsubscribed]. Default: nil,
	// the client declines server-side subscriptions (it unsubscribes
	// them at once).
	OnServerSubscribe func(*Subscription)
}

func (o *Options) setDefaults() {
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 250 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.HealthyAfter <= 0 {
		o.HealthyAfter = 10 * time.Second
	}
	if o.PingInterval == 0 {
		o.PingInterval = 15 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 10 * time.Second
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	if o.RefreshMargin <= 0 {
		o.RefreshMargin = 30 * time.Second
	}
}

// minHandshakeTimeout is the least time a handshake gets, however short
// the ping timeout: a handshake may be slower than a ping (TLS, a busy
// server).
const minHandshakeTimeout = 10 * time.Second

// readLimit bounds one WebSocket message from the server, which may
// carry a batch of frames or a large snapshot.
const readLimit = 64 << 20

// Client is a connection to a fanout server over WebSocket that survives
// disconnections: it reconnects with backoff and resumes every
// subscription from its last position, so that the application sees each
// message once, in order. All its methods are safe for concurrent use.
//
// # Reconnecting
//
// After a lost connection the client waits a backoff (see
// [Options.BackoffMin]) and reconnects, to the next of its URLs (see
// [Options.URLs]), except after the server's close codes:
//
//   - [fanout.CloseShutdown] (the server is draining): reconnect at once,
//     with no wait, once; if that attempt fails, the usual backoff follows.
//   - [fanout.CloseUnauthorized], or HTTP 401 or 403 at the handshake: with
//     [Options.Token] set, reconnect after the usual backoff with a fresh
//     token; if that token is refused too, stop rather than hammer the
//     server with refused attempts. Without Token, stop at once: the same
//     credentials would be refused again.
//   - [fanout.CloseBadRequest], [fanout.CloseProtocol],
//     [fanout.CloseTooLarge]: stop, since retrying unchanged would fail
//     the same way.
//   - [fanout.CloseDisconnected], and an application's codes from 4500 to
//     4999: stop, since server code disconnected the client on purpose
//     ([fanout.Hub.Disconnect]). An application's codes from 4100 to 4499
//     reconnect after the backoff.
//
// Every other close ([fanout.CloseSlowConsumer], [fanout.CloseResync],
// [fanout.CloseRateLimited], ...) and every network error reconnects after
// the backoff. A stopped client reports why with [Client.Err], a
// [*CloseError] for a close code.
//
// # Resuming
//
// On every new connection the client subscribes each topic again with
// since set to the position of the last event it buffered, and drops
// messages whose Seq it already has. A message whose Seq does not follow
// the last one (or whose epoch changed) makes the client resubscribe the
// topic from its last position, so that the server fills the gap or
// reports that history is lost (an [EventReset]).
type Client struct {
	urls   []string // Dial's URL, then Options.URLs
	opts   Options
	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	ids    atomic.Uint64 // command ids
	notes  *notifier
	wg     sync.WaitGroup // the connection goroutine and the notifier
	done   chan struct{}  // closed when the client has stopped

	mu      sync.Mutex // guards inbox, stopped and err
	inbox   []request
	stopped bool
	err     error
	wake    chan struct{} // capacity 1: the inbox has requests
}

// request is what the application asks of the connection goroutine.
type request struct {
	op  requestOp
	sub *Subscription
	pub *publishRequest
}

type requestOp uint8

const (
	opSubscribe requestOp = iota + 1 // start sub
	opRemove                         // sub was closed
	opResume                         // sub's buffer drained: resubscribe
	opPublish                        // send pub
)

type publishRequest struct {
	seq       uint64 // orders publishes sent again after a reconnect
	id        string
	cmd       []byte
	res       chan publishResult // capacity 1
	cancelled atomic.Bool
	query     bool // a presence or presence_count command (presence.go)
}

type publishResult struct {
	pos      fanout.Position
	err      error
	presence []fanout.ClientInfo // replies to queries
	count    int
}

// Dial connects to the fanout WebSocket endpoint at url ("ws://" or
// "wss://"), or when that fails to each of [Options.URLs] in turn. It
// returns the outcome of those first attempts, which ctx bounds; after
// that the client reconnects by itself until [Client.Close].
func Dial(ctx context.Context, url string, opts *Options) (*Client, error) {
	c := &Client{done: make(chan struct{}), wake: make(chan struct{}, 1)}
	if opts != nil {
		c.opts = *opts
	}
	c.opts.setDefaults()
	c.urls = append([]string{url}, c.opts.URLs...)
	c.opts.URLs = nil
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.notes = newNotifier(c.opts.OnStatus)
	if c.opts.OnStatus != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.notes.run()
		}()
	}
	var (
		conn *websocket.Conn
		err  error
		at   int // the index in c.urls of the endpoint that answered
	)
	for i, u := range c.urls {
		c.notes.post(Status{Kind: StatusConnecting, Attempt: i + 1, URL: u})
		if conn, err = c.connect(ctx, u); err == nil {
			at = i
			break
		}
		err = fmt.Errorf("client: dial %s: %w", u, err)
		var ce *CloseError
		if ctx.Err() != nil || errors.As(err, &ce) {
			break // refused credentials would be refused by every node
		}
	}
	if err != nil {
		c.cancel()
		c.notes.close()
		c.wg.Wait()
		return nil, err
	}
	c.wg.Add(1)
	go c.run(conn, at)
	return c, nil
}

// connect makes one connection attempt to url.
func (c *Client) connect(ctx context.Context, url string) (*websocket.Conn, error) {
	h := c.opts.HTTPHeader.Clone()
	if h == nil {
		h = http.Header{}
	}
	if c.opts.Token != nil {
		tok, err := c.opts.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		if tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, max(c.opts.PingTimeout, minHandshakeTimeout))
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient: c.opts.HTTPClient,
		HTTPHeader: h,
	})
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return nil, &CloseError{Code: fanout.CloseUnauthorized, Reason: resp.Status}
		}
		return nil, err
	}
	conn.SetReadLimit(readLimit)
	return conn, nil
}

// Subscribe subscribes to topic and returns once the server has accepted
// the subscription; its events then come from [Subscription.Next]. While
// the client is reconnecting, Subscribe waits for the connection. It
// fails with [ErrAlreadySubscribed] when the client has a subscription to
// topic, with a [*ServerError] when the server refuses (errors.Is matches
// [fanout.ErrForbidden], [fanout.ErrInvalidTopic], ...), with ctx's error,
// or with the client's error once it has stopped.
func (c *Client) Subscribe(ctx context.Context, topic string, opts *SubscribeOptions) (*Subscription, error) {
	if err := fanout.ValidateTopic(topic); err != nil {
		return nil, fmt.Errorf("client: subscribe: %w", err)
	}
	s := newSubscription(c, topic, opts)
	if err := c.post(request{op: opSubscribe, sub: s}); err != nil {
		return nil, fmt.Errorf("client: subscribe %q: %w", topic, err)
	}
	select {
	case <-s.ready:
		if s.readyErr != nil {
			return nil, fmt.Errorf("client: subscribe %q: %w", topic, s.readyErr)
		}
		return s, nil
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

// Close closes the connection and ends every subscription ([ErrClosed]).
// It returns after the client's goroutines have ended. Close is
// idempotent.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// Done is closed when the client has stopped: after Close, or when it gave
// up reconnecting.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped: nil while it runs, [ErrClosed] after
// Close, or the reason it gave up, such as a [*CloseError] with
// [fanout.CloseUnauthorized].
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) newID() string { return newID(c.ids.Add(1)) }

// post hands r to the connection goroutine; it never blocks.
func (c *Client) post(r request) error {
	c.mu.Lock()
	if c.stopped {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.inbox = append(c.inbox, r)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// takeInbox returns the pending requests.
func (c *Client) takeInbox() []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.inbox
	c.inbox = nil
	return r
}

// stop marks the client stopped with err and returns the requests it will
// never serve.
func (c *Client) stop(err error) []request {
	c.mu.Lock()
	c.stopped = true
	c.err = err
	r := c.inbox
	c.inbox = nil
	c.mu.Unlock()
	close(c.done)
	return r
}

var errPingTimeout = errors.New("client: server did not answer a ping in time")
