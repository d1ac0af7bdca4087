package tests

// Fencing beyond one proxy and one Redis: two proxies sharing a Redis (the
// sidecar deployment), a lock taken before a proxy starts, and the embedded
// store. And the domain commands inside MULTI.

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

// eventually polls f until it returns "" or the time is up, and reports the
// last complaint.
func eventually(t *testing.T, d time.Duration, f func() string) time.Duration {
	t.Helper()
	start := time.Now()
	msg := ""
	for time.Since(start) < d {
		if msg = f(); msg == "" {
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal(msg)
	return 0
}

func TestFencingAcrossProxies(t *testing.T) {
	r := testutil.StartRedis(t)
	direct := testutil.Dial(t, r.Addr)
	const key = "deepagents:{default}:kv:shared"
	// A lock taken before proxy B starts: B loads it.
	before := direct.DoS("EVAL", "return 1", "0") // Redis is up
	_ = before
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL()))
	holderA := testutil.Dial(t, a.Addr())
	if got := holderA.DoS("LOCK.ACQUIRE", "kv:early", "10000"); !strings.HasPrefix(got, "*6") {
		t.Fatal(got)
	}
	b := testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL()))
	writerB := testutil.Dial(t, b.Addr())
	eventually(t, 2*time.Second, func() string {
		if got := writerB.DoS("SET", "deepagents:{default}:kv:early", "x"); !strings.HasPrefix(got, "-LOCKED") {
			return "proxy B wrote a key locked before it started: " + got
		}
		return ""
	})

	// A lock taken through A reaches B's registry through the lock channel.
	if got := holderA.DoS("LOCK.ACQUIRE", "kv:shared", "5000"); !strings.HasPrefix(got, "*6") {
		t.Fatal(got)
	}
	took := eventually(t, 2*time.Second, func() string {
		if got := writerB.DoS("SET", key, "from-b"); !strings.HasPrefix(got, "-LOCKED") {
			direct.Do("DEL", key) // a write in the window; undo it and look again
			return "proxy B keeps writing past A's lock: " + got
		}
		return ""
	})
	t.Logf("proxy B refused writes under A's lock %v after the acquire", took)
	// The holder writes through its own proxy; B's client cannot.
	if got := holderA.DoS("SET", key, "from-a"); got != "+OK\r\n" {
		t.Fatalf("holder through A: %q", got)
	}
	if got := writerB.DoS("HSET", key+":part", "f", "v"); !strings.HasPrefix(got, "-LOCKED") {
		t.Fatalf("B under the lock: %q", got)
	}
	// Released through A: B writes again once it hears.
	holderA.Do("LOCK.RELEASE", "kv:shared", "1")
	eventually(t, 2*time.Second, func() string {
		if got := writerB.DoS("SET", key, "after"); got != "+OK\r\n" {
			return "B still refuses after the release: " + got
		}
		return ""
	})
	// With [fencing] strict, B checks every guarded write in Redis: no
	// window at all.
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Fencing.Strict = true
	s := testutil.StartProxy(t, cfg)
	strict := testutil.Dial(t, s.Addr())
	for i := 0; i < 50; i++ {
		res := "kv:strict" + strconv.Itoa(i%5)
		tok := tokenOf(holderA.Do("LOCK.ACQUIRE", res, "5000"))
		if tok == 0 {
			t.Fatal("acquire failed")
		}
		if got := strict.DoS("SET", "deepagents:{default}:"+res, "x"); !strings.HasPrefix(got, "-LOCKED") {
			t.Fatalf("strict proxy, write right after another proxy's acquire: %q", got)
		}
		holderA.Do("LOCK.RELEASE", res, strconv.FormatInt(tok, 10))
	}
}

func TestFencingEmbedded(t *testing.T) {
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, "embedded"))
	holder, other := testutil.Dial(t, a.Addr()), testutil.Dial(t, a.Addr())
	const key = "deepagents:{default}:kv:doc"
	if got := holder.DoS("LOCK.ACQUIRE", "kv:doc", "300"); !strings.HasPrefix(got, "*6") {
		t.Fatal(got)
	}
	if got := holder.DoS("HSET", key, "f", "v"); got != ":1\r\n" {
		t.Fatalf("holder: %q", got)
	}
	if got := other.DoS("SET", key, "x"); !strings.HasPrefix(got, "-LOCKED") {
		t.Fatalf("other: %q", got)
	}
	time.Sleep(400 * time.Millisecond)
	if got := other.DoS("LOCK.ACQUIRE", "kv:doc", "5000"); !strings.HasPrefix(got, "*6") {
		t.Fatal(got)
	}
	if got := holder.DoS("SET", key, "stale"); !strings.HasPrefix(got, "-FENCED") {
		t.Fatalf("expired holder: %q", got)
	}
	if got := other.DoS("HGET", key, "f"); !strings.HasPrefix(got, "$1\r\nv") {
		t.Fatalf("value: %q", got)
	}
}

// TestDomainCommandsInMulti: domain commands that are one script run inside
// the transaction, their replies in place; those that need several round
// trips, or would block, answer an error naming the command and why, and
// the transaction is discarded, as Redis does for a command it cannot
// queue.
func TestDomainCommandsInMulti(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL()))
	c := testutil.Dial(t, a.Addr())
	direct := testutil.Dial(t, r.Addr)
	c.Do("HELLO", "3")
	c.Do("MULTI")
	for _, args := range [][]string{
		{"LOCK.ACQUIRE", "kv:res", "10000"}, {"SET", "deepagents:{default}:kv:x", "1"}, {"CACHE.SET", "tool", "h", "v"},
		{"CACHE.GET", "tool", "h"}, {"LOCK.INFO", "kv:res"},
	} {
		if got := c.DoS(args...); got != "+QUEUED\r\n" {
			t.Fatalf("%q in MULTI: %q", args, got)
		}
	}
	got := c.DoS("EXEC")
	for _, want := range []string{"*5\r\n%3\r\n$5\r\ntoken\r\n:1\r\n", "+OK\r\n+OK\r\n$1\r\nv\r\n%5\r\n$4\r\nheld\r\n:1\r\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("EXEC: %q, want it to contain %q", got, want)
		}
	}
	// The lock taken in the transaction belongs to this connection: its
	// writes to the guarded key carry the token.
	if got := c.DoS("SET", "deepagents:{default}:kv:res", "v"); got != "+OK\r\n" {
		t.Fatalf("write under the lock taken in MULTI: %q", got)
	}
	if got := testutil.Dial(t, a.Addr()).DoS("SET", "deepagents:{default}:kv:res", "x"); !strings.HasPrefix(got, "-LOCKED") {
		t.Fatalf("another connection: %q", got)
	}
	c.Do("MULTI")
	c.Do("LOCK.RELEASE", "kv:res", "1")
	c.Do("LOCK.INFO", "kv:res")
	if got := c.DoS("EXEC"); !strings.HasPrefix(got, "*2\r\n:1\r\n%2\r\n$4\r\nheld\r\n:0") {
		t.Fatalf("release in MULTI: %q", got)
	}
	// Several round trips, or blocking: refused by name, transaction
	// discarded.
	for _, args := range [][]string{
		{"FILE.STAT", "/x"}, {"FILE.WRITE", "/x", "content"}, {"FILE.LS", "/"}, {"TODO.LIST"},
		{"LOCK.ACQUIRE", "r2", "100", "WAIT", "10"}, {"EVENTS.READ", "BLOCK", "10"},
	} {
		c.Do("MULTI")
		c.Do("SET", "deepagents:{default}:kv:discarded", "1")
		got := c.DoS(args...)
		if !strings.HasPrefix(got, "-ERR") || !strings.Contains(strings.ToLower(got), strings.ToLower(args[0])) {
			t.Errorf("%q in MULTI: %q, want an error naming it", args, got)
		}
		if got := c.DoS("EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
			t.Errorf("EXEC after %q: %q", args, got)
		}
	}
	if got := direct.DoS("EXISTS", "deepagents:{default}:kv:discarded"); got != ":0\r\n" {
		t.Errorf("a discarded transaction wrote: %q", got)
	}
	// A lock acquire queued in a transaction that is discarded leaves no
	// trace in the fencing registry: plain writes stay on the fast path.
	c.Do("MULTI")
	c.Do("LOCK.ACQUIRE", "kv:never", "10000")
	c.Do("DISCARD")
	if got := testutil.Dial(t, a.Addr()).DoS("SET", "deepagents:{default}:kv:never", "x"); got != "+OK\r\n" {
		t.Errorf("write after a discarded acquire: %q", got)
	}
}
