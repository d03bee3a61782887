package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// TestConcurrentPublishes: many publishers on a few topics, whose publishes
// Redis receives in batches, get every position of each topic once, in the
// order of each publisher's own publishes, and history holds each message
// at the position its publish returned.
func TestConcurrentPublishes(t *testing.T) {
	t.Parallel()
	c := newClient(t, &goredis.Options{PoolSize: 16})
	bp := fanoutredis.New(c, &fanoutredis.Options{Prefix: uniquePrefix(t, c)})
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	const publishers, each, topics = 32, 40, 4
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	type published struct {
		pos  fanout.Position
		data string
	}
	got := make([][]published, publishers)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				topic := fmt.Sprint("batch-", i%topics)
				data := fmt.Sprint(p, "-", i)
				idem := ""
				if i%3 == 0 {
					idem = "idem-" + data
				}
				m := &fanout.Message{Topic: topic, Data: []byte(data), Time: time.Now()}
				pos, err := bp.Publish(ctx, m, idem)
				if err != nil {
					t.Errorf("publish %s: %v", data, err)
					return
				}
				got[p] = append(got[p], published{pos, data})
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	byTopic := make(map[string]map[uint64]string)
	for p, ps := range got {
		last := make(map[string]uint64)
		for i, x := range ps {
			topic := fmt.Sprint("batch-", i%topics)
			if x.pos.Seq <= last[topic] {
				t.Errorf("publisher %d: %s at %v after seq %d", p, x.data, x.pos, last[topic])
			}
			last[topic] = x.pos.Seq
			if byTopic[topic] == nil {
				byTopic[topic] = make(map[uint64]string)
			}
			if prev, dup := byTopic[topic][x.pos.Seq]; dup {
				t.Errorf("%s: seq %d returned for %s and %s", topic, x.pos.Seq, prev, x.data)
			}
			byTopic[topic][x.pos.Seq] = x.data
		}
	}
	for topic, seqs := range byTopic {
		h, err := bp.History(ctx, topic, fanout.Position{Epoch: got[0][0].pos.Epoch})
		if err != nil {
			t.Fatal(err)
		}
		if !h.Complete || len(h.Messages) != len(seqs) {
			t.Fatalf("%s: history of %d messages (complete %v), want %d", topic, len(h.Messages), h.Complete, len(seqs))
		}
		for _, m := range h.Messages {
			if seqs[m.Position.Seq] != string(m.Data) {
				t.Errorf("%s: history holds %q at seq %d, publish returned it for %q", topic, m.Data, m.Position.Seq, seqs[m.Position.Seq])
			}
		}
	}
}

// TestPublishErrorReplyFailsOnlyItsPublish: a publish whose script fails
// on Redis (its topic's position key holds another type) fails with that
// error, not as unavailable, and the publishes sent with it succeed.
func TestPublishErrorReplyFailsOnlyItsPublish(t *testing.T) {
	t.Parallel()
	c := newClient(t, &goredis.Options{PoolSize: 16})
	prefix := uniquePrefix(t, c)
	bp := fanoutredis.New(c, &fanoutredis.Options{Prefix: prefix})
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	if err := c.Set(ctx, "{"+prefix+":broken}:pos", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Go(func() {
			topic := "fine"
			if i%8 == 0 {
				topic = "broken"
			}
			_, errs[i] = bp.Publish(ctx, &fanout.Message{Topic: topic, Data: []byte("x"), Time: time.Now()}, "")
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i%8 != 0 && err != nil:
			t.Errorf("publish %d to a sound topic: %v", i, err)
		case i%8 == 0 && (err == nil || errors.Is(err, fanout.ErrUnavailable)):
			t.Errorf("publish %d to the broken topic: got %v, want Redis's error reply", i, err)
		}
	}
}

// TestPublishQueuedBehindHungRedis: with Redis stopped, publishes that wait
// in the queue behind the pipelines in flight return when their context
// ends, before Redis answers, and Close returns once Redis does.
func TestPublishQueuedBehindHungRedis(t *testing.T) {
	srv := privateRedis(t, nil)
	c := newClient(t, &goredis.Options{Addr: srv.Addr(), ReadTimeout: -1, WriteTimeout: -1, PoolSize: 16})
	bp := fanoutredis.New(c, &fanoutredis.Options{PingInterval: time.Hour})
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := bp.Publish(ctx, &fanout.Message{Topic: "hung", Data: []byte("before"), Time: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Continue() })
	// Some publishes without a deadline fill the pipelines and wait for
	// Redis; the others queue behind them.
	stuck := make(chan error, 8)
	for range cap(stuck) {
		go func() {
			_, err := bp.Publish(ctx, &fanout.Message{Topic: "hung", Data: []byte("stuck"), Time: time.Now()}, "")
			stuck <- err
		}()
	}
	done := make(chan error, 32)
	for i := range cap(done) {
		go func() {
			ctx, cancel := context.WithCancel(ctx)
			if i%2 == 0 {
				ctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
			} else {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			defer cancel()
			_, err := bp.Publish(ctx, &fanout.Message{Topic: "hung", Data: []byte("queued"), Time: time.Now()}, "")
			done <- err
		}()
	}
	for range cap(done) {
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Errorf("queued publish on a stopped Redis: got %v, want its context's error", err)
			}
		case <-time.After(watchdog):
			t.Fatalf("a queued publish still blocked after %v", watchdog)
		}
	}
	if err := srv.Continue(); err != nil {
		t.Fatal(err)
	}
	for range cap(stuck) {
		if err := <-stuck; err != nil {
			t.Errorf("publish without a deadline, once Redis continued: %v", err)
		}
	}
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPublishBatchOnBrokenConnection: publishes whose connection breaks
// while Redis cannot be reached fail with ErrUnavailable once the
// client's retries are spent, each of them, and publishing works again,
// with every position once, when Redis is back.
func TestPublishBatchOnBrokenConnection(t *testing.T) {
	px := testenv.NewProxy(t, testenv.Redis(t))
	direct := newClient(t, nil)
	prefix := uniquePrefix(t, direct)
	c := newClient(t, &goredis.Options{Addr: px.Addr(), PoolSize: 16, MaxRetries: 1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	bp := fanoutredis.New(c, &fanoutredis.Options{Prefix: prefix, PingInterval: time.Hour})
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	publish := func(data string) (fanout.Position, error) {
		return bp.Publish(ctx, &fanout.Message{Topic: "broken", Data: []byte(data), Time: time.Now()}, "")
	}
	first, err := publish("first")
	if err != nil {
		t.Fatal(err)
	}
	px.Refuse()
	px.Cut()
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Go(func() { _, errs[i] = publish(fmt.Sprint("down-", i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, fanout.ErrUnavailable) {
			t.Errorf("publish %d while Redis is unreachable: got %v, want fanout.ErrUnavailable", i, err)
		}
	}
	px.Resume()
	var positions []fanout.Position
	for i := range 20 {
		p, err := publish(fmt.Sprint("up-", i))
		if err != nil {
			t.Fatalf("publish %d after Redis is back: %v", i, err)
		}
		positions = append(positions, p)
	}
	for i, p := range positions {
		if p.Epoch != first.Epoch || p.Seq != first.Seq+1+uint64(i) {
			t.Fatalf("publish %d after Redis is back at %v, want seq %d of epoch %s", i, p, first.Seq+1+uint64(i), first.Epoch)
		}
	}
}

// TestPublishQueueBounded: while Redis hangs, publishes beyond the queue's
// limit fail at once with ErrUnavailable instead of waiting, and those in
// the queue succeed once Redis answers.
func TestPublishQueueBounded(t *testing.T) {
	srv := privateRedis(t, nil)
	c := newClient(t, &goredis.Options{Addr: srv.Addr(), ReadTimeout: -1, WriteTimeout: -1, PoolSize: 16})
	bp := fanoutredis.New(c, &fanoutredis.Options{PingInterval: time.Hour})
	const limit = 8
	fanoutredis.SetMaxQueued(bp, limit)
	if err := bp.Open(nopReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	ctx := context.Background()
	if _, err := bp.Publish(ctx, &fanout.Message{Topic: "bounded", Data: []byte("before"), Time: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Continue() })
	const n = 40
	results := make(chan error, n)
	for range n {
		go func() {
			_, err := bp.Publish(ctx, &fanout.Message{Topic: "bounded", Data: []byte("x"), Time: time.Now()}, "")
			results <- err
		}()
	}
	// At most limit publishes queue and two batches are in flight (each
	// of at most limit): the others fail without Redis.
	for range n - 3*limit {
		select {
		case err := <-results:
			if !errors.Is(err, fanout.ErrUnavailable) {
				t.Fatalf("publish beyond the queue's limit: got %v, want fanout.ErrUnavailable", err)
			}
		case <-time.After(watchdog):
			t.Fatalf("publishes beyond the queue's limit still blocked after %v", watchdog)
		}
	}
	if err := srv.Continue(); err != nil {
		t.Fatal(err)
	}
	for range 3 * limit {
		if err := <-results; err != nil && !errors.Is(err, fanout.ErrUnavailable) {
			t.Errorf("publish: %v", err)
		}
	}
}

// TestBatchIsOneScriptCall: the publishes that queue while a batch is in
// flight go to Redis together, in one call of the publish script, and each
// gets its own position.
func TestBatchIsOneScriptCall(t *testing.T) {
	srv := privateRedis(t, nil)
	c := newClient(t, &goredis.Options{Addr: srv.Addr(), PoolSize: 16, ReadTimeout: -1, WriteTimeout: -1})
	b := fanoutredis.New(c, &fanoutredis.Options{Prefix: "batch"})
	fanoutredis.SetPipelines(b, 1) // one sender, so that one batch is in flight
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	publish := func(topic string) (fanout.Position, error) {
		return b.Publish(ctx, &fanout.Message{Topic: topic, Data: []byte("x"), Time: time.Now()}, "")
	}
	if _, err := publish("warm"); err != nil { // the sender and its connection
		t.Fatal(err)
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// waiting waits until n publishes are queued and idle senders wait.
	waiting := func(n, idle int) {
		t.Helper()
		for {
			q, i := fanoutredis.Waiting(b)
			if q == n && i == idle {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%d publishes queued and %d senders waiting, want %d and %d", q, i, n, idle)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waiting(0, 1) // the sender is back, waiting for publishes
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Redis runs again before the backplane closes, whatever happens.
	t.Cleanup(func() { srv.Continue() })
	const rest = 63
	positions := make([]fanout.Position, 1+rest)
	errs := make([]error, 1+rest)
	var wg sync.WaitGroup
	wg.Go(func() { positions[0], errs[0] = publish("t0") })
	waiting(0, 0) // the sender took it, and waits for Redis
	for i := 1; i <= rest; i++ {
		wg.Go(func() { positions[i], errs[i] = publish(fmt.Sprint("t", i%4)) })
	}
	waiting(rest, 0)
	if err := srv.Continue(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	seen := make(map[string]bool)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		topic := fmt.Sprint("t", i%4)
		if i == 0 {
			topic = "t0 alone"
		}
		key := topic + " " + positions[i].String()
		if seen[key] {
			t.Fatalf("publish %d to %s got position %v, as another did", i, topic, positions[i])
		}
		seen[key] = true
	}
	if calls, _ := scriptCalls(t, c); calls != 2 {
		t.Fatalf("%d publishes took %v script calls, want 2 (the one in flight, then the rest together)", 1+rest, calls)
	}
}
