package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gofanout/fanout"
)

// Steps are the steps of a booking, in the order they run. Compensation
// runs the confirmed ones in reverse.
var Steps = []string{"flight", "hotel", "car"}

// SagaKey is the key of the messages that carry the state of the saga as a
// whole; every other key is a step's name.
const SagaKey = "saga"

// Status is the state of a step or of the saga.
type Status string

// Statuses of a step.
const (
	StatusPending      Status = "pending"      // not started yet
	StatusBooking      Status = "booking"      // its action runs
	StatusConfirmed    Status = "confirmed"    // its action succeeded
	StatusFailed       Status = "failed"       // its action (or its compensation) failed
	StatusSkipped      Status = "skipped"      // never ran, because an earlier step failed
	StatusCompensating Status = "compensating" // its compensation runs
	StatusCompensated  Status = "compensated"  // its compensation succeeded
)

// Statuses of the saga (key [SagaKey]). Completed, compensated and failed
// are final: the message that carries one is the topic's last, with
// Final set, published with [fanout.WithFinal] so that the server ends the
// streams that follow the topic.
const (
	StatusRunning   Status = "running"   // steps are running
	StatusCompleted Status = "completed" // every step is confirmed
	// StatusCompensated: a step failed and every confirmed step was
	// compensated (the same word as a step's).
	// StatusFailed: a compensation failed, or the saga was interrupted
	// (the same word as a step's).
)

// Update is the JSON payload of every message of a saga's topic.
type Update struct {
	// Tx is the saga's transaction id.
	Tx string `json:"tx"`
	// Step is the step's name, or [SagaKey] for the saga itself. It is also
	// the message's key, so that a topic's snapshot holds the current state
	// of every step and of the saga.
	Step   string `json:"step"`
	Status Status `json:"status"`
	// Detail is a human-readable sentence, such as "hotel failed: no rooms".
	Detail string `json:"detail,omitempty"`
	// Steps lists the steps in order; it is set on the saga's messages, so
	// that a client can lay them out from the snapshot alone.
	Steps []string `json:"steps,omitempty"`
	// Final marks the saga's last message: a follower stops there. The
	// message is also published with [fanout.WithFinal], the mark the
	// transports read: SSE streams and gRPC Subscribe calls end after it.
	Final bool `json:"final,omitempty"`
}

// Topic returns the topic of transaction tx.
func Topic(tx string) string { return "saga." + tx }

// Booking is a request for a trip.
type Booking struct {
	// Fail names a step whose action fails, to show a compensation.
	// Empty: every step succeeds.
	Fail string `json:"fail,omitempty"`
	// Subscribe asks the server to subscribe the WebSocket sessions of the
	// booking's user (Owner), on every replica, to the saga's topic, with
	// its snapshot: a server-side subscription ([fanout.Hub.Subscribe]),
	// so that the user's pages get the progress without subscribing by
	// topic name. SSE and gRPC streams follow a topic they name, and are
	// not touched.
	Subscribe bool `json:"subscribe,omitempty"`
	// Owner is the user who books ("" for none), from the request's
	// credentials ([Options.User]), never from its body.
	Owner string `json:"-"`
}

// Action is one action of a saga: a step's booking, or its compensation.
type Action struct {
	Tx         string
	Step       string
	Compensate bool
}

// ErrClosed is returned by [Engine.Start] once the engine is shutting down.
var ErrClosed = errors.New("saga: closed")

// ErrUnknownStep is returned by [Engine.Start] for a [Booking.Fail] that
// names no step.
var ErrUnknownStep = errors.New("saga: unknown step")

// Options configures an [Engine]. Hub is required; the other fields may be
// left zero. New copies the options.
type Options struct {
	// Hub is where the saga's updates are published.
	Hub *fanout.Hub
	// Latency is how long each action takes (a simulated remote call).
	// Default: 0, every action is instant.
	Latency time.Duration
	// Before, when set, is called before each action starts; when it
	// returns an error, the action fails with it. It lets a caller inject
	// failures or hold a saga at a known point. Default: none.
	Before func(ctx context.Context, a Action) error
	// Logger receives one line per saga. Default: logs are discarded.
	Logger *slog.Logger
	// Token, when set, gives the token that follows a transaction; POST
	// /bookings answers it as "token". Default: none, no token.
	Token func(tx string) string
	// User, when set, names the user who sent a booking request, "" for
	// none: the booking's [Booking.Owner]. Default: none.
	User func(r *http.Request) string
}

// Engine runs sagas, each in its own goroutine, and publishes the status of
// every step to the saga's topic. It also serves POST requests that start
// bookings. All its methods are safe for concurrent use.
type Engine struct {
	opts Options

	mu      sync.Mutex // guards closing and cancels
	closing bool
	cancels map[string]context.CancelFunc
	owners  map[string]string // tx → Booking.Owner, of the running sagas that have one

	wg sync.WaitGroup // the running sagas
}

// New returns an engine that publishes to opts.Hub.
func New(opts *Options) *Engine {
	e := &Engine{cancels: make(map[string]context.CancelFunc), owners: make(map[string]string)}
	if opts != nil {
		e.opts = *opts
	}
	if e.opts.Hub == nil {
		panic("saga: Options.Hub is required")
	}
	if e.opts.Logger == nil {
		e.opts.Logger = slog.New(slog.DiscardHandler)
	}
	return e
}

// Start starts a saga for b and returns its transaction id. Before it
// returns, the saga's topic already holds the state of every step
// (pending) and of the saga (running), so that a subscriber asking for the
// snapshot never starts from nothing. The saga itself runs in the
// background, until it ends or the engine closes.
func (e *Engine) Start(ctx context.Context, b Booking) (string, error) {
	if b.Fail != "" && !slices.Contains(Steps, b.Fail) {
		return "", fmt.Errorf("%w: %q (steps are %v)", ErrUnknownStep, b.Fail, Steps)
	}
	var id [8]byte
	rand.Read(id[:])
	tx := hex.EncodeToString(id[:])

	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return "", ErrClosed
	}
	sagaCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancels[tx] = cancel
	if b.Owner != "" {
		e.owners[tx] = b.Owner
	}
	e.wg.Add(1)
	e.mu.Unlock()

	r := &sagaRun{e: e, tx: tx, fail: b.Fail}
	err := r.publishInitial(ctx)
	if err != nil {
		e.finish(tx)
		return "", err
	}
	if b.Subscribe && b.Owner != "" {
		// Before the saga runs: the snapshot holds every step pending, and
		// every later update arrives live. A failure (a backplane that
		// cannot reach the other replicas) leaves the booking running; the
		// page may still follow its topic.
		if err := e.opts.Hub.Subscribe(ctx, b.Owner, Topic(tx), &fanout.ServerSubscribeOptions{Snapshot: true}); err != nil {
			e.opts.Logger.Warn("server-side subscription", "tx", tx, "user", b.Owner, "err", err)
		}
	}
	go func() {
		defer e.finish(tx)
		r.run(sagaCtx)
	}()
	return tx, nil
}

// finish forgets a saga that ended.
func (e *Engine) finish(tx string) {
	e.mu.Lock()
	cancel := e.cancels[tx]
	delete(e.cancels, tx)
	delete(e.owners, tx)
	e.mu.Unlock()
	cancel()
	e.wg.Done()
}

// Owner returns the user who started the running saga tx ("" when it has
// none, or ended).
func (e *Engine) Owner(tx string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.owners[tx]
}

// Shutdown refuses new sagas and waits for the running ones to end. When
// ctx ends first, it interrupts them as [Engine.Close] does and returns
// ctx's error.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		e.Close()
		<-done
		return ctx.Err()
	}
}

// Close refuses new sagas, interrupts the running ones and returns once
// their goroutines are gone. An interrupted saga publishes a final
// "failed" status; its confirmed steps are not compensated (a saga
// persisted in a database would be resumed elsewhere instead).
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closing = true
	cancels := make([]context.CancelFunc, 0, len(e.cancels))
	for _, c := range e.cancels {
		cancels = append(cancels, c)
	}
	e.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	e.wg.Wait()
	return nil
}

// ServeHTTP starts a booking on POST and answers 202 Accepted with
// {"tx": …, "topic": …, "steps": […]}. The failure to inject comes from a
// JSON body {"fail": "hotel"} or from the query parameter fail=hotel.
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fanout.WriteError(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: method %s, use POST", fanout.ErrBadRequest, r.Method))
		return
	}
	b := Booking{Fail: r.URL.Query().Get("fail")}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<10))
	if err != nil {
		fanout.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body larger than 1 KiB", fanout.ErrTooLarge))
		return
	}
	if len(body) > 0 {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			fanout.WriteError(w, http.StatusUnsupportedMediaType, fmt.Errorf("%w: the body must be application/json", fanout.ErrBadRequest))
			return
		}
		var jb Booking
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		if err := d.Decode(&jb); err != nil {
			fanout.WriteError(w, http.StatusBadRequest, fmt.Errorf("%w: bad booking: %v", fanout.ErrBadRequest, err))
			return
		}
		if jb.Fail != "" {
			b.Fail = jb.Fail
		}
		b.Subscribe = jb.Subscribe
	}
	if e.opts.User != nil {
		b.Owner = e.opts.User(r)
	}
	tx, err := e.Start(r.Context(), b)
	switch {
	case errors.Is(err, ErrUnknownStep):
		fanout.WriteError(w, http.StatusBadRequest, fmt.Errorf("%w: %v", fanout.ErrBadRequest, err))
		return
	case errors.Is(err, ErrClosed), errors.Is(err, fanout.ErrClosed):
		fanout.WriteError(w, http.StatusServiceUnavailable, fmt.Errorf("%w: shutting down", fanout.ErrClosed))
		return
	case err != nil:
		e.opts.Logger.Error("start booking", "err", err)
		fanout.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	var token string
	if e.opts.Token != nil {
		token = e.opts.Token(tx)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(struct {
		Tx    string   `json:"tx"`
		Topic string   `json:"topic"`
		Steps []string `json:"steps"`
		Token string   `json:"token,omitempty"`
	}{tx, Topic(tx), Steps, token})
}

// sagaRun is one saga.
type sagaRun struct {
	e    *Engine
	tx   string
	fail string
}

func (r *sagaRun) publish(ctx context.Context, u Update) error {
	u.Tx = r.tx
	data, err := json.Marshal(u)
	if err != nil {
		return err
	}
	opts := []fanout.PublishOption{fanout.WithKey(u.Step)}
	if u.Final {
		// The topic's last message: the server ends the streams that
		// follow it, and the key keeps it in the snapshot, so that a late
		// subscriber's stream ends right after the snapshot.
		opts = append(opts, fanout.WithFinal())
	}
	_, err = r.e.opts.Hub.Publish(ctx, Topic(r.tx), data, opts...)
	return err
}

func (r *sagaRun) publishInitial(ctx context.Context) error {
	for _, s := range Steps {
		if err := r.publish(ctx, Update{Step: s, Status: StatusPending, Detail: s + " pending"}); err != nil {
			return err
		}
	}
	return r.publish(ctx, Update{Step: SagaKey, Status: StatusRunning, Detail: "booking started", Steps: Steps})
}

// run books every step, and on a failure compensates the confirmed ones in
// reverse order. It ends with the saga's final message.
func (r *sagaRun) run(ctx context.Context) {
	log := r.e.opts.Logger.With("tx", r.tx)
	final, err := r.steps(ctx)
	if err != nil {
		// Interrupted (Close) or the hub refused a publish: say so, if the
		// hub still listens, so that followers do not wait forever.
		log.Warn("saga interrupted", "err", err)
		reason := err.Error()
		if errors.Is(err, context.Canceled) {
			reason = "the server stopped"
		}
		final = Update{Step: SagaKey, Status: StatusFailed, Detail: "booking interrupted: " + reason}
	}
	final.Steps, final.Final = Steps, true
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.publish(pctx, final); err != nil {
		log.Error("publish final status", "err", err)
		return
	}
	log.Info("saga ended", "status", final.Status)
}

// steps runs the saga and returns its final update. An error means the saga
// was interrupted.
func (r *sagaRun) steps(ctx context.Context) (Update, error) {
	var done []string // confirmed steps
	for i, s := range Steps {
		if err := r.publish(ctx, Update{Step: s, Status: StatusBooking, Detail: "booking " + s}); err != nil {
			return Update{}, err
		}
		err := r.act(ctx, Action{Tx: r.tx, Step: s})
		if ctx.Err() != nil {
			return Update{}, ctx.Err()
		}
		if err == nil {
			if err := r.publish(ctx, Update{Step: s, Status: StatusConfirmed, Detail: s + " confirmed"}); err != nil {
				return Update{}, err
			}
			done = append(done, s)
			continue
		}
		if err := r.publish(ctx, Update{Step: s, Status: StatusFailed, Detail: s + " failed: " + err.Error()}); err != nil {
			return Update{}, err
		}
		for _, later := range Steps[i+1:] {
			if err := r.publish(ctx, Update{Step: later, Status: StatusSkipped, Detail: later + " skipped"}); err != nil {
				return Update{}, err
			}
		}
		return r.compensate(ctx, done, s)
	}
	return Update{Step: SagaKey, Status: StatusCompleted, Detail: "booking completed"}, nil
}

// compensate undoes the confirmed steps in reverse order.
func (r *sagaRun) compensate(ctx context.Context, done []string, failed string) (Update, error) {
	final := Update{Step: SagaKey, Status: StatusCompensated, Detail: "booking cancelled: " + failed + " failed"}
	for _, s := range slices.Backward(done) {
		if err := r.publish(ctx, Update{Step: s, Status: StatusCompensating, Detail: "cancelling " + s}); err != nil {
			return Update{}, err
		}
		err := r.act(ctx, Action{Tx: r.tx, Step: s, Compensate: true})
		if ctx.Err() != nil {
			return Update{}, ctx.Err()
		}
		u := Update{Step: s, Status: StatusCompensated, Detail: s + " compensated"}
		if err != nil {
			u = Update{Step: s, Status: StatusFailed, Detail: s + " compensation failed: " + err.Error()}
			final = Update{Step: SagaKey, Status: StatusFailed, Detail: "booking failed: " + s + " could not be cancelled"}
		}
		if err := r.publish(ctx, u); err != nil {
			return Update{}, err
		}
	}
	return final, nil
}

// act performs one simulated action.
func (r *sagaRun) act(ctx context.Context, a Action) error {
	if f := r.e.opts.Before; f != nil {
		if err := f(ctx, a); err != nil {
			return err
		}
	}
	if d := r.e.opts.Latency; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !a.Compensate && a.Step == r.fail {
		return fmt.Errorf("no %s available", noun[a.Step])
	}
	return nil
}

var noun = map[string]string{"flight": "seat", "hotel": "room", "car": "car"}
