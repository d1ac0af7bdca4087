package tests

// Authentication (SPEC §10): users from config, AUTH and HELLO AUTH switch
// the connection's identity (role and workspace), WORKSPACE switches among
// the allowed ones, failed attempts are rate-limited per address, and no
// secret ever reaches the logs.

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/internal/wire"
)

const (
	authAlicePass = "alice-Pa55-7f3e9"
	authBobPass   = "bob-Pa55-c41d2"
	authRootPass  = "root-Pa55-0a8b6"
)

// authUsers are the users of these tests: alice is an agent of two
// workspaces, bob reads one, root administers.
func authUsers() []config.User {
	return []config.User{
		{Name: "alice", PasswordSHA256: isoHash(authAlicePass), Workspaces: []string{"alpha", "beta"}, Role: "agent"},
		{Name: "bob", PasswordSHA256: isoHash(authBobPass), Workspaces: []string{"gamma"}, Role: "readonly"},
		{Name: "root", PasswordSHA256: isoHash(authRootPass), Role: "admin"},
	}
}

// authStart starts Redis and an enforcing proxy with authUsers.
func authStart(t *testing.T, edit func(*config.Config)) (*testutil.Redis, *app.App) {
	t.Helper()
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Users = authUsers()
	if edit != nil {
		edit(&cfg)
	}
	return r, testutil.StartProxy(t, cfg)
}

// authStep is one command and the reply it must get: exact, or a prefix
// when want ends in "…".
type authStep struct {
	args []string
	want string
}

func authRun(t *testing.T, c *testutil.Conn, steps []authStep) {
	t.Helper()
	for _, s := range steps {
		authCheck(t, s, c.DoS(s.args...))
	}
}

func authCheck(t *testing.T, s authStep, got string) {
	t.Helper()
	if p, ok := strings.CutSuffix(s.want, "…"); ok {
		if !strings.HasPrefix(got, p) {
			t.Errorf("%q: %q, want %q...", s.args, got, p)
		}
	} else if got != s.want {
		t.Errorf("%q: %q, want %q", s.args, got, s.want)
	}
}

var (
	authOK        = "+OK\r\n"
	authWrongPass = "-" + wire.ErrWrongPass + "\r\n"
	authLimited   = "-" + wire.ErrAuthLimited + "\r\n"
	authNoAuth    = "-" + wire.ErrNoAuthRequired + "\r\n"
)

func TestAuthIdentitySwitch(t *testing.T) {
	r, a := authStart(t, nil)
	direct := testutil.Dial(t, r.Addr)
	direct.Do("SET", "deepagents:{alpha}:kv:a", "A")
	direct.Do("SET", "deepagents:{gamma}:kv:g", "G")
	c := testutil.Dial(t, a.Addr())
	authRun(t, c, []authStep{
		// The unauthenticated loopback sidecar is the default agent.
		{[]string{"WORKSPACE"}, "$7\r\ndefault\r\n"},
		{[]string{"GET", "deepagents:{alpha}:kv:a"}, "-NOPERM key 'deepagents:{alpha}:kv:a' is outside workspace 'default'…"},
		{[]string{"WORKSPACE", "alpha"}, "-NOPERM workspace 'alpha' is not allowed for user 'default'\r\n"},
		// Wrong passwords, unknown users, the password alone: refused, and
		// the identity stays.
		{[]string{"AUTH", "alice", "wrong"}, authWrongPass},
		{[]string{"AUTH", "alice", ""}, authWrongPass},
		{[]string{"AUTH", "alice", authBobPass}, authWrongPass},
		{[]string{"AUTH", "mallory", authAlicePass}, authWrongPass},
		{[]string{"AUTH", "ALICE", authAlicePass}, authWrongPass},
		{[]string{"AUTH", authAlicePass}, authWrongPass},
		{[]string{"AUTH", "alice", authAlicePass + " "}, authWrongPass},
		{[]string{"AUTH", "alice", authAlicePass, "extra"}, "-ERR syntax error\r\n"}, // as Redis 7
		{[]string{"WORKSPACE"}, "$7\r\ndefault\r\n"},
		// The right one switches identity: alice starts in her first
		// workspace.
		{[]string{"AUTH", "alice", authAlicePass}, authOK},
		{[]string{"WORKSPACE"}, "$5\r\nalpha\r\n"},
		{[]string{"GET", "deepagents:{alpha}:kv:a"}, "$1\r\nA\r\n"},
		{[]string{"SET", "deepagents:{alpha}:kv:b", "B"}, authOK},
		{[]string{"SET", "deepagents:{default}:kv:a", "x"}, "-NOPERM key 'deepagents:{default}:kv:a' is outside workspace 'alpha'…"},
		{[]string{"GET", "deepagents:{gamma}:kv:g"}, "-NOPERM…"},
		// WORKSPACE switches among hers only.
		{[]string{"WORKSPACE", "beta"}, authOK},
		{[]string{"WORKSPACE"}, "$4\r\nbeta\r\n"},
		{[]string{"SET", "deepagents:{beta}:kv:c", "C"}, authOK},
		{[]string{"GET", "deepagents:{alpha}:kv:a"}, "-NOPERM key 'deepagents:{alpha}:kv:a' is outside workspace 'beta'…"},
		{[]string{"WORKSPACE", "gamma"}, "-NOPERM workspace 'gamma' is not allowed for user 'alice'\r\n"},
		{[]string{"WORKSPACE", "default"}, "-NOPERM workspace 'default' is not allowed for user 'alice'\r\n"},
		{[]string{"WORKSPACE", "*"}, "-" + wire.ErrWSInvalid + "\r\n"},
		{[]string{"WORKSPACE", "bad name"}, "-" + wire.ErrWSInvalid + "\r\n"},
		{[]string{"WORKSPACE", strings.Repeat("w", 65)}, "-" + wire.ErrWSInvalid + "\r\n"},
		{[]string{"WORKSPACE", "alpha", "beta"}, "-ERR wrong number of arguments for 'workspace' command\r\n"},
		{[]string{"WORKSPACE"}, "$4\r\nbeta\r\n"},
		{[]string{"WORKSPACE", "alpha"}, authOK},
		{[]string{"GET", "deepagents:{alpha}:kv:b"}, "$1\r\nB\r\n"},
		// A failed AUTH keeps the current identity, as in Redis.
		{[]string{"AUTH", "bob", "wrong"}, authWrongPass},
		{[]string{"WORKSPACE"}, "$5\r\nalpha\r\n"},
		{[]string{"SET", "deepagents:{alpha}:kv:d", "D"}, authOK},
		// AUTH as another user switches again: bob reads gamma.
		{[]string{"AUTH", "bob", authBobPass}, authOK},
		{[]string{"WORKSPACE"}, "$5\r\ngamma\r\n"},
		{[]string{"GET", "deepagents:{gamma}:kv:g"}, "$1\r\nG\r\n"},
		{[]string{"SET", "deepagents:{gamma}:kv:g", "x"}, "-NOPERM user 'bob' is read-only; 'set' writes\r\n"},
		{[]string{"GET", "deepagents:{alpha}:kv:a"}, "-NOPERM…"},
		{[]string{"WORKSPACE", "alpha"}, "-NOPERM workspace 'alpha' is not allowed for user 'bob'\r\n"},
		// root goes anywhere.
		{[]string{"AUTH", "root", authRootPass}, authOK},
		{[]string{"WORKSPACE"}, "$7\r\ndefault\r\n"},
		{[]string{"WORKSPACE", "gamma"}, authOK},
		{[]string{"MGET", "deepagents:{alpha}:kv:a", "deepagents:{gamma}:kv:g", "plain"}, "*3\r\n$1\r\nA\r\n$1\r\nG\r\n$-1\r\n"},
	})
	if got := direct.DoS("GET", "deepagents:{gamma}:kv:g"); got != "$1\r\nG\r\n" {
		t.Errorf("bob wrote: %q", got)
	}
}

func TestAuthHello(t *testing.T) {
	_, a := authStart(t, nil)
	c := testutil.Dial(t, a.Addr())
	authRun(t, c, []authStep{
		{[]string{"HELLO", "3", "AUTH", "alice", "wrong"}, authWrongPass},
		{[]string{"WORKSPACE"}, "$7\r\ndefault\r\n"},
		// The failed HELLO did not switch the protocol either.
		{[]string{"HELLO", "3", "AUTH", "alice", authAlicePass}, "%7\r\n$6\r\nserver\r\n…"},
		{[]string{"WORKSPACE"}, "$5\r\nalpha\r\n"},
		{[]string{"SET", "deepagents:{alpha}:kv:h", "1"}, authOK},
		{[]string{"GET", "deepagents:{alpha}:kv:missing"}, "_\r\n"},
		{[]string{"GET", "deepagents:{default}:kv:h"}, "-NOPERM…"},
		{[]string{"HELLO", "2", "AUTH", "bob", authBobPass, "SETNAME", "reader"}, "*14\r\n…"},
		{[]string{"WORKSPACE"}, "$5\r\ngamma\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$6\r\nreader\r\n"},
		{[]string{"GET", "deepagents:{gamma}:kv:missing"}, "$-1\r\n"},
	})
	// HELLO AUTH on a fresh connection with require_auth.
	_, a2 := authStart(t, func(cfg *config.Config) { cfg.Listen.RequireAuth = true })
	c2 := testutil.Dial(t, a2.Addr())
	authRun(t, c2, []authStep{
		{[]string{"HELLO", "3"}, "-NOAUTH HELLO must be called with the client already authenticated…"},
		{[]string{"HELLO", "3", "AUTH", "alice", "nope"}, authWrongPass},
		{[]string{"PING"}, authNoAuth},
		{[]string{"HELLO", "3", "AUTH", "alice", authAlicePass}, "%7\r\n…"},
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"WORKSPACE"}, "$5\r\nalpha\r\n"},
	})
}

func TestAuthRequireAuth(t *testing.T) {
	r, a := authStart(t, func(cfg *config.Config) { cfg.Listen.RequireAuth = true })
	c := testutil.Dial(t, a.Addr())
	authRun(t, c, []authStep{
		{[]string{"PING"}, authNoAuth},
		{[]string{"GET", "deepagents:{default}:kv:x"}, authNoAuth},
		{[]string{"SET", "deepagents:{default}:kv:x", "1"}, authNoAuth},
		{[]string{"WORKSPACE"}, authNoAuth},
		{[]string{"MULTI"}, authNoAuth},
		{[]string{"SUBSCRIBE", "deepagents:{default}:events"}, authNoAuth},
		{[]string{"NOSUCHCOMMAND"}, authNoAuth},
		{[]string{"AUTH", "alice", "wrong"}, authWrongPass},
		{[]string{"PING"}, authNoAuth},
		{[]string{"AUTH", "alice", authAlicePass}, authOK},
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"WORKSPACE"}, "$5\r\nalpha\r\n"},
		{[]string{"SET", "deepagents:{alpha}:kv:x", "1"}, authOK},
	})
	if got := testutil.Dial(t, r.Addr).DoS("EXISTS", "deepagents:{default}:kv:x"); got != ":0\r\n" {
		t.Errorf("an unauthenticated write reached Redis: %q", got)
	}
	// QUIT needs no authentication.
	q := testutil.Dial(t, a.Addr())
	authRun(t, q, []authStep{{[]string{"QUIT"}, authOK}})
}

// TestAuthPipelined: commands pipelined after AUTH or WORKSPACE in the same
// batch run as the new identity, as they would on Redis.
func TestAuthPipelined(t *testing.T) {
	for _, requireAuth := range []bool{false, true} {
		_, a := authStart(t, func(cfg *config.Config) { cfg.Listen.RequireAuth = requireAuth })
		c := testutil.Dial(t, a.Addr())
		steps := []authStep{
			{[]string{"AUTH", "alice", authAlicePass}, authOK},
			{[]string{"SET", "deepagents:{alpha}:kv:p", "1"}, authOK},
			{[]string{"GET", "deepagents:{default}:kv:p"}, "-NOPERM key 'deepagents:{default}:kv:p' is outside workspace 'alpha'…"},
			{[]string{"SCAN", "0", "COUNT", "1000"}, "*2\r\n$1\r\n0\r\n*1\r\n$23\r\ndeepagents:{alpha}:kv:p\r\n"},
			{[]string{"WORKSPACE", "beta"}, authOK},
			{[]string{"SET", "deepagents:{beta}:kv:p", "2"}, authOK},
			{[]string{"GET", "deepagents:{alpha}:kv:p"}, "-NOPERM key 'deepagents:{alpha}:kv:p' is outside workspace 'beta'…"},
			{[]string{"SCAN", "0", "COUNT", "1000"}, "*2\r\n$1\r\n0\r\n*1\r\n$22\r\ndeepagents:{beta}:kv:p\r\n"},
			{[]string{"HELLO", "3", "AUTH", "bob", authBobPass}, "%7\r\n…"},
			{[]string{"SET", "deepagents:{gamma}:kv:p", "3"}, "-NOPERM user 'bob' is read-only; 'set' writes\r\n"},
			{[]string{"GET", "deepagents:{gamma}:kv:p"}, "_\r\n"},
			{[]string{"AUTH", "root", authRootPass}, authOK},
			{[]string{"SCAN", "0", "COUNT", "1000"}, "*2\r\n$1\r\n0\r\n*2\r\n…"},
		}
		var b []byte
		for _, s := range steps {
			b = isoCmd(b, s.args...)
		}
		c.Write(b)
		for _, s := range steps {
			authCheck(t, s, string(c.Read()))
		}
		if t.Failed() {
			t.Fatalf("require_auth=%v", requireAuth)
		}
		// Inside MULTI, AUTH is refused: queued, it would change the
		// pinned connection's user at EXEC. What follows is still checked
		// and the transaction is discarded, as Redis does after an error.
		b = nil
		tx := []authStep{
			{[]string{"AUTH", "alice", authAlicePass}, authOK},
			{[]string{"MULTI"}, authOK},
			{[]string{"AUTH", "root", authRootPass}, "-ERR 'auth' cannot be queued in MULTI through agentproxy…"},
			{[]string{"GET", "deepagents:{other}:kv:x"}, "-NOPERM key 'deepagents:{other}:kv:x' is outside workspace 'alpha'…"},
			{[]string{"EXEC"}, "-" + wire.ErrExecAbort + "\r\n"},
			{[]string{"WORKSPACE"}, "$5\r\nalpha\r\n"},
		}
		for _, s := range tx {
			b = isoCmd(b, s.args...)
		}
		c.Write(b)
		for _, s := range tx {
			authCheck(t, s, string(c.Read()))
		}
	}
}

// TestAuthPipelinedSubscribed: the same while subscribed (tunnel mode).
func TestAuthPipelinedSubscribed(t *testing.T) {
	_, a := authStart(t, nil)
	c := testutil.Dial(t, a.Addr())
	own := "deepagents:{default}:events"
	if got := c.DoS("SUBSCRIBE", own); !strings.HasPrefix(got, "*3\r\n$9\r\nsubscribe\r\n") {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	steps := []authStep{
		{[]string{"AUTH", "alice", authAlicePass}, authOK},
		{[]string{"SUBSCRIBE", "deepagents:{alpha}:events"}, "*3\r\n$9\r\nsubscribe\r\n$25\r\ndeepagents:{alpha}:events\r\n:2\r\n"},
		{[]string{"SUBSCRIBE", "deepagents:{default}:events:x"}, "-NOPERM channel 'deepagents:{default}:events:x' is outside workspace 'alpha'…"},
		{[]string{"WORKSPACE", "beta"}, authOK},
		{[]string{"SUBSCRIBE", "deepagents:{beta}:events"}, "*3\r\n$9\r\nsubscribe\r\n$24\r\ndeepagents:{beta}:events\r\n:3\r\n"},
		{[]string{"PING"}, "*2\r\n$4\r\npong\r\n$0\r\n\r\n"},
	}
	var b []byte
	for _, s := range steps {
		b = isoCmd(b, s.args...)
	}
	c.Write(b)
	for _, s := range steps {
		authCheck(t, s, string(c.Read()))
	}
}

func TestAuthRateLimited(t *testing.T) {
	_, a := authStart(t, nil)
	// Ten failures from one address, over several connections and both
	// ways of authenticating.
	conns := []*testutil.Conn{testutil.Dial(t, a.Addr()), testutil.Dial(t, a.Addr()), testutil.Dial(t, a.Addr())}
	for i := 0; i < 10; i++ {
		c := conns[i%len(conns)]
		args := []string{"AUTH", "alice", "guess-" + string(rune('a'+i))}
		if i%2 == 1 {
			args = []string{"HELLO", "2", "AUTH", "alice", "guess-" + string(rune('a'+i))}
		}
		if got := c.DoS(args...); got != authWrongPass {
			t.Fatalf("failure %d: %q", i+1, got)
		}
	}
	if n := a.Server().Stats.AuthFailures.Load(); n != 10 {
		t.Fatalf("auth failures counted: %d", n)
	}
	// The 11th attempt is refused without being checked, even with the
	// right password, from any connection of that address.
	for _, c := range append(conns, testutil.Dial(t, a.Addr())) {
		if got := c.DoS("AUTH", "alice", authAlicePass); got != authLimited {
			t.Fatalf("11th attempt: %q, want %q", got, authLimited)
		}
		if got := c.DoS("HELLO", "3", "AUTH", "alice", authAlicePass); got != authLimited {
			t.Fatalf("11th attempt by HELLO: %q", got)
		}
		if got := c.DoS("WORKSPACE"); got != "$7\r\ndefault\r\n" {
			t.Fatalf("identity after a refused attempt: %q", got)
		}
	}
	// Refused attempts are not failures that extend the lockout.
	if n := a.Server().Stats.AuthFailures.Load(); n != 10 {
		t.Fatalf("auth failures counted: %d", n)
	}
}

func TestAuthRateLimitWindowEnds(t *testing.T) {
	const window = 2 * time.Second
	_, a := authStart(t, func(cfg *config.Config) {
		cfg.Auth.MaxFailures = 3
		cfg.Auth.FailureWindow = config.D(window)
	})
	c := testutil.Dial(t, a.Addr())
	start := time.Now()
	for i := 0; i < 3; i++ {
		if got := c.DoS("AUTH", "alice", "wrong"); got != authWrongPass {
			t.Fatalf("failure %d: %q", i+1, got)
		}
	}
	if got := c.DoS("AUTH", "alice", authAlicePass); got != authLimited {
		t.Fatalf("4th attempt, %s after the first failure (window %s): %q", time.Since(start), window, got)
	}
	// Once the failures leave the window, the right password works again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.DoS("AUTH", "alice", authAlicePass)
		if got == authOK {
			break
		}
		if got != authLimited || time.Now().After(deadline) {
			t.Fatalf("after the window: %q", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if el := time.Since(start); el < window {
		t.Fatalf("accepted after %v, before the %v window ended", el, window)
	}
	if got := c.DoS("WORKSPACE"); got != "$5\r\nalpha\r\n" {
		t.Fatalf("WORKSPACE: %q", got)
	}
}

// authLogBuffer collects log output from many goroutines.
type authLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *authLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *authLogBuffer) Sync() error { return nil }

func (b *authLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestAuthLogsNoSecrets(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Users = authUsers()
	cfg.Keyspace.Mode = "warn" // warn mode logs violations: with them too
	var out authLogBuffer
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), &out, zap.DebugLevel))
	a, err := app.Start(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { a.Shutdown() }) }
	t.Cleanup(stop)
	if !a.Server().Pool().WaitUp(10 * time.Second) {
		t.Fatal("upstream not reachable")
	}

	secrets := []string{authAlicePass, authBobPass, authRootPass, "wrong-Secret-1", "wrong-Secret-2",
		"wrong-Secret-3", "lonely-Secret-4", "multi-Secret-5", "limited-Secret-6"}
	c := testutil.Dial(t, a.Addr())
	authRun(t, c, []authStep{
		{[]string{"AUTH", "alice", "wrong-Secret-1"}, authWrongPass},
		{[]string{"AUTH", "nosuchuser", "wrong-Secret-2"}, authWrongPass},
		{[]string{"HELLO", "3", "AUTH", "bob", "wrong-Secret-3"}, authWrongPass},
		{[]string{"AUTH", "lonely-Secret-4"}, authWrongPass},
		{[]string{"AUTH", "alice", authAlicePass}, authOK},
		{[]string{"HELLO", "2", "AUTH", "bob", authBobPass}, "*14\r\n…"},
		{[]string{"AUTH", "root", authRootPass}, authOK},
		{[]string{"AUTH", "alice", authAlicePass}, authOK},
		// A warn-mode violation is logged with the user.
		{[]string{"GET", "deepagents:{other}:kv:x"}, "$-1\r\n"},
		{[]string{"MULTI"}, authOK},
		{[]string{"AUTH", "alice", "multi-Secret-5"}, "-ERR 'auth' cannot be queued in MULTI through agentproxy…"},
		{[]string{"DISCARD"}, authOK},
	})
	// Four failures so far; six more reach the limit of ten.
	for i := 0; i < 6; i++ {
		authRun(t, c, []authStep{{[]string{"AUTH", "alice", "limited-Secret-6"}, authWrongPass}})
	}
	authRun(t, c, []authStep{{[]string{"AUTH", "alice", "limited-Secret-6"}, authLimited}})
	c.Close()
	// Let sessions end so everything they log is written.
	stop()

	logs := out.String()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	failures := 0
	for _, line := range lines {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if entry["msg"] == "auth failed" {
			failures++
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("a password is in the logs: %s", line)
			}
		}
	}
	// Each failure is logged; the refused 11th attempt is not checked.
	if failures != 10 {
		t.Errorf("%d \"auth failed\" lines, want 10:\n%s", failures, logs)
	}
	for _, name := range []string{`"user":"alice"`, `"user":"nosuchuser"`, `"user":"bob"`, `"user":"default"`} {
		if !strings.Contains(logs, name) {
			t.Errorf("the logs do not name %s:\n%s", name, logs)
		}
	}
}

func TestAuthConfigValidation(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6380", "10.1.2.3:6380", "[::]:6380", ":6380"} {
		cfg := config.Default()
		cfg.Listen.Addr = addr
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "listen.addr") {
			t.Errorf("listen.addr %s without users: %v, want an error naming listen.addr", addr, err)
		}
		// app.Start refuses it too, before listening.
		if a, err := app.Start(cfg, zap.NewNop()); err == nil {
			a.Shutdown()
			t.Errorf("app.Start accepted listen.addr %s without users", addr)
		}
		cfg.Users = authUsers()
		if err := cfg.Validate(); err != nil {
			t.Errorf("listen.addr %s with users: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:6380", "localhost:6380", "[::1]:6380"} {
		cfg := config.Default()
		cfg.Listen.Addr = addr
		if err := cfg.Validate(); err != nil {
			t.Errorf("loopback %s: %v", addr, err)
		}
	}
	// Users are checked field by field, all at once.
	cfg := config.Default()
	cfg.Users = []config.User{
		{Name: "", PasswordSHA256: "plain-text-password", Role: "root"},
		{Name: "x", PasswordSHA256: isoHash("p"), Role: "agent"},
		{Name: "x", PasswordSHA256: isoHash("p"), Workspaces: []string{"bad ws"}, Role: "agent"},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("bad users accepted")
	}
	for _, key := range []string{"users[0].name", "users[0].password_sha256", "users[0].role", "users[1].workspaces",
		"users[2].name", "users[2].workspaces[0]"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("the error does not name %s: %v", key, err)
		}
	}
	if strings.Contains(err.Error(), "plain-text-password") {
		t.Errorf("the error repeats the configured secret: %v", err)
	}
}
