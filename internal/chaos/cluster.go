package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RedisCluster is a Redis Cluster of loopback redis-server processes:
// three primaries, each with one replica.
type RedisCluster struct {
	Servers []*Server
}

// clusterNodeTimeout is how long the cluster takes a silent primary to
// be down before its replica takes over.
const clusterNodeTimeout = 1000 * time.Millisecond

// StartRedisCluster starts six redis-server processes in cluster mode,
// each with its own directory under dir, and joins them with
// redis-cli --cluster create: three primaries and three replicas.
func StartRedisCluster(dir string) (*RedisCluster, error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("chaos: redis-cli: %w", err)
	}
	c := &RedisCluster{}
	var addrs []string
	for i := range 6 {
		d := filepath.Join(dir, fmt.Sprint("node", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.Close()
			return nil, err
		}
		s, err := StartRedis(d, &RedisOptions{Args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", fmt.Sprint(clusterNodeTimeout.Milliseconds()),
			// A replica must hold its primary's data before a test
			// kills the primary: sync at once, not after 5s.
			"--repl-diskless-sync-delay", "0",
		}})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("chaos: redis-cli --cluster create: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	if err := c.WaitOK(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Addrs returns every server's address, to seed a cluster client.
func (c *RedisCluster) Addrs() []string {
	var a []string
	for _, s := range c.Servers {
		a = append(a, s.Addr())
	}
	return a
}

// WaitOK waits until every running server reports cluster_state:ok and
// sees every slot served, and every running replica is in sync with its
// primary.
func (c *RedisCluster) WaitOK(ctx context.Context) error {
	for {
		ok := true
		for _, s := range c.Servers {
			if !s.running() {
				continue
			}
			info, err := s.redisCommand(ctx, "CLUSTER", "INFO")
			if err != nil || infoField(info, "cluster_state") != "ok" || infoField(info, "cluster_slots_ok") != "16384" {
				ok = false
				break
			}
			repl, err := s.redisCommand(ctx, "INFO", "replication")
			if err != nil || infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
				ok = false // a replica that has not synced cannot take over
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: Redis Cluster not ok: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PrimaryOf returns the server that is the primary for key's slot now.
func (c *RedisCluster) PrimaryOf(ctx context.Context, key string) (*Server, error) {
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		slot, err := s.redisCommand(ctx, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			return nil, err
		}
		role, err := s.redisCommand(ctx, "INFO", "replication")
		if err != nil {
			return nil, err
		}
		if infoField(role, "role") != "master" {
			continue
		}
		// COUNTKEYSINSLOT answers on any node; GETKEYSINSLOT too. Ask
		// the node whether it serves the slot: CLUSTER NODES marks
		// itself "myself".
		nodes, err := s.redisCommand(ctx, "CLUSTER", "NODES")
		if err != nil {
			return nil, err
		}
		if servesSlot(nodes, slot) {
			return s, nil
		}
	}
	return nil, errors.New("chaos: no running primary serves the slot")
}

// servesSlot reports whether the "myself" line of CLUSTER NODES lists a
// range that holds slot.
func servesSlot(nodes, slot string) bool {
	var n int
	fmt.Sscan(slot, &n)
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "myself") {
			continue
		}
		for _, r := range f[8:] {
			var lo, hi int
			if k, _ := fmt.Sscanf(r, "%d-%d", &lo, &hi); k == 2 {
				if lo <= n && n <= hi {
					return true
				}
			} else if k == 1 && lo == n {
				return true
			}
		}
	}
	return false
}

// Close kills every server.
func (c *RedisCluster) Close() error {
	var errs []error
	for _, s := range c.Servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// NATSCluster is a JetStream cluster of three loopback nats-server
// processes.
type NATSCluster struct {
	Servers []*Server
}

// StartNATSCluster starts three nats-server processes that route to each
// other as one JetStream cluster, each storing under its own directory of
// dir, and waits until JetStream answers.
func StartNATSCluster(dir string) (*NATSCluster, error) {
	var routes []string
	var cports []int
	for range 3 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		cports = append(cports, p)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &NATSCluster{}
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprint("nats", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.Close()
			return nil, err
		}
		s, err := newNATS(d, &NATSOptions{Args: []string{
			"-n", fmt.Sprint("n", i), "--cluster_name", "chaos",
			"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", cports[i]),
			"--routes", strings.Join(routes, ","),
		}})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
	}
	// Start them together: a JetStream cluster elects its meta leader
	// only once a majority runs.
	errs := make(chan error, len(c.Servers))
	for _, s := range c.Servers {
		go func() { errs <- s.Start() }()
	}
	for range c.Servers {
		if err := <-errs; err != nil {
			c.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	if err := c.WaitJetStream(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// URL returns every server's URL, comma-separated, as nats.Connect takes
// them.
func (c *NATSCluster) URL() string {
	var u []string
	for _, s := range c.Servers {
		u = append(u, s.URL())
	}
	return strings.Join(u, ",")
}

// WaitJetStream waits until JetStream answers an account info request
// through the cluster.
func (c *NATSCluster) WaitJetStream(ctx context.Context) error {
	nc, err := nats.Connect(c.URL(), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("chaos: connect to the NATS cluster: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: JetStream cluster not ready: %w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close kills every server.
func (c *NATSCluster) Close() error {
	var errs []error
	for _, s := range c.Servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
