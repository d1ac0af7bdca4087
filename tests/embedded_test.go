package tests

// Embedded-mode acceptance: the real binary serves with no Redis installed
// (redis-server is not on its PATH), redis-cli works against it, and data of
// every type survives SIGTERM and a restart.

import (
	"bytes"
	"errors"
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

	"github.com/agentproxy/agentproxy/internal/testutil"
)

// embBuild builds cmd/agentproxy into dir and returns the binary's path.
func embBuild(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v %q", err, out)
	}
	root := filepath.Dir(string(bytes.TrimSpace(out)))
	bin := filepath.Join(dir, "agentproxy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/agentproxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/agentproxy: %v\n%s", err, out)
	}
	return bin
}

// embLog collects a process's output safely across goroutines.
type embLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *embLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *embLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// embProc is one run of the binary.
type embProc struct {
	cmd  *exec.Cmd
	log  *embLog
	done chan struct{}
	err  error // set before done is closed
}

// embEnv is an environment with nothing of the test's: PATH is an empty
// directory (so no redis-server can be found), HOME and XDG_STATE_HOME are
// the given directory.
func embEnv(t *testing.T, home string, extra ...string) []string {
	empty := t.TempDir()
	return append([]string{"PATH=" + empty, "HOME=" + home, "XDG_STATE_HOME=" + filepath.Join(home, "state")}, extra...)
}

// embStart runs the binary and waits until addr accepts connections.
func embStart(t *testing.T, bin, addr string, env []string, args ...string) *embProc {
	t.Helper()
	p := &embProc{cmd: exec.Command(bin, args...), log: &embLog{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("agentproxy %v exited before listening (%v):\n%s", args, p.err, p.log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("agentproxy %v not listening on %s after 15 s:\n%s", args, addr, p.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires exit code 0.
func (p *embProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("agentproxy did not exit 15 s after SIGTERM:\n%s", p.log)
	}
	if p.err != nil {
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			t.Fatalf("agentproxy exited with %d after SIGTERM, want 0:\n%s", ee.ExitCode(), p.log)
		}
		t.Fatalf("agentproxy: %v\n%s", p.err, p.log)
	}
}

// embKey is a key in the default workspace, inside the key grammar.
func embKey(name string) string { return "deepagents:{default}:kv:" + name }

// embData writes data of every type; embReads are the reads that must
// answer byte for byte the same after a restart.
var (
	embData = [][]string{
		{"SET", embKey("str"), "hello\r\nworld"},
		{"SET", embKey("empty"), ""},
		{"RPUSH", embKey("list"), "a", "b", "c", "a"},
		{"HSET", embKey("hash"), "f1", "v1", "f2", "v2"},
		{"SADD", embKey("set"), "x", "y", "z"},
		{"ZADD", embKey("zset"), "1.5", "a", "-2", "b", "1e10", "c"},
		{"XADD", embKey("stream"), "1-1", "f", "v"},
		{"XADD", embKey("stream"), "2-0", "f1", "v1", "f2", "v2"},
		{"SET", embKey("ttl"), "v", "EX", "1000"},
		{"SET", embKey("short"), "v", "PX", "1"},
	}
	embReads = [][]string{
		{"GET", embKey("str")}, {"GET", embKey("empty")},
		{"LRANGE", embKey("list"), "0", "-1"},
		{"HGETALL", embKey("hash")},
		{"SMEMBERS", embKey("set")},
		{"ZRANGE", embKey("zset"), "0", "-1", "WITHSCORES"},
		{"XRANGE", embKey("stream"), "-", "+"},
		{"TYPE", embKey("stream")}, {"TYPE", embKey("zset")},
		{"TTL", embKey("str")},
		{"EXISTS", embKey("short")},
	}
)

func embPTTL(t *testing.T, c *testutil.Conn, key string) int64 {
	t.Helper()
	r := c.DoS("PTTL", key)
	v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r, ":"), "\r\n"), 10, 64)
	if err != nil {
		t.Fatalf("PTTL %s: %q", key, r)
	}
	return v
}

// TestEmbeddedBinary is the acceptance test for embedded mode.
func TestEmbeddedBinary(t *testing.T) {
	dir := t.TempDir()
	bin := embBuild(t, dir)
	home := filepath.Join(dir, "home")

	t.Run("serves and keeps data across SIGTERM", func(t *testing.T) {
		port := testutil.FreePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		data := filepath.Join(dir, "data", "snap")
		env := embEnv(t, home)
		args := []string{"serve", "--listen", addr, "--metrics", "127.0.0.1:0", "--data", data}
		p := embStart(t, bin, addr, env, args...)

		c := testutil.Dial(t, addr)
		if got := c.DoS("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
		if got := c.DoS("SET", embKey("greeting"), "hello"); got != "+OK\r\n" {
			t.Fatalf("SET: %q", got)
		}
		if got := c.DoS("GET", embKey("greeting")); got != "$5\r\nhello\r\n" {
			t.Fatalf("GET: %q", got)
		}
		// redis-cli, as a developer would use it.
		p1 := strconv.Itoa(port)
		if got := cliRun(t, "", "-p", p1, "SET", embKey("cli"), "from redis-cli"); got != "OK\n" {
			t.Errorf("redis-cli SET: %q", got)
		}
		if got := cliRun(t, "", "-p", p1, "GET", embKey("cli")); got != "from redis-cli\n" {
			t.Errorf("redis-cli GET: %q", got)
		}
		if got := cliRun(t, "", "-p", p1, "GET", embKey("greeting")); got != "hello\n" {
			t.Errorf("redis-cli GET of a key set over RESP: %q", got)
		}

		for _, w := range embData {
			if r := c.DoS(w...); strings.HasPrefix(r, "-") {
				t.Fatalf("%v: %q", w, r)
			}
		}
		// The 1 ms key must be gone before the snapshot, like in Redis.
		for c.DoS("EXISTS", embKey("short")) != ":0\r\n" {
			time.Sleep(time.Millisecond)
		}
		var before []string
		for _, r := range embReads {
			before = append(before, c.DoS(r...))
		}
		ttl0 := embPTTL(t, c, embKey("ttl"))
		stopped := time.Now()
		c.Close()
		p.stop(t)
		if !strings.Contains(p.log.String(), "embedded") {
			t.Errorf("log does not mention the embedded store:\n%s", p.log)
		}
		if _, err := os.Stat(data); err != nil {
			t.Fatalf("no snapshot after SIGTERM: %v\n%s", err, p.log)
		}
		ents, _ := os.ReadDir(filepath.Dir(data))
		if len(ents) != 1 {
			t.Errorf("files next to the snapshot: %v", ents)
		}

		embStart(t, bin, addr, env, args...)
		c2 := testutil.Dial(t, addr)
		if got := c2.DoS("GET", embKey("greeting")); got != "$5\r\nhello\r\n" {
			t.Errorf("GET after restart: %q", got)
		}
		if got := cliRun(t, "", "-p", p1, "GET", embKey("cli")); got != "from redis-cli\n" {
			t.Errorf("redis-cli GET after restart: %q", got)
		}
		for i, r := range embReads {
			if got := c2.DoS(r...); got != before[i] {
				t.Errorf("%v after restart: %q, want %q", r, got, before[i])
			}
		}
		down := time.Since(stopped).Milliseconds()
		ttl1 := embPTTL(t, c2, embKey("ttl"))
		t.Logf("TTL %d ms before SIGTERM, %d ms after a %d ms restart", ttl0, ttl1, down)
		// The store's clock advances TTLs in ticks of 50 ms: a reading may
		// lag by up to one tick.
		if ttl1 <= 0 || ttl1 > ttl0-down+60 {
			t.Errorf("TTL after restart %d ms; want set and at most %d - %d ms (not extended)", ttl1, ttl0, down)
		}
	})

	t.Run("no arguments", func(t *testing.T) {
		// `agentproxy` alone serves the embedded store; only the
		// addresses come from the environment, so the test does not
		// take the real default ports. The snapshot goes to the default
		// place under XDG_STATE_HOME.
		port := testutil.FreePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		env := embEnv(t, home, "AGENTPROXY_LISTEN="+addr, "AGENTPROXY_METRICS=127.0.0.1:0")
		p := embStart(t, bin, addr, env)
		c := testutil.Dial(t, addr)
		if got := c.DoS("SET", embKey("noargs"), "v"); got != "+OK\r\n" {
			t.Fatalf("SET: %q", got)
		}
		c.Close()
		p.stop(t)
		snap := filepath.Join(home, "state", "agentproxy", "embedded.snapshot")
		if _, err := os.Stat(snap); err != nil {
			t.Fatalf("default snapshot %s: %v\n%s", snap, err, p.log)
		}
		embStart(t, bin, addr, env)
		if got := testutil.Dial(t, addr).DoS("GET", embKey("noargs")); got != "$1\r\nv\r\n" {
			t.Errorf("GET after restart: %q", got)
		}
	})

	t.Run("corrupt snapshot refuses to start", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "snap")
		if err := os.WriteFile(data, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
		cmd := exec.Command(bin, "serve", "--listen", addr, "--metrics", "", "--data", data)
		cmd.Env = embEnv(t, home)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want 1:\n%s", err, out)
		}
		if !bytes.Contains(out, []byte(data)) || !bytes.Contains(out, []byte("not an agentproxy snapshot")) {
			t.Errorf("error does not name the file and the problem:\n%s", out)
		}
		if b, _ := os.ReadFile(data); string(b) != "garbage" {
			t.Errorf("corrupt snapshot was overwritten: %q", b)
		}
	})
}

// TestEmbeddedManyKeys: commands on the embedded store must not slow down
// with the number of keys (miniredis with ClockTTL walks and sorts every
// key of every database on each command).
func TestEmbeddedManyKeys(t *testing.T) {
	cfg := testutil.ProxyConfig(t, "embedded")
	cfg.Embedded.SnapshotInterval.Duration = 0
	a := testutil.StartProxy(t, cfg)
	c := testutil.Dial(t, a.Addr())
	gets := func() time.Duration {
		start := time.Now()
		for i := 0; i < 100; i++ {
			if got := c.DoS("GET", embKey("k1")); got != "$2\r\nv1\r\n" {
				t.Fatalf("GET: %q", got)
			}
		}
		return time.Since(start)
	}
	// MSET of 1000 keys at a time: loading must not itself be slowed by
	// what the test measures.
	load := func(from, to int) {
		args := []string{"MSET"}
		for i := from; i < to; i++ {
			k := strconv.Itoa(i)
			args = append(args, embKey("k"+k), "v"+k)
		}
		if got := c.DoS(args...); got != "+OK\r\n" {
			t.Fatalf("MSET: %q", got)
		}
	}
	load(0, 10)
	few := gets()
	const n = 20000
	for i := 10; i < n; i += 1000 {
		load(i, min(i+1000, n))
	}
	many := gets()
	t.Logf("100 GETs: %v with 10 keys, %v with %d keys", few, many, n)
	if many > 20*few+300*time.Millisecond {
		t.Errorf("100 GETs take %v with %d keys in the embedded store (%v with 10): a command's cost grows with the keyspace", many, n, few)
	}
}
