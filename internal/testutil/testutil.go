// Package testutil starts real components for tests: redis-server on free
// loopback ports, the proxy in-process, and a raw RESP client that returns
// reply bytes exactly as they arrived.
package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/upstream"
)

// RequireEnv is set by .ci/run: tests needing redis-server fail instead of
// skipping when it is missing.
const RequireEnv = "AGENTPROXY_REQUIRE_REDIS"

// RedisServerPath finds redis-server or skips the test (fails under CI).
func RedisServerPath(t testing.TB) string {
	t.Helper()
	return NeedBinary(t, "redis-server", "redis-server")
}

// NeedBinary finds a program the test needs, from Debian package pkg. It
// skips the test when it is missing locally, and fails it under CI
// (RequireEnv=1), so a missing install step cannot hide.
func NeedBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s not found but %s=1: install it (apt-get install %s)", name, RequireEnv, pkg)
		}
		t.Skip(name + " not installed; set " + RequireEnv + "=1 to make this a failure")
	}
	return p
}

// Redis is a redis-server process started for a test.
type Redis struct {
	Addr string
	Port int
	Dir  string
	cmd  *exec.Cmd
	t    testing.TB
	args []string
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartRedis starts redis-server on a free port with no persistence; extra
// arguments are passed through (e.g. "--requirepass", "x"). It is stopped
// when the test ends.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	bin := RedisServerPath(t)
	r := &Redis{Dir: t.TempDir(), t: t}
	r.Port = FreePort(t)
	r.Addr = "127.0.0.1:" + strconv.Itoa(r.Port)
	r.args = append([]string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.Dir, "--protected-mode", "no"}, extra...)
	_ = bin
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// StartRedisTLS starts redis-server with args as given (for TLS: no plain
// port) and waits until port accepts connections. It is stopped when the
// test ends.
func StartRedisTLS(t testing.TB, port int, args ...string) *Redis {
	t.Helper()
	RedisServerPath(t)
	r := &Redis{Dir: t.TempDir(), t: t, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port)}
	r.args = append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.Dir, "--protected-mode", "no"}, args...)
	r.cmd = exec.Command("redis-server", r.args...)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(r.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not start", r.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start (re)starts the server on its port and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", r.args...)
	r.cmd.Stdout, r.cmd.Stderr = nil, nil
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
		if err == nil {
			c.Write([]byte("PING\r\n"))
			c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not start", r.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: like a crash) and waits for it.
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// Pause stops the server with SIGSTOP: it keeps its sockets and answers
// nothing, like a hung server. Resume undoes it.
func (r *Redis) Pause() { r.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() { r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) {
	r.t.Helper()
	if r.cmd == nil || r.cmd.Process == nil {
		r.t.Fatalf("redis-server on %s is not running", r.Addr)
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("signal redis-server: %v", err)
	}
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr }

// ProxyConfig returns a test configuration forwarding to url, listening on
// a free loopback port, metrics off, no snapshot file. It is a pure proxy
// (keyspace mode off, loopback clients are admins) for tests of forwarding
// fidelity; access-control tests use EnforcingConfig.
func ProxyConfig(t testing.TB, url string) config.Config {
	cfg := EnforcingConfig(t, url)
	cfg.Keyspace.Mode = "off" // and no users: loopback clients are admins, as on Redis itself
	return cfg
}

// EnforcingConfig is ProxyConfig with the production defaults of access
// control: keyspace mode enforce, loopback clients are agents of workspace
// "default".
func EnforcingConfig(t testing.TB, url string) config.Config {
	cfg := config.Default()
	cfg.Listen.Addr = "127.0.0.1:0"
	cfg.Listen.MetricsAddr = ""
	cfg.Upstream.URL = url
	cfg.Embedded.DataFile = filepath.Join(t.TempDir(), "embedded.snapshot")
	return cfg
}

// StartProxy starts the proxy in-process and waits until its upstream is
// connected. It is shut down when the test ends.
func StartProxy(t testing.TB, cfg config.Config) *app.App {
	t.Helper()
	var log *zap.Logger
	if tt, ok := t.(*testing.T); ok && os.Getenv("AGENTPROXY_TEST_LOG") == "1" {
		log = zaptest.NewLogger(tt)
	} else {
		log = zap.NewNop()
	}
	a, err := app.Start(cfg, log)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(func() { a.Shutdown() })
	if !a.WaitUp(10 * time.Second) {
		t.Fatalf("proxy upstream %s not reachable", cfg.Upstream.URL)
	}
	return a
}

// Conn is a raw RESP client: it sends commands and returns each reply's
// bytes exactly as they arrived.
type Conn struct {
	t   testing.TB
	nc  net.Conn
	buf []byte
	f   upstream.Framer
}

// Dial connects a raw client to addr.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &Conn{t: t, nc: nc}
	t.Cleanup(func() { nc.Close() })
	return c
}

// DialFree connects a raw client that the test does not close by itself
// (for helpers that outlive one subtest or fuzz iteration); close it.
func DialFree(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return &Conn{t: t, nc: nc}
}

// SetT makes the connection report failures to t (a fuzz iteration's t,
// say, which the connection outlives).
func (c *Conn) SetT(t testing.TB) { c.t = t }

// NetConn exposes the socket.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() { c.nc.Close() }

// Do sends one command and returns its raw reply.
func (c *Conn) Do(args ...string) []byte {
	c.t.Helper()
	c.Send(args...)
	return c.Read()
}

// DoS is Do returning a string, for readable comparisons.
func (c *Conn) DoS(args ...string) string { return string(c.Do(args...)) }

// Send writes one command without reading.
func (c *Conn) Send(args ...string) {
	c.t.Helper()
	c.Write(upstream.AppendCommand(nil, args...))
}

// Write sends raw bytes.
func (c *Conn) Write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Read returns the next raw reply frame (10 s timeout).
func (c *Conn) Read() []byte {
	c.t.Helper()
	b, err := c.ReadTimeout(10 * time.Second)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return b
}

// ReadTimeout returns the next raw reply frame or an error.
func (c *Conn) ReadTimeout(d time.Duration) ([]byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	pos := 0
	tmp := make([]byte, 64<<10)
	for {
		if len(c.buf) > pos {
			n, done, err := c.f.Scan(c.buf[pos:])
			if err != nil {
				return nil, fmt.Errorf("bad reply %q: %w", c.buf, err)
			}
			pos += n
			if done {
				out := append([]byte(nil), c.buf[:pos]...)
				c.buf = c.buf[pos:]
				return out, nil
			}
		}
		n, err := c.nc.Read(tmp)
		c.buf = append(c.buf, tmp[:n]...)
		if err != nil && n == 0 {
			if len(c.buf) > 0 {
				return nil, fmt.Errorf("%w (partial %q)", err, c.buf)
			}
			return nil, err
		}
	}
}

// Normalize replaces the value after each given RESP field name in a raw
// reply (such as "id" in HELLO) so replies from different servers compare.
func Normalize(b []byte, fields ...string) []byte {
	for _, f := range fields {
		key := []byte("$" + strconv.Itoa(len(f)) + "\r\n" + f + "\r\n")
		i := bytes.Index(b, key)
		if i < 0 {
			continue
		}
		j := i + len(key)
		k := bytes.Index(b[j:], []byte("\r\n"))
		if k < 0 {
			continue
		}
		b = append(append(append([]byte{}, b[:j]...), ":X"...), b[j+k:]...)
	}
	return b
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// BuildProxy builds the agentproxy binary once per test process and
// returns its path (for tests that need it as a separate process: RSS,
// signals).
func BuildProxy(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		gomod, err := exec.Command(goBin, "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "agentproxy-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "agentproxy")
		cmd := exec.Command(goBin, "build", "-o", buildPath, "./cmd/agentproxy")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build agentproxy: %v", buildErr)
	}
	return buildPath
}

// Process is a proxy binary running for a test.
type Process struct {
	Addr string
	Cmd  *exec.Cmd
	Log  *SyncBuffer
}

// SyncBuffer is a buffer a process writes to while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// StartProcess runs the agentproxy binary with args (listening on a free
// port) and waits until it answers PING. It is killed when the test ends.
func StartProcess(t testing.TB, env []string, args ...string) *Process {
	t.Helper()
	bin := BuildProxy(t)
	port := FreePort(t)
	p := &Process{Addr: "127.0.0.1:" + strconv.Itoa(port), Log: &SyncBuffer{}}
	p.Cmd = exec.Command(bin, append([]string{"serve", "--listen", p.Addr, "--metrics", ""}, args...)...)
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start agentproxy: %v", err)
	}
	t.Cleanup(func() {
		if p.Cmd.ProcessState == nil {
			p.Cmd.Process.Kill()
			p.Cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err == nil {
			c.Write([]byte("PING\r\n"))
			c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agentproxy on %s did not start:\n%s", p.Addr, p.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RSS is the process's resident set size in bytes (Linux).
func (p *Process) RSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
