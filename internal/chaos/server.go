package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startWait bounds how long a started server may take to answer.
const startWait = 30 * time.Second

// Server is a redis-server or nats-server process on a loopback port that
// a test or the chaos command owns: it can kill it, stop and continue it,
// and start it again on the same port and data directory. Its methods are
// safe for concurrent use.
type Server struct {
	name string   // "redis" or "nats", for errors
	bin  string   // the binary
	args []string // its arguments
	dir  string   // the data directory
	port int
	// ready reports whether the server answers on its port.
	ready func(addr string) error

	mu  sync.Mutex // guards cmd and the process state
	cmd *exec.Cmd
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Dir returns the server's data directory.
func (s *Server) Dir() string { return s.dir }

// RedisOptions configures [StartRedis].
type RedisOptions struct {
	// AppendOnly turns the append-only file on, written with fsync every
	// second. Default: off.
	AppendOnly bool
	// Args are further redis-server arguments, as "--name", "value".
	Args []string
}

// StartRedis starts redis-server on a free loopback port with dir as its
// data directory. It saves no RDB file by itself (BGSAVE does), so that a
// restart loads exactly what the caller saved.
func StartRedis(dir string, o *RedisOptions) (*Server, error) {
	if o == nil {
		o = &RedisOptions{}
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("chaos: redis-server: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--dbfilename", "dump.rdb", "--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"), "--protected-mode", "no",
	}
	if o.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, o.Args...)
	s := &Server{name: "redis", bin: bin, args: args, dir: dir, port: port, ready: redisReady}
	return s, s.Start()
}

// NATSOptions configures [StartNATS].
type NATSOptions struct {
	// Args are further nats-server arguments.
	Args []string
}

// NATSServerEnv names the environment variable that gives the nats-server
// binary to run instead of the one on PATH: the fault tests run against
// the distribution's server and against a current build of it.
const NATSServerEnv = "FANOUT_NATS_SERVER"

// StartNATS starts nats-server with JetStream on a free loopback port,
// storing its streams under dir.
func StartNATS(dir string, o *NATSOptions) (*Server, error) {
	s, err := newNATS(dir, o)
	if err != nil {
		return nil, err
	}
	return s, s.Start()
}

// newNATS returns a nats-server that is not started yet.
func newNATS(dir string, o *NATSOptions) (*Server, error) {
	if o == nil {
		o = &NATSOptions{}
	}
	name := "nats-server"
	if env := os.Getenv(NATSServerEnv); env != "" {
		name = env
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("chaos: nats-server: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", dir,
		"-l", filepath.Join(dir, "nats.log")}
	args = append(args, o.Args...)
	return &Server{name: "nats", bin: bin, args: args, dir: dir, port: port, ready: natsReady}, nil
}

// URL returns the server's address as a nats:// URL.
func (s *Server) URL() string { return "nats://" + s.Addr() }

// Start starts the server when it is not running, and waits until it
// answers.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	// Its own process group, so that a terminal's signals reach only the
	// process that owns it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: start %s: %w", s.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(startWait)
	for {
		err := s.ready(s.Addr())
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("chaos: %s exited at start: %v (see %s)", s.name, werr, s.dir)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("chaos: %s not ready after %v: %w", s.name, startWait, err)
		}
	}
	s.cmd = cmd
	// Reap it in the background: Kill waits until it is reaped.
	go func() { <-exited }()
	return nil
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Kill sends SIGKILL and waits until the port is free.
func (s *Server) Kill() error { return s.signalAndWait(syscall.SIGKILL) }

// Terminate sends SIGTERM (a clean shutdown, which saves when
// persistence is on) and waits until the port is free.
func (s *Server) Terminate() error { return s.signalAndWait(syscall.SIGTERM) }

// Stop sends SIGSTOP and waits until the process is stopped: the server
// keeps its connections but answers nothing, as a hung host does.
func (s *Server) Stop() error {
	if err := s.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	return waitStopped(pid)
}

// waitStopped waits until the process's state in /proc is "stopped": a
// signal takes effect when the process is next scheduled, not when kill
// returns.
func waitStopped(pid int) error {
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	deadline := time.Now().Add(startWait)
	for {
		b, err := os.ReadFile(stat)
		if err != nil {
			return nil // no /proc: take the signal as done
		}
		// The state follows the command name, which is in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'T' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: process %d not stopped after %v", pid, startWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// Continue sends SIGCONT after [Server.Stop].
func (s *Server) Continue() error { return s.signal(syscall.SIGCONT) }

// Restart kills the server and starts it again on the same port and data
// directory.
func (s *Server) Restart() error {
	if err := s.Kill(); err != nil {
		return err
	}
	return s.Start()
}

// Close kills the server; it is idempotent.
func (s *Server) Close() error { return s.Kill() }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("chaos: %s: not running", s.name)
	}
	return syscall.Kill(s.cmd.Process.Pid, sig)
}

func (s *Server) signalAndWait(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	pid := s.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGCONT) // a stopped process ignores SIGTERM
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("chaos: signal %s: %w", s.name, err)
	}
	s.cmd = nil
	deadline := time.Now().Add(startWait)
	for {
		// The process is gone once signal 0 fails (the reaper waited for
		// it) and nothing listens on the port.
		if syscall.Kill(pid, 0) != nil {
			c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
			if err != nil {
				return nil
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: %s (pid %d) still running after %v", s.name, pid, startWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BGSave makes Redis write its RDB file, and waits until it is written.
func (s *Server) BGSave(ctx context.Context) error {
	saves := func() (string, bool, error) {
		info, err := s.redisCommand(ctx, "INFO", "persistence")
		if err != nil {
			return "", false, err
		}
		return infoField(info, "rdb_saves"), infoField(info, "rdb_bgsave_in_progress") == "0", nil
	}
	before, _, err := saves()
	if err != nil {
		return err
	}
	if _, err := s.redisCommand(ctx, "BGSAVE"); err != nil {
		return err
	}
	for {
		n, idle, err := saves()
		if err != nil {
			return err
		}
		if n != before && idle {
			info, err := s.redisCommand(ctx, "INFO", "persistence")
			if err != nil {
				return err
			}
			if infoField(info, "rdb_last_bgsave_status") != "ok" {
				return fmt.Errorf("chaos: BGSAVE failed (see %s)", s.dir)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: BGSAVE: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// infoField returns a field of Redis's INFO text.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

// redisCommand sends one command and returns its reply's text: the value
// of an integer, a simple string or a bulk string.
func (s *Server) redisCommand(ctx context.Context, args ...string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return "", fmt.Errorf("chaos: redis %s: %w", args[0], err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(startWait))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", fmt.Errorf("chaos: redis %s: %w", args[0], err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("chaos: redis %s: %w", args[0], err)
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("chaos: redis %s: %s", args[0], line[1:])
	case strings.HasPrefix(line, "$"):
		var n int
		fmt.Sscan(line[1:], &n)
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("chaos: redis %s: %w", args[0], err)
		}
		return string(buf[:n]), nil
	default:
		return line[1:], nil
	}
}

func redisReady(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("answer %q", strings.TrimSpace(line)) // e.g. -LOADING
	}
	return nil
}

func natsReady(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	return nil
}

// freePort returns a loopback TCP port that nothing listens on.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("chaos: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// TempDir makes a data directory under the system's temporary directory.
func TempDir(name string) (string, error) {
	return os.MkdirTemp("", "fanout-chaos-"+name+"-")
}

// SaveStore copies NATS's JetStream store aside while the server is
// stopped (SIGSTOP), as a backup or what an OS crash leaves on disk would
// be; [Server.RestoreStore] puts it back.
func (s *Server) SaveStore() error {
	if err := s.Stop(); err != nil {
		return err
	}
	defer s.Continue()
	saved := filepath.Join(s.dir, "jetstream.saved")
	os.RemoveAll(saved)
	return os.CopyFS(saved, os.DirFS(filepath.Join(s.dir, "jetstream")))
}

// RestoreStore kills the server, puts back the store that SaveStore
// saved, and starts the server again.
func (s *Server) RestoreStore() error {
	if err := s.Kill(); err != nil {
		return err
	}
	store := filepath.Join(s.dir, "jetstream")
	if err := os.RemoveAll(store); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(s.dir, "jetstream.saved"), store); err != nil {
		return err
	}
	return s.Start()
}
