package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gofanout/fanout/client"
)

// Params sizes a run.
type Params struct {
	Nodes           int           // hub nodes, each its own process
	Clients         int           // subscribing clients
	Topics          int           // topics published to, round robin
	TopicsPerClient int           // topics each client subscribes to
	Rate            float64       // publishes per second, at most
	Warmup          time.Duration // publishing before the fault
	Fault           time.Duration // how long the fault lasts
	After           time.Duration // publishing after the fault
	CatchUp         time.Duration // how long clients may take to catch up at the end
}

// Short is the version CI runs: every scenario in a few seconds.
var Short = Params{Nodes: 3, Clients: 9, Topics: 6, TopicsPerClient: 3, Rate: 100,
	Warmup: 2 * time.Second, Fault: 2 * time.Second, After: 3 * time.Second, CatchUp: 30 * time.Second}

// Long is the version an operator runs: as in the report that led to
// this suite, 50 clients on 5 of 20 topics each, 200 publishes a second,
// 10-second faults.
var Long = Params{Nodes: 3, Clients: 50, Topics: 20, TopicsPerClient: 5, Rate: 200,
	Warmup: 10 * time.Second, Fault: 10 * time.Second, After: 20 * time.Second, CatchUp: 60 * time.Second}

// Env is what a fault acts on.
type Env struct {
	Storage *Server       // Redis or NATS, on one server
	Cluster *RedisCluster // Redis Cluster, for the backplane "redis-cluster"
	NATS    *NATSCluster  // three NATS servers, for the backplane "nats-cluster"
	Nodes   []*Node
}

// Scenario is one fault.
type Scenario struct {
	Name string
	// Backplanes it applies to.
	Backplanes []string
	// AppendOnly runs Redis with its append-only file.
	AppendOnly bool
	// Fault injects the fault, lasting about d, and ends it.
	Fault func(ctx context.Context, e *Env, d time.Duration) error
}

var both = []string{"redis", "nats"}

// Scenarios are the faults the suite injects.
var Scenarios = []Scenario{
	{Name: "storage-kill9", Backplanes: both, Fault: func(ctx context.Context, e *Env, d time.Duration) error {
		if err := e.Storage.Kill(); err != nil {
			return err
		}
		sleep(ctx, d)
		return e.Storage.Start()
	}},
	{Name: "storage-kill9-aof", Backplanes: []string{"redis"}, AppendOnly: true, Fault: func(ctx context.Context, e *Env, d time.Duration) error {
		if err := e.Storage.Kill(); err != nil {
			return err
		}
		sleep(ctx, d)
		return e.Storage.Start()
	}},
	{Name: "storage-older-rdb", Backplanes: []string{"redis"}, Fault: func(ctx context.Context, e *Env, d time.Duration) error {
		if err := e.Storage.BGSave(ctx); err != nil {
			return err
		}
		sleep(ctx, d) // publishes the RDB file will not have
		return e.Storage.Restart()
	}},
	{Name: "storage-older-data", Backplanes: []string{"nats"}, Fault: func(ctx context.Context, e *Env, d time.Duration) error {
		if err := e.Storage.SaveStore(); err != nil {
			return err
		}
		sleep(ctx, d) // publishes the saved store will not have
		return e.Storage.RestoreStore()
	}},
	{Name: "storage-sigstop", Backplanes: both, Fault: func(ctx context.Context, e *Env, d time.Duration) error {
		if err := e.Storage.Stop(); err != nil {
			return err
		}
		sleep(ctx, d)
		return e.Storage.Continue()
	}},
	{Name: "cluster-failover", Backplanes: []string{"redis-cluster", "nats-cluster"}, Fault: func(ctx context.Context, e *Env, d time.Duration) error {
		if e.NATS != nil {
			// Kill one of three servers: the streams (R3) keep a
			// quorum, and elect new leaders where it led.
			s := e.NATS.Servers[0]
			if err := s.Kill(); err != nil {
				return err
			}
			sleep(ctx, d)
			return s.Start()
		}
		// Kill a primary; its replica takes over. Then the old primary
		// comes back, as a replica.
		var primary *Server
		for _, s := range e.Cluster.Servers {
			if role, err := s.redisCommand(ctx, "INFO", "replication"); err == nil && infoField(role, "role") == "master" {
				primary = s
				break
			}
		}
		if primary == nil {
			return errors.New("no primary")
		}
		if err := primary.Kill(); err != nil {
			return err
		}
		sleep(ctx, d)
		if err := primary.Start(); err != nil {
			return err
		}
		return e.Cluster.WaitOK(ctx)
	}},
	{Name: "node-kill9", Backplanes: both, Fault: func(ctx context.Context, e *Env, d time.Duration) error {
		if err := e.Nodes[0].Kill(); err != nil {
			return err
		}
		sleep(ctx, d)
		return e.Nodes[0].Start()
	}},
	{Name: "rolling-sigterm", Backplanes: both, Fault: func(ctx context.Context, e *Env, d time.Duration) error {
		for _, n := range e.Nodes {
			if err := n.Terminate(); err != nil {
				return err
			}
			if err := n.Start(); err != nil {
				return err
			}
			sleep(ctx, d/time.Duration(len(e.Nodes)))
		}
		return nil
	}},
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Result is one row of the table.
type Result struct {
	Scenario, Backplane string
	Report
	// CatchUp is how long after the fault's end every subscription had a
	// message published after it (see [CatchUp]).
	CatchUp time.Duration
	Err     error  // the run itself failed
	Dir     string // logs of a run with violations or an error
}

// Config configures [Run].
type Config struct {
	// Exe runs a node when given the arguments of [NodeConfig.Args].
	Exe string
	// Params sizes every run.
	Params Params
	// Backplanes and Scenarios select the runs; empty selects all.
	Backplanes []string
	Scenarios  []string
	// Out receives progress lines.
	Out io.Writer
}

// Run runs every selected scenario on every selected backplane, one after
// another, and returns a row per run.
func Run(ctx context.Context, cfg Config) []Result {
	var results []Result
	for _, sc := range Scenarios {
		if len(cfg.Scenarios) > 0 && !contains(cfg.Scenarios, sc.Name) {
			continue
		}
		for _, bp := range sc.Backplanes {
			if len(cfg.Backplanes) > 0 && !contains(cfg.Backplanes, bp) {
				continue
			}
			if ctx.Err() != nil {
				return results
			}
			fmt.Fprintf(cfg.Out, "== %s on %s\n", sc.Name, bp)
			r := runOne(ctx, cfg, sc, bp)
			fmt.Fprintf(cfg.Out, "   published %d, failed %d, delivered %d, resets %d, violations %d, catch-up %v\n",
				r.Published, r.Failed, r.Delivered, r.Resets, r.Violations, r.CatchUp.Round(time.Millisecond))
			for _, v := range r.Examples {
				fmt.Fprintln(cfg.Out, "   violation:", v)
			}
			if r.Err != nil {
				fmt.Fprintln(cfg.Out, "   error:", r.Err)
			}
			results = append(results, r)
		}
	}
	return results
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runOne runs one scenario on one backplane: storage, nodes, clients and
// a publisher, the fault, and the verification.
func runOne(ctx context.Context, cfg Config, sc Scenario, bp string) (res Result) {
	res = Result{Scenario: sc.Name, Backplane: bp}
	p := cfg.Params
	dir, err := TempDir(sc.Name + "-" + bp)
	if err != nil {
		res.Err = err
		return res
	}
	defer func() {
		if res.Err == nil && res.Violations == 0 {
			os.RemoveAll(dir)
		} else {
			res.Dir = dir
		}
	}()
	env := &Env{}
	defer func() {
		for _, n := range env.Nodes {
			n.Kill()
		}
		if env.Storage != nil {
			env.Storage.Close()
		}
		if env.Cluster != nil {
			env.Cluster.Close()
		}
		if env.NATS != nil {
			env.NATS.Close()
		}
	}()
	var storage string
	switch bp {
	case "redis":
		env.Storage, err = StartRedis(dir, &RedisOptions{AppendOnly: sc.AppendOnly})
		if err == nil {
			storage = env.Storage.Addr()
		}
	case "redis-cluster":
		env.Cluster, err = StartRedisCluster(dir)
		if err == nil {
			storage = strings.Join(env.Cluster.Addrs(), ",")
		}
	case "nats-cluster":
		env.NATS, err = StartNATSCluster(dir)
		if err == nil {
			storage = env.NATS.URL()
		}
	default:
		env.Storage, err = StartNATS(dir, nil)
		if err == nil {
			storage = env.Storage.URL()
		}
	}
	nodeBackplane, replicas := bp, 1
	if bp == "nats-cluster" {
		nodeBackplane, replicas = "nats", 3
	}
	if err != nil {
		res.Err = err
		return res
	}
	name := "chaos" + randomHex(4)
	var urls []string
	for i := range p.Nodes {
		port, err := freePort()
		if err != nil {
			res.Err = err
			return res
		}
		n := NewNode(cfg.Exe, dir, fmt.Sprint("node", i), NodeConfig{
			Backplane: nodeBackplane, Storage: storage, Listen: fmt.Sprintf("127.0.0.1:%d", port), Name: name,
			Replicas: replicas,
		})
		if err := n.Start(); err != nil {
			res.Err = err
			return res
		}
		env.Nodes = append(env.Nodes, n)
		urls = append(urls, n.URL())
	}

	rec, err := startClients(ctx, p, urls)
	if err != nil {
		res.Err = err
		return res
	}
	defer rec.close()
	pub, err := startPublisher(ctx, p, urls)
	if err != nil {
		res.Err = err
		return res
	}
	sleep(ctx, p.Warmup)
	if err := sc.Fault(ctx, env, p.Fault); err != nil {
		res.Err = fmt.Errorf("fault: %w", err)
	}
	end := time.Now()
	sleep(ctx, p.After)
	log := pub.stop()
	last := lastAcked(log)
	deadline := time.Now().Add(p.CatchUp)
	for !rec.caughtUp(last) && time.Now().Before(deadline) && ctx.Err() == nil {
		sleep(ctx, 50*time.Millisecond)
	}
	streams := rec.streams()
	res.CatchUp = CatchUp(log, streams, end)
	res.Report = Verify(log, streams)
	return res
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// clientOptions reconnect quickly, as the suite's faults are short.
func clientOptions(urls []string) *client.Options {
	return &client.Options{
		URLs:         urls,
		BackoffMin:   50 * time.Millisecond,
		BackoffMax:   time.Second,
		PingInterval: 2 * time.Second,
		PingTimeout:  2 * time.Second,
		Buffer:       1 << 16,
	}
}

// rotate returns urls starting at the ith.
func rotate(urls []string, i int) []string {
	i %= len(urls)
	return append(append([]string{}, urls[i:]...), urls[:i]...)
}

// recorder holds every event of every subscription.
type recorder struct {
	clients []*client.Client
	wg      sync.WaitGroup

	mu   sync.Mutex // guards subs
	subs []*Stream
}

func topicName(i int) string { return fmt.Sprintf("topic-%d", i) }

func startClients(ctx context.Context, p Params, urls []string) (*recorder, error) {
	r := &recorder{}
	for i := range p.Clients {
		u := rotate(urls, i)
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := client.Dial(dctx, u[0], clientOptions(u[1:]))
		cancel()
		if err != nil {
			r.close()
			return nil, err
		}
		r.clients = append(r.clients, c)
		for j := range p.TopicsPerClient {
			topic := topicName((i*p.TopicsPerClient + j) % p.Topics)
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			sub, err := c.Subscribe(sctx, topic, &client.SubscribeOptions{Snapshot: true})
			cancel()
			if err != nil {
				r.close()
				return nil, fmt.Errorf("subscribe %s: %w", topic, err)
			}
			st := &Stream{Client: fmt.Sprint("client", i), Topic: topic}
			r.subs = append(r.subs, st)
			r.wg.Go(func() { r.read(sub, st) })
		}
	}
	return r, nil
}

func (r *recorder) read(sub *client.Subscription, st *Stream) {
	for {
		ev, err := sub.Next(context.Background())
		if err != nil {
			return
		}
		e := Event{Pos: ev.Position, At: time.Now()}
		switch ev.Kind {
		case client.EventMessage:
			e.Kind, e.Data = Message, string(ev.Message.Data)
		case client.EventSnapshot:
			e.Kind = Snapshot
			for _, m := range ev.Snapshot {
				e.Items = append(e.Items, Item{Pos: m.Position, Data: string(m.Data)})
			}
		case client.EventReset:
			e.Kind = Reset
		}
		r.mu.Lock()
		st.Events = append(st.Events, e)
		r.mu.Unlock()
	}
}

// caughtUp reports whether every subscription has its topic's last
// acknowledged message.
func (r *recorder) caughtUp(last map[string]string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.subs {
		want, ok := last[s.Topic]
		if !ok {
			continue
		}
		if !hasData(s.Events, want) {
			return false
		}
	}
	return true
}

func hasData(evs []Event, data string) bool {
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		if e.Data == data {
			return true
		}
		for _, it := range e.Items {
			if it.Data == data {
				return true
			}
		}
	}
	return false
}

func (r *recorder) streams() []Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Stream, len(r.subs))
	for i, s := range r.subs {
		out[i] = Stream{Client: s.Client, Topic: s.Topic, Events: append([]Event(nil), s.Events...)}
	}
	return out
}

func (r *recorder) close() {
	for _, c := range r.clients {
		c.Close()
	}
	r.wg.Wait()
}

// publisher publishes at the configured rate, round robin over the
// topics, every message with the same key so that a snapshot holds the
// latest.
type publisher struct {
	c      *client.Client
	cancel context.CancelFunc
	done   chan struct{}
	log    []Published
}

// publishTimeout bounds one publish: a publisher that gives up says so in
// its log (Failed), and the message may or may not have been stored.
const publishTimeout = 10 * time.Second

func startPublisher(ctx context.Context, p Params, urls []string) (*publisher, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := client.Dial(dctx, urls[0], clientOptions(urls[1:]))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	ctx, stop := context.WithCancel(ctx)
	pub := &publisher{c: c, cancel: stop, done: make(chan struct{})}
	go func() {
		defer close(pub.done)
		tick := time.NewTicker(time.Duration(float64(time.Second) / p.Rate))
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			topic := topicName(n % p.Topics)
			data := fmt.Sprintf("%s#%d", topic, n)
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			pos, err := c.Publish(pctx, topic, []byte(data), client.WithKey("state"))
			cancel()
			pub.log = append(pub.log, Published{Topic: topic, Data: data, Pos: pos, Err: err, At: time.Now()})
			if ctx.Err() != nil && err != nil {
				return // stopped while this one was out: it may or may not have been published
			}
		}
	}()
	return pub, nil
}

func (p *publisher) stop() []Published {
	p.cancel()
	<-p.done
	p.c.Close()
	return p.log
}

func lastAcked(log []Published) map[string]string {
	last := make(map[string]string)
	for _, p := range log {
		if p.Err == nil {
			last[p.Topic] = p.Data
		}
	}
	return last
}

// Table writes the results as a Markdown table.
func Table(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| scenario\t| backplane\t| published\t| publisher errors\t| delivered\t| resets\t| violations\t| catch-up\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---:\t|---:\t|---:\t|---:\t|---:\t|---:\t|")
	for _, r := range results {
		v := fmt.Sprint(r.Violations)
		if r.Err != nil {
			v += " (run failed: " + r.Err.Error() + ")"
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %d\t| %d\t| %d\t| %d\t| %s\t| %v\t|\n", r.Scenario, r.Backplane,
			r.Published, r.Failed, r.Delivered, r.Resets, v, r.CatchUp.Round(10*time.Millisecond))
	}
	tw.Flush()
}

// Failed reports whether any run failed or found a violation.
func Failed(results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil || r.Violations > 0 {
			errs = append(errs, fmt.Errorf("%s on %s: %d violations, error %v (logs in %s)", r.Scenario, r.Backplane, r.Violations, r.Err, r.Dir))
		}
	}
	return errors.Join(errs...)
}
