package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
	saga "github.com/gofanout/fanout/examples/saga"
)

// transcript is every update a saga publishes, in order, as "step status".
func transcript(fail string) []string {
	t := []string{"flight pending", "hotel pending", "car pending", "saga running"}
	var done []string
	for i, s := range saga.Steps {
		t = append(t, s+" booking")
		if s == fail {
			t = append(t, s+" failed")
			for _, later := range saga.Steps[i+1:] {
				t = append(t, later+" skipped")
			}
			for _, d := range slices.Backward(done) {
				t = append(t, d+" compensating", d+" compensated")
			}
			return append(t, "saga compensated")
		}
		t = append(t, s+" confirmed")
		done = append(done, s)
	}
	return append(t, "saga completed")
}

// seen is a saga's update as a follower received it.
type seen struct {
	seq    uint64
	key    string
	u      saga.Update
	marked bool // published with fanout.WithFinal
}

func (s seen) String() string { return s.u.Step + " " + string(s.u.Status) }

// checkFollow checks what a follower received, a snapshot at position pos
// and then live updates, against the saga's whole transcript: the
// snapshot must hold the latest state of every key among the first pos
// updates, and the live updates must be all the others, in order.
func checkFollow(t *testing.T, tx string, want []string, pos uint64, snap, live []seen) {
	t.Helper()
	if pos > uint64(len(want)) {
		t.Fatalf("snapshot position %d, want at most %d", pos, len(want))
	}
	latest := map[string]int{} // key -> index in want
	for i, w := range want[:pos] {
		latest[strings.Fields(w)[0]] = i
	}
	if len(snap) != len(latest) {
		t.Errorf("got %d snapshot items %v, want %d", len(snap), snap, len(latest))
	}
	for _, s := range snap {
		i, ok := latest[s.key]
		if !ok {
			t.Errorf("snapshot has key %q, want none", s.key)
			continue
		}
		if s.String() != want[i] || s.seq != uint64(i+1) {
			t.Errorf("snapshot item for %q is %q at seq %d, want %q at seq %d", s.key, s, s.seq, want[i], i+1)
		}
	}
	var got []string
	for i, l := range live {
		got = append(got, l.String())
		if l.seq != pos+uint64(i)+1 {
			t.Errorf("live update %d (%s) has seq %d, want %d", i, l, l.seq, pos+uint64(i)+1)
		}
	}
	if !slices.Equal(got, want[pos:]) {
		t.Errorf("got live updates %q, want %q", got, want[pos:])
	}
	for _, s := range append(slices.Clone(snap), live...) {
		if s.u.Tx != tx {
			t.Errorf("update %s has tx %q, want %q", s, s.u.Tx, tx)
		}
		if s.key != s.u.Step {
			t.Errorf("update %s has key %q, want %q", s, s.key, s.u.Step)
		}
		if s.marked != s.u.Final {
			t.Errorf("update %s (final %v) has the final mark %v, want the same", s, s.u.Final, s.marked)
		}
	}
	last := live
	if len(last) == 0 {
		last = snap
	}
	if len(last) == 0 || !last[len(last)-1].u.Final {
		t.Errorf("the last update is not final")
	}
}

func toSeen(m *fanout.Message) (seen, error) {
	var u saga.Update
	if err := json.Unmarshal(m.Data, &u); err != nil {
		return seen{}, fmt.Errorf("decode %s: %w", m.Data, err)
	}
	return seen{seq: m.Position.Seq, key: m.Key, u: u, marked: m.Final()}, nil
}

// followSession follows tx through a hub session, the way a transport
// does, until the final update.
func followSession(ctx context.Context, h *fanout.Hub, tx string) (pos uint64, snap, live []seen, err error) {
	sess, err := h.NewSession(fanout.Principal{})
	if err != nil {
		return 0, nil, nil, err
	}
	defer sess.Close(fanout.CloseNormal, "")
	if err := sess.Subscribe(ctx, fanout.SubscribeRequest{ID: "1", Topic: saga.Topic(tx), Snapshot: true}); err != nil {
		return 0, nil, nil, err
	}
	for {
		frames, err := sess.Next(ctx, nil)
		if err != nil {
			return 0, nil, nil, err
		}
		for _, f := range frames {
			var ms []*fanout.Message
			switch f.Type {
			case fanout.FrameSnapshot:
				pos = f.Snapshot.Position.Seq
				for _, m := range f.Snapshot.Items {
					s, err := toSeen(m)
					if err != nil {
						return 0, nil, nil, err
					}
					snap = append(snap, s)
					if s.u.Final {
						return pos, snap, live, nil
					}
				}
				continue
			case fanout.FrameMessage:
				ms = []*fanout.Message{f.Message}
			case fanout.FrameClose:
				return 0, nil, nil, fmt.Errorf("session closed: %s", f.Close.Reason)
			default:
				continue
			}
			for _, m := range ms {
				s, err := toSeen(m)
				if err != nil {
					return 0, nil, nil, err
				}
				live = append(live, s)
				if s.u.Final {
					return pos, snap, live, nil
				}
			}
		}
	}
}

func newHub(t *testing.T) *fanout.Hub {
	t.Helper()
	h, err := fanout.NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestSaga(t *testing.T) {
	t.Parallel()
	for _, fail := range []string{"", "flight", "hotel", "car"} {
		t.Run("fail="+fail, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h := newHub(t)
				e := saga.New(&saga.Options{Hub: h, Latency: time.Second})
				defer e.Close()
				start := time.Now()
				tx, err := e.Start(t.Context(), saga.Booking{Fail: fail})
				if err != nil {
					t.Fatal(err)
				}
				synctest.Wait() // the saga waits in its first action
				pos, snap, live, err := followSession(t.Context(), h, tx)
				if err != nil {
					t.Fatal(err)
				}
				want := transcript(fail)
				checkFollow(t, tx, want, pos, snap, live)
				if pos != 5 {
					t.Errorf("got snapshot position %d, want 5 (the initial states and flight booking)", pos)
				}
				// Each action (booking or compensation) takes Latency.
				actions := 0
				for _, w := range want {
					if strings.HasSuffix(w, " booking") || strings.HasSuffix(w, " compensating") {
						actions++
					}
				}
				if got, want := time.Since(start), time.Duration(actions)*time.Second; got != want {
					t.Errorf("the saga took %v, want %v", got, want)
				}
			})
		})
	}
}

func TestSagaLateSubscriber(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHub(t)
		e := saga.New(&saga.Options{Hub: h})
		tx, err := e.Start(t.Context(), saga.Booking{Fail: "car"})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Shutdown(t.Context()); err != nil { // waits for the saga
			t.Fatal(err)
		}
		pos, snap, live, err := followSession(t.Context(), h, tx)
		if err != nil {
			t.Fatal(err)
		}
		want := transcript("car")
		if pos != uint64(len(want)) {
			t.Errorf("got snapshot position %d, want %d", pos, len(want))
		}
		checkFollow(t, tx, want, pos, snap, live)
		var got []string
		for _, s := range snap {
			got = append(got, s.String())
		}
		slices.Sort(got)
		if w := []string{"car failed", "flight compensated", "hotel compensated", "saga compensated"}; !slices.Equal(got, w) {
			t.Errorf("got snapshot %q, want %q", got, w)
		}
	})
}

func TestSagaCompensationFails(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHub(t)
		e := saga.New(&saga.Options{Hub: h, Before: func(_ context.Context, a saga.Action) error {
			if a.Compensate && a.Step == "flight" {
				return errors.New("airline unreachable")
			}
			return nil
		}})
		defer e.Close()
		tx, err := e.Start(t.Context(), saga.Booking{Fail: "car"})
		if err != nil {
			t.Fatal(err)
		}
		e.Shutdown(t.Context())
		_, snap, _, err := followSession(t.Context(), h, tx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]saga.Update{}
		for _, s := range snap {
			got[s.key] = s.u
		}
		if u := got["flight"]; u.Status != saga.StatusFailed || !strings.Contains(u.Detail, "airline unreachable") {
			t.Errorf("got flight %+v, want failed with the compensation's error", u)
		}
		if u := got["hotel"]; u.Status != saga.StatusCompensated {
			t.Errorf("got hotel %q, want %q: the other compensations still run", u.Status, saga.StatusCompensated)
		}
		if u := got[saga.SagaKey]; u.Status != saga.StatusFailed || !u.Final {
			t.Errorf("got saga %+v, want final and failed", u)
		}
	})
}

func TestSagaClose(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHub(t)
		e := saga.New(&saga.Options{Hub: h, Latency: time.Hour})
		tx, err := e.Start(t.Context(), saga.Booking{})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got Shutdown error %v, want %v", err, context.DeadlineExceeded)
		}
		if _, err := e.Start(t.Context(), saga.Booking{}); !errors.Is(err, saga.ErrClosed) {
			t.Errorf("got Start error %v after Shutdown, want %v", err, saga.ErrClosed)
		}
		if err := e.Close(); err != nil {
			t.Errorf("got Close error %v, want nil", err)
		}
		_, snap, _, err := followSession(t.Context(), h, tx)
		if err != nil {
			t.Fatal(err)
		}
		last := snap[len(snap)-1].u
		if last.Step != saga.SagaKey || last.Status != saga.StatusFailed || !last.Final {
			t.Errorf("got last update %+v, want the saga's final failed status", last)
		}
		if !strings.Contains(last.Detail, "interrupted") {
			t.Errorf("got detail %q, want it to say the booking was interrupted", last.Detail)
		}
	})
}

func TestStartUnknownStep(t *testing.T) {
	t.Parallel()
	e := saga.New(&saga.Options{Hub: newHub(t)})
	defer e.Close()
	if _, err := e.Start(t.Context(), saga.Booking{Fail: "boat"}); !errors.Is(err, saga.ErrUnknownStep) {
		t.Errorf("got %v, want %v", err, saga.ErrUnknownStep)
	}
}

func TestServeHTTP(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	e := saga.New(&saga.Options{Hub: h})
	t.Cleanup(func() { e.Close() })
	for _, tc := range []struct {
		name, method, target, ctype, body string
		want                              int
		fail                              string
	}{
		{"empty", "POST", "/bookings", "", "", http.StatusAccepted, ""},
		{"json", "POST", "/bookings", "application/json", `{"fail":"hotel"}`, http.StatusAccepted, "hotel"},
		{"query", "POST", "/bookings?fail=car", "", "", http.StatusAccepted, "car"},
		{"json charset", "POST", "/bookings", "application/json; charset=utf-8", `{}`, http.StatusAccepted, ""},
		{"get", "GET", "/bookings", "", "", http.StatusMethodNotAllowed, ""},
		{"unknown step", "POST", "/bookings?fail=boat", "", "", http.StatusBadRequest, ""},
		{"unknown step json", "POST", "/bookings", "application/json", `{"fail":"boat"}`, http.StatusBadRequest, ""},
		{"bad json", "POST", "/bookings", "application/json", `{"fail":`, http.StatusBadRequest, ""},
		{"unknown field", "POST", "/bookings", "application/json", `{"fial":"hotel"}`, http.StatusBadRequest, ""},
		{"not json", "POST", "/bookings", "text/plain", `fail=hotel`, http.StatusUnsupportedMediaType, ""},
		{"too large", "POST", "/bookings", "application/json", `{"fail":"` + strings.Repeat("x", 2000) + `"}`, http.StatusRequestEntityTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			w := httptest.NewRecorder()
			e.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("got status %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.want)
			}
			if tc.want != http.StatusAccepted {
				var body struct {
					Error *struct{ Code, Message string }
				}
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == nil || body.Error.Code == "" || w.Header().Get("Content-Type") != "application/json" {
					t.Fatalf("got %q (%s), want the JSON error body", w.Body, w.Header().Get("Content-Type"))
				}
				return
			}
			var resp struct {
				Tx, Topic string
				Steps     []string
			}
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Topic != saga.Topic(resp.Tx) || resp.Tx == "" {
				t.Errorf("got tx %q and topic %q, want topic %q", resp.Tx, resp.Topic, saga.Topic(resp.Tx))
			}
			if !slices.Equal(resp.Steps, saga.Steps) {
				t.Errorf("got steps %q, want %q", resp.Steps, saga.Steps)
			}
			pos, snap, live, err := followSession(t.Context(), h, resp.Tx)
			if err != nil {
				t.Fatal(err)
			}
			checkFollow(t, resp.Tx, transcript(tc.fail), pos, snap, live)
		})
	}
	t.Run("closed", func(t *testing.T) {
		e := saga.New(&saga.Options{Hub: h})
		e.Close()
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest("POST", "/bookings", nil))
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("got status %d, want %d", w.Code, http.StatusServiceUnavailable)
		}
	})
}

// FuzzBookings feeds POST /bookings arbitrary bodies, content types and
// queries: it answers 202 with a saga that fails where asked, or a client
// error, and never panics.
func FuzzBookings(f *testing.F) {
	for _, s := range []struct{ query, ctype, body string }{
		{"", "", ""},
		{"fail=hotel", "", ""},
		{"", "application/json", `{"fail":"car"}`},
		{"fail=boat", "application/json", `{}`},
		{"", "application/json", `{"fail":"hotel","x":1}`},
		{"", "application/json", `{"fail":`},
		{"%zz", "text/plain", "fail=hotel"},
		{"", "application/json; charset=utf-8", `{"fail":"flight"} {}`},
	} {
		f.Add(s.query, s.ctype, s.body)
	}
	h, err := fanout.NewHub(nil)
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	e := saga.New(&saga.Options{Hub: h})
	defer e.Close()
	f.Fuzz(func(t *testing.T, query, ctype, body string) {
		r := httptest.NewRequest("POST", "/bookings", strings.NewReader(body))
		r.URL.RawQuery = query
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusAccepted:
			var resp struct{ Tx, Topic string }
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || fanout.ValidateTopic(resp.Topic) != nil {
				t.Fatalf("got 202 %q, want a transaction and a valid topic", w.Body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("got status %d (%s), want 202 or a client error", w.Code, w.Body)
		}
	})
}

// TestOperations checks the operator's endpoints: liveness, readiness (503
// once draining) and the hub's Prometheus series.
func TestOperations(t *testing.T) {
	t.Parallel()
	srv, err := saga.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	get := func(path string) (int, string) {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w.Code, w.Body.String()
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("readyz: got %d %s, want 200", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "fanout_sessions") {
		t.Fatalf("metrics: got %d, want 200 with the hub's series", code)
	}
	srv.Close()
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz after Close: got %d, want 503", code)
	}
}
