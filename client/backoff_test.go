package client_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/client"
	"github.com/gofanout/fanout/internal/testenv"
	fws "github.com/gofanout/fanout/transport/websocket"
)

func TestBackoffFullJitter(t *testing.T) {
	t.Parallel()
	const lo, hi = 250 * time.Millisecond, 30 * time.Second
	highest := func(n int64) int64 { return n - 1 }
	lowest := func(int64) int64 { return 0 }
	for _, c := range []struct {
		n    int
		want time.Duration
	}{
		{0, 0},
		{1, lo},
		{2, 2 * lo},
		{3, 4 * lo},
		{7, 64 * lo},
		{8, hi}, // 128*lo would be 32s
		{60, hi},
		{1 << 30, hi},
	} {
		if got := client.Backoff(c.n, lo, hi, highest); got != c.want {
			t.Errorf("attempt %d: got at most %v, want %v", c.n, got, c.want)
		}
		if got := client.Backoff(c.n, lo, hi, lowest); got != 0 {
			t.Errorf("attempt %d: got at least %v, want 0", c.n, got)
		}
	}
	// Every value of the range is reachable: rnd's argument is its size.
	var size int64
	client.Backoff(3, lo, hi, func(n int64) int64 { size = n; return 0 })
	if size != int64(4*lo)+1 {
		t.Errorf("got a range of %d values, want %d", size, int64(4*lo)+1)
	}
	if got := client.Backoff(100, time.Duration(1<<62), time.Duration(1<<62+1<<61), highest); got != time.Duration(1<<62+1<<61) {
		t.Errorf("got %v, want the maximum without overflow", got)
	}
}

// stamped is a status and the (fake) time it was reported.
type stamped struct {
	client.Status
	at time.Time
}

// bubbleServer serves handler in a real http.Server on an in-memory pipe
// (a loopback socket would keep the fake clock of a synctest bubble from
// advancing) and returns the client options to reach it. Everything is
// closed by the returned function.
func bubbleServer(t *testing.T, handler http.Handler) (*testenv.Pipe, *client.Options, func() []stamped, func()) {
	pn := testenv.NewPipe()
	srv := &http.Server{Handler: handler}
	go srv.Serve(pn)
	tr := &http.Transport{DialContext: pn.Dial}
	var (
		mu  sync.Mutex
		log []stamped
	)
	o := &client.Options{
		HTTPClient:   &http.Client{Transport: tr},
		BackoffMin:   time.Second,
		BackoffMax:   8 * time.Second,
		HealthyAfter: time.Minute,
		PingInterval: -1,
		OnStatus: func(s client.Status) {
			mu.Lock()
			log = append(log, stamped{s, time.Now()})
			mu.Unlock()
		},
	}
	statuses := func() []stamped {
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		l := log
		log = nil
		return l
	}
	return pn, o, statuses, func() {
		srv.Close()
		pn.Close()
		tr.CloseIdleConnections()
	}
}

func newBubbleHub(t *testing.T, o *fanout.HubOptions) (*fanout.Hub, http.Handler) {
	h, err := fanout.NewHub(o)
	if err != nil {
		t.Fatal(err)
	}
	ws := fws.New(h, &fws.Options{PingInterval: -1})
	t.Cleanup(func() { ws.Close() })
	return h, ws
}

// TestReconnectBackoffTiming checks on a fake clock that reconnect
// attempts wait the backoff they announce, that the backoff doubles up to
// its maximum, and that a healthy connection starts over.
func TestReconnectBackoffTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, h := newBubbleHub(t, nil)
		defer hub.Close()
		pn, o, statuses, closeNet := bubbleServer(t, h)
		defer closeNet()
		ctx := context.Background()
		c, err := client.Dial(ctx, "ws://fanout.test/", o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := c.Subscribe(ctx, "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		statuses()

		pn.SetDown(true)
		pn.Cut()
		time.Sleep(2 * time.Minute)
		log := statuses()
		attempts := 0
		for i, st := range log {
			switch st.Kind {
			case client.StatusDisconnected:
				limit := o.BackoffMax
				if attempts < 8 {
					limit = min(limit, o.BackoffMin<<attempts)
				}
				if st.Retry < 0 || st.Retry > limit {
					t.Errorf("attempt %d: got a wait of %v, want at most %v", attempts+1, st.Retry, limit)
				}
				if i+1 < len(log) {
					nx := log[i+1]
					if nx.Kind != client.StatusConnecting || nx.Attempt != attempts+1 || nx.at.Sub(st.at) != st.Retry {
						t.Errorf("got %v attempt %d after %v, want attempt %d after %v", nx.Kind, nx.Attempt, nx.at.Sub(st.at), attempts+1, st.Retry)
					}
				}
				attempts++
			case client.StatusConnecting:
			default:
				t.Errorf("got status %v, want only attempts", st.Kind)
			}
		}
		if attempts < 10 {
			t.Errorf("got %d attempts in 2 minutes, want at least 10 (8s at most apart)", attempts)
		}

		pn.SetDown(false)
		time.Sleep(o.BackoffMax)
		log = statuses()
		if len(log) < 3 || log[len(log)-2].Kind != client.StatusConnected || log[len(log)-1].Kind != client.StatusResumed {
			t.Fatalf("got %v, want to connect and resume", log)
		}
		if _, err := hub.Publish(ctx, "x", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if ev, err := s.Next(ctx); err != nil || ev.Position.Seq != 1 {
			t.Errorf("got %v, %v, want message 1", ev.Position, err)
		}

		// A connection that lasted HealthyAfter resets the backoff.
		time.Sleep(o.HealthyAfter)
		pn.Cut()
		time.Sleep(o.BackoffMin)
		log = statuses()
		if len(log) < 3 || log[0].Kind != client.StatusDisconnected || log[0].Retry > o.BackoffMin || log[1].Attempt != 1 || log[2].Kind != client.StatusConnected {
			t.Errorf("got %v, want a first attempt within %v that connects", log, o.BackoffMin)
		}
	})
}

// TestShutdownReconnectsWithoutWait checks on a fake clock that a close
// with CloseShutdown is followed by an attempt at the same instant, and
// that a second shutdown in a row waits a backoff.
func TestShutdownReconnectsWithoutWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		broker := fanout.NewMemoryBroker(nil)
		var (
			mu   sync.Mutex
			hubs []*fanout.Hub
			hs   []http.Handler
		)
		for range 3 {
			hub, h := newBubbleHub(t, &fanout.HubOptions{Backplane: broker.Node()})
			defer hub.Close()
			hubs, hs = append(hubs, hub), append(hs, h)
		}
		current := 0
		route := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			h := hs[current]
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
		_, o, statuses, closeNet := bubbleServer(t, route)
		defer closeNet()
		o.BackoffMin, o.BackoffMax = time.Minute, time.Minute
		ctx := context.Background()
		c, err := client.Dial(ctx, "ws://fanout.test/", o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Subscribe(ctx, "x", nil); err != nil {
			t.Fatal(err)
		}
		statuses()

		for i := 1; i <= 2; i++ {
			mu.Lock()
			current = i
			mu.Unlock()
			if err := hubs[i-1].Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(o.BackoffMax)
			log := statuses()
			if len(log) < 3 || log[0].Kind != client.StatusDisconnected || log[0].Code != fanout.CloseShutdown {
				t.Fatalf("shutdown %d: got %v, want a disconnection with 4000", i, log)
			}
			wait := log[1].at.Sub(log[0].at)
			if i == 1 && (log[0].Retry != 0 || wait != 0) {
				t.Errorf("first shutdown: got a wait of %v (announced %v), want none", wait, log[0].Retry)
			}
			if i == 2 && wait != log[0].Retry {
				t.Errorf("second shutdown: got a wait of %v, want the announced backoff %v", wait, log[0].Retry)
			}
			if log[2].Kind != client.StatusConnected {
				t.Errorf("shutdown %d: got %v, want to connect", i, log)
			}
		}
	})
}
