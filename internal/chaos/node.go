package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofanout/fanout"
	fnats "github.com/gofanout/fanout/backplane/nats"
	fredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/transport/websocket"
	"github.com/nats-io/nats.go"
	goredis "github.com/redis/go-redis/v9"
)

// NodeConfig is what a node process needs.
type NodeConfig struct {
	// Backplane is "redis", "redis-cluster" or "nats".
	Backplane string
	// Storage is Redis's host:port, the comma-separated host:ports of a
	// Redis Cluster, or NATS's URL.
	Storage string
	// Listen is the node's host:port.
	Listen string
	// Name names the backplane's keys or streams.
	Name string
	// Replicas is the NATS streams' replication factor. Default: 1.
	Replicas int
	// Logger receives the node's logs. Default: discarded.
	Logger *slog.Logger
}

// drainTimeout bounds a node's Shutdown after SIGTERM.
const drainTimeout = 10 * time.Second

// RunNode serves one hub over WebSocket at /ws, allowing every client to
// publish, until ctx ends; then it drains its sessions, as a node does in
// a rolling restart.
func RunNode(ctx context.Context, cfg NodeConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		bp      fanout.Backplane
		closeBP func()
	)
	switch cfg.Backplane {
	case "redis":
		rc := goredis.NewClient(&goredis.Options{Addr: cfg.Storage})
		bp, closeBP = fredis.New(rc, &fredis.Options{Prefix: cfg.Name, Logger: log}), func() { rc.Close() }
	case "redis-cluster":
		rc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: strings.Split(cfg.Storage, ",")})
		bp, closeBP = fredis.New(rc, &fredis.Options{Prefix: cfg.Name, Logger: log}), func() { rc.Close() }
	case "nats":
		nc, err := nats.Connect(cfg.Storage, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
			nats.RetryOnFailedConnect(true))
		if err != nil {
			return fmt.Errorf("connect to NATS: %w", err)
		}
		bp = fnats.New(nc, &fnats.Options{Prefix: cfg.Name, Stream: strings.ToUpper(cfg.Name), Replicas: cfg.Replicas})
		closeBP = nc.Close
	default:
		return fmt.Errorf("unknown backplane %q", cfg.Backplane)
	}
	defer closeBP()
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Backplane: bp,
		Logger:    log,
		Authorize: func(context.Context, fanout.Principal, string, fanout.Action) error { return nil },
	})
	if err != nil {
		return err
	}
	defer hub.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	ws := websocket.New(hub, nil)
	defer ws.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /ws", ws)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	return errors.Join(hub.Shutdown(sctx), srv.Shutdown(sctx))
}

// Node is a node running as a separate process: the chaos command run
// again with the arguments "node" and the node's flags.
type Node struct {
	cfg  NodeConfig
	dir  string // where its log goes
	exe  string
	name string

	mu   sync.Mutex // guards cmd and exit
	cmd  *exec.Cmd
	exit chan struct{} // closed when the process has exited
}

// NewNode returns a node process, not started, of the executable exe
// (which must run [RunNode] when its first argument is "node").
func NewNode(exe, dir, name string, cfg NodeConfig) *Node {
	return &Node{cfg: cfg, dir: dir, exe: exe, name: name}
}

// URL returns the node's WebSocket endpoint.
func (n *Node) URL() string { return "ws://" + n.cfg.Listen + "/ws" }

// Args returns the command-line arguments that run the node.
func (c NodeConfig) Args() []string {
	return []string{"node", "-backplane", c.Backplane, "-storage", c.Storage, "-listen", c.Listen, "-name", c.Name,
		"-replicas", fmt.Sprint(max(1, c.Replicas))}
}

// Start starts the process and waits until it accepts connections.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(n.dir, n.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(n.exe, n.cfg.Args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: start %s: %w", n.name, err)
	}
	exit := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exit)
	}()
	deadline := time.Now().Add(startWait)
	for {
		c, err := net.DialTimeout("tcp", n.cfg.Listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exit:
			return fmt.Errorf("chaos: %s exited at start (see %s)", n.name, logf.Name())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exit
			return fmt.Errorf("chaos: %s not listening after %v", n.name, startWait)
		}
	}
	n.cmd, n.exit = cmd, exit
	return nil
}

// Kill sends SIGKILL and waits for the process to exit.
func (n *Node) Kill() error { return n.signalAndWait(syscall.SIGKILL) }

// Terminate sends SIGTERM, which drains the node's sessions, and waits
// for the process to exit.
func (n *Node) Terminate() error { return n.signalAndWait(syscall.SIGTERM) }

func (n *Node) signalAndWait(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil
	}
	if err := n.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: signal %s: %w", n.name, err)
	}
	select {
	case <-n.exit:
	case <-time.After(drainTimeout + startWait):
		n.cmd.Process.Kill()
		<-n.exit
	}
	n.cmd = nil
	return nil
}
