package tests

// Attacks on the plain-write policies (fencing, events) found in review:
// each test states the promise it checks, against a real redis-server.

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

func paStart(t *testing.T, mod func(*config.Config)) (addr string, direct *testutil.Conn) {
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	if mod != nil {
		mod(&cfg)
	}
	a := testutil.StartProxy(t, cfg)
	time.Sleep(500 * time.Millisecond) // the lock registry syncs
	return a.Addr(), testutil.Dial(t, r.Addr)
}

// A write queued in MULTI before another client takes the lock is checked
// at EXEC, atomically with the transaction: LOCKED.
func TestPolicyAttackMultiQueuedWriteSkipsLock(t *testing.T) {
	addr, direct := paStart(t, nil)
	const key = "deepagents:{default}:kv:doc"
	a, b := testutil.Dial(t, addr), testutil.Dial(t, addr)
	if got := a.DoS("MULTI"); got != "+OK\r\n" {
		t.Fatal(got)
	}
	if got := a.DoS("SET", key, "from-non-holder"); got != "+QUEUED\r\n" {
		t.Fatal(got)
	}
	got := b.DoS("LOCK.ACQUIRE", "kv:doc", "10000")
	if !strings.HasPrefix(got, "*6") {
		t.Fatalf("acquire: %q", got)
	}
	if got := b.DoS("SET", key, "from-holder"); got != "+OK\r\n" {
		t.Fatalf("holder SET: %q", got)
	}
	exec := a.DoS("EXEC")
	t.Logf("EXEC of the non-holder: %q; key now %q", exec, direct.DoS("GET", key))
	if v := direct.DoS("GET", key); strings.Contains(v, "from-non-holder") {
		t.Errorf("non-holder's queued SET overwrote the locked key at EXEC (EXEC %q)", exec)
	}
}

// A write pipelined behind a blocking command is sent after it returns,
// when a lock may have been taken meanwhile: it is checked (LOCKED).
func TestPolicyAttackPipelinedWriteBehindBlock(t *testing.T) {
	addr, direct := paStart(t, nil)
	const key = "deepagents:{default}:kv:doc"
	a, b := testutil.Dial(t, addr), testutil.Dial(t, addr)
	a.Write([]byte("*3\r\n$5\r\nBLPOP\r\n$29\r\ndeepagents:{default}:kv:empty\r\n$1\r\n1\r\n" +
		"*3\r\n$3\r\nSET\r\n$27\r\ndeepagents:{default}:kv:doc\r\n$15\r\nfrom-non-holder\r\n"))
	time.Sleep(200 * time.Millisecond)
	if got := b.DoS("LOCK.ACQUIRE", "kv:doc", "10000"); !strings.HasPrefix(got, "*6") {
		t.Fatalf("acquire: %q", got)
	}
	if got := b.DoS("SET", key, "from-holder"); got != "+OK\r\n" {
		t.Fatalf("holder SET: %q", got)
	}
	r1 := string(a.Read())
	r2 := string(a.Read())
	t.Logf("BLPOP: %q", r1)
	t.Logf("non-holder's SET after BLPOP: %q; key %q", r2, direct.DoS("GET", key))
	if v := direct.DoS("GET", key); strings.Contains(v, "from-non-holder") {
		t.Errorf("non-holder's pipelined SET overwrote the locked key (reply %q)", r2)
	}
}

// A blocking pop that started before the lock is unblocked by the acquire
// (LOCKED) and takes nothing from the locked list.
func TestPolicyAttackBlockingPopOfLockedKey(t *testing.T) {
	addr, direct := paStart(t, nil)
	const key = "deepagents:{default}:kv:q"
	a, b := testutil.Dial(t, addr), testutil.Dial(t, addr)
	a.Send("BLPOP", key, "5")
	time.Sleep(200 * time.Millisecond)
	if got := b.DoS("LOCK.ACQUIRE", "kv:q", "10000"); !strings.HasPrefix(got, "*6") {
		t.Fatalf("acquire: %q", got)
	}
	if got := b.DoS("RPUSH", key, "holders-item"); got != ":1\r\n" {
		t.Fatalf("holder RPUSH: %q", got)
	}
	got := string(a.Read())
	t.Logf("non-holder BLPOP: %q; LLEN %q", got, direct.DoS("LLEN", key))
	if strings.Contains(got, "holders-item") {
		t.Errorf("non-holder's BLPOP removed an element from the locked list")
	}
}

// A token counts only in the workspace of its lock: after WORKSPACE, the
// connection's tokens of the workspace it left are not injected.
func TestPolicyAttackTokensFollowWorkspaceSwitch(t *testing.T) {
	addr, direct := paStart(t, func(c *config.Config) {
		c.Listen.RequireAuth = true
		c.Users = []config.User{{Name: "u", PasswordSHA256: isoHash("pw"), Workspaces: []string{"a", "b"}, Role: "agent"}}
	})
	login := func() *testutil.Conn {
		c := testutil.Dial(t, addr)
		if got := c.DoS("AUTH", "u", "pw"); got != "+OK\r\n" {
			t.Fatal(got)
		}
		return c
	}
	c1, c2 := login(), login()
	c1.Do("WORKSPACE", "a")
	if got := c1.DoS("LOCK.ACQUIRE", "kv:doc", "10000"); !strings.HasPrefix(got, "*6") {
		t.Fatalf("acquire a: %q", got)
	}
	// Unlocked key of b: a plain write should just work.
	c1.Do("WORKSPACE", "b")
	got := c1.DoS("SET", "deepagents:{b}:kv:doc", "x")
	t.Logf("c1 in b, b's kv:doc unlocked: %q", got)
	if got != "+OK\r\n" {
		t.Errorf("write to an unlocked key of b refused with a's token: %q", got)
	}
	// b's kv:doc locked by another connection (same user) with the same
	// token number.
	c2.Do("WORKSPACE", "b")
	if got := c2.DoS("LOCK.ACQUIRE", "kv:doc", "10000"); !strings.HasPrefix(got, "*6") {
		t.Fatalf("acquire b: %q", got)
	}
	t.Logf("lock b: %q", direct.DoS("HGETALL", "deepagents:{b}:lock:kv:doc"))
	got = c1.DoS("SET", "deepagents:{b}:kv:doc", "from-c1")
	t.Logf("c1 (no lock in b) SET b's locked kv:doc: %q", got)
	if got == "+OK\r\n" {
		t.Errorf("connection without b's lock wrote b's locked key (a's token injected)")
	}
}

// Writes that changed nothing (their reply says so) emit no event.
func TestPolicyAttackEventsForNoops(t *testing.T) {
	addr, _ := paStart(t, func(c *config.Config) { c.Events.PlainWrites = []string{"kv"} })
	sub := ceSubscribe(t, addr)
	c := testutil.Dial(t, addr)
	k := func(n string) string { return "deepagents:{default}:kv:" + n }
	c.Do("SET", k("exists"), "v")
	ceNext(t, sub)
	for _, cmd := range [][]string{
		{"SETNX", k("exists"), "v"},
		{"HSETNX", k("h"), "f", "v"},
		{"MSETNX", k("exists"), "v", k("new"), "v"},
		{"EXPIRE", k("missing"), "100"},
		{"LPUSHX", k("missing"), "v"},
		{"DEL", k("missing1"), k("missing2")},
		{"SADD", k("set"), "m"}, // the member is there already
	} {
		switch cmd[0] {
		case "HSETNX":
			c.Do("HSET", k("h"), "f", "v")
			ceNext(t, sub)
		case "SADD":
			c.Do("SADD", k("set"), "m")
			ceNext(t, sub)
		}
		reply := c.DoS(cmd...)
		var evs []string
		for {
			b, err := sub.ReadTimeout(300 * time.Millisecond)
			if err != nil {
				break
			}
			evs = append(evs, string(b[strings.LastIndex(string(b), "{"):]))
		}
		if len(evs) != 0 {
			t.Errorf("%q changed nothing (%q) but emitted %d events: %q", cmd, reply, len(evs), evs)
		}
	}
}

// A wrapped write that meets NOSCRIPT is run again on the client's own
// (pinned) connection: after SELECT 1 it lands in database 1.
func TestPolicyAttackNoScriptRerunWrongDB(t *testing.T) {
	addr, direct := paStart(t, func(c *config.Config) {
		c.Keyspace.AllowSelect = true
		c.TTL = []config.TTL{{Kind: "kv", Default: config.D(time.Hour)}}
	})
	c := testutil.Dial(t, addr)
	if got := c.DoS("SELECT", "1"); got != "+OK\r\n" {
		t.Fatal(got)
	}
	c.DoS("HSET", "deepagents:{default}:kv:warm", "f", "v") // script cached
	direct.Do("SCRIPT", "FLUSH")
	got := c.DoS("HSET", "deepagents:{default}:kv:h", "f", "v")
	in0 := direct.DoS("EXISTS", "deepagents:{default}:kv:h")
	direct.Do("SELECT", "1")
	in1 := direct.DoS("EXISTS", "deepagents:{default}:kv:h")
	direct.Do("SELECT", "0")
	t.Logf("HSET after SELECT 1 + SCRIPT FLUSH: %q; exists in db0 %q, db1 %q", got, in0, in1)
	if in0 == ":1\r\n" {
		t.Errorf("the re-run write went to database 0, not the client's database 1")
	}
}

// The registry's load (SCAN <prefix>:{*}:lock:*) also matches kv keys
// whose names contain "}:lock:"; none of them is taken for a lock.
func TestPolicyAttackLoadMatchesKvKeys(t *testing.T) {
	r := testutil.StartRedis(t)
	direct := testutil.Dial(t, r.Addr)
	for i := 0; i < 100; i++ {
		direct.Do("SET", "deepagents:{default}:kv:x"+strconv.Itoa(i)+"}:lock:y", "v")
	}
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Listen.MetricsAddr = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	testutil.StartProxy(t, cfg)
	time.Sleep(700 * time.Millisecond)
	resp, err := http.Get("http://" + cfg.Listen.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "\nagentproxy_fencing_locks 0\n") {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "agentproxy_fencing") {
				t.Error(l)
			}
		}
	}
}

// A write with more arguments than the fenced-write script can unpack
// (Lua stops short of 8000) still gets its TTL rule, and one a lock may
// guard is refused with a clear error instead of a script error.
func TestPolicyAttackHugeWrite(t *testing.T) {
	addr, direct := paStart(t, func(c *config.Config) {
		c.TTL = []config.TTL{{Kind: "kv", Default: config.D(time.Hour)}}
	})
	c := testutil.Dial(t, addr)
	hset := func(key string) []string {
		args := []string{"HSET", key}
		for i := 0; i < 5000; i++ {
			args = append(args, "f"+strconv.Itoa(i), "v")
		}
		return args
	}
	const key = "deepagents:{default}:kv:big"
	if got := c.DoS(hset(key)...); got != ":5000\r\n" {
		t.Fatalf("HSET of 10,002 arguments under a TTL rule: %q", got)
	}
	if ttl := direct.DoS("PTTL", key); !strings.HasPrefix(ttl, ":3") {
		t.Errorf("PTTL %q, want the rule's hour", ttl)
	}
	if got := c.DoS("LOCK.ACQUIRE", "kv:locked", "10000"); !strings.HasPrefix(got, "*6") {
		t.Fatal(got)
	}
	other := testutil.Dial(t, addr)
	got := other.DoS(hset("deepagents:{default}:kv:locked")...)
	if !strings.HasPrefix(got, "-ERR a write of more than") {
		t.Errorf("huge write to a locked key: %q", got)
	}
	if n := direct.DoS("EXISTS", "deepagents:{default}:kv:locked"); n != ":0\r\n" {
		t.Errorf("the refused write wrote: EXISTS %q", n)
	}
}
