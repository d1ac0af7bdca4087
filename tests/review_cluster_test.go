package tests

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// Review tests: attacks and correctness checks on the cluster redirect
// follower.

const (
	rvAcme   = "deepagents:{acme}:"
	rvGlobex = "deepagents:{globex}:"
)

func rvClusterStart(t *testing.T, edit func(*config.Config)) (*testutil.Cluster, *app.App) {
	t.Helper()
	cl := testutil.StartCluster(t, 3, 1)
	cfg := testutil.EnforcingConfig(t, cl.URL())
	cfg.Upstream.ReadTimeout = config.D(2 * time.Second)
	cfg.Upstream.DialTimeout = config.D(500 * time.Millisecond)
	cfg.Listen.RequireAuth = true
	cfg.Users = []config.User{
		{Name: "alice", PasswordSHA256: isoHash("alice-pw"), Workspaces: []string{"acme"}, Role: "agent"},
		{Name: "bob", PasswordSHA256: isoHash("bob-pw"), Workspaces: []string{"globex"}, Role: "agent"},
	}
	if edit != nil {
		edit(&cfg)
	}
	return cl, testutil.StartProxy(t, cfg)
}

func rvLogin(t *testing.T, a *app.App, user string) *testutil.Conn {
	t.Helper()
	c := testutil.Dial(t, a.Addr())
	if got := c.DoS("AUTH", user, user+"-pw"); got != "+OK\r\n" {
		t.Fatalf("AUTH %s: %q", user, got)
	}
	return c
}

// TestReviewForgedMovedToMember: with keyspace.allow_scripts, an agent's
// script returns "-MOVED <slot> <addr>" naming a node of the cluster
// (member() passes). (1) the script, which already wrote, is run again
// and again; (2) the forged slot is any slot, here another workspace's:
// the proxy stores it in its slot map, and the victim's dedicated
// connections (MULTI, blocking) and keyless commands (SCAN) go to the
// wrong node until the next refresh.
func TestReviewForgedMovedToMember(t *testing.T) {
	cl, a := rvClusterStart(t, func(c *config.Config) { c.Keyspace.AllowScripts = true })
	acmeSlot, globexSlot := upstream.TagSlot("acme"), upstream.TagSlot("globex")
	acmeOwner, globexOwner := cl.SlotOwner(t, acmeSlot), cl.SlotOwner(t, globexSlot)
	t.Logf("acme slot %d on %s, globex slot %d on %s", acmeSlot, acmeOwner.Addr, globexSlot, globexOwner.Addr)
	var wrong string // a master that does not own globex's slot
	for _, m := range cl.Masters(t) {
		if m.Addr != globexOwner.Addr {
			wrong = m.Addr
			break
		}
	}
	alice := rvLogin(t, a, "alice")
	const script = "redis.call('INCR', KEYS[1]); return redis.error_reply(ARGV[1])"

	// (1) Reruns: a forged MOVED to the script's own node.
	ctr := rvAcme + "kv:runs"
	start := time.Now()
	got := alice.DoS("EVAL", script, "1", ctr, fmt.Sprintf("MOVED %d %s", acmeSlot, acmeOwner.Addr))
	took := time.Since(start)
	runs := testutil.Dial(t, acmeOwner.Addr).DoS("GET", ctr)
	t.Logf("forged MOVED to own node: reply %q after %v; the script ran %q times", got, took.Round(time.Millisecond), runs)
	if runs != "$1\r\n1\r\n" {
		t.Errorf("one EVAL ran the script (and its INCR) %q times", runs)
	}
	// A forged migration TRYAGAIN: retried with pauses for up to 3 s.
	ctr2 := rvAcme + "kv:runs2"
	start = time.Now()
	got = alice.DoS("EVAL", script, "1", ctr2, "TRYAGAIN Multiple keys request during rehashing of slot 1")
	took = time.Since(start)
	runs = testutil.Dial(t, acmeOwner.Addr).DoS("GET", ctr2)
	t.Logf("forged TRYAGAIN: reply %q after %v; the script ran %q times", got, took.Round(time.Millisecond), runs)
	if runs != "$1\r\n1\r\n" {
		t.Errorf("one EVAL ran the script %q times (forged TRYAGAIN)", runs)
	}

	// (2) Slot-map poisoning of another workspace.
	bob := rvLogin(t, a, "bob")
	for i := 0; i < 5; i++ {
		if g := bob.DoS("SET", fmt.Sprintf("%skv:k%d", rvGlobex, i), "v"); g != "+OK\r\n" {
			t.Fatalf("bob SET: %q", g)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := rvLogin(t, a, "alice")
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.DoS("EVAL", "return redis.error_reply(ARGV[1])", "1", rvAcme+"kv:x", fmt.Sprintf("MOVED %d %s", globexSlot, wrong))
		}
	}()
	var moved, emptyScan, total atomic.Int64
	var sample atomic.Value
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		total.Add(1)
		r := bob.DoS("BLPOP", rvGlobex+"kv:nolist", "0.01")
		m := bob.DoS("MULTI")
		s := bob.DoS("SET", rvGlobex+"kv:t", "1")
		e := bob.DoS("EXEC")
		if m != "+OK\r\n" {
			bob.DoS("DISCARD")
		}
		for _, x := range []string{r, s, e} {
			if strings.Contains(x, "MOVED") || strings.Contains(x, "EXECABORT") {
				moved.Add(1)
				sample.Store(x)
			}
		}
		sc := bob.DoS("SCAN", "0", "COUNT", "1000")
		if !strings.Contains(sc, "kv:k0") {
			emptyScan.Add(1)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("bob: %d rounds, %d replies with MOVED/EXECABORT (e.g. %v), %d SCANs missing bob's keys",
		total.Load(), moved.Load(), sample.Load(), emptyScan.Load())
	if moved.Load() > 0 || emptyScan.Load() > 0 {
		t.Errorf("another workspace's forged MOVED poisoned bob's routing: %d MOVED/EXECABORT replies, %d wrong SCANs",
			moved.Load(), emptyScan.Load())
	}
}

// TestReviewTryAgainReordersWrites: a pipelined batch [MSET a 1 b 2,
// SET a 3] while the slot is migrating (a still on the source, b on the
// target): MSET gets the migration TRYAGAIN, SET a 3 runs, then MSET is
// resent after the batch (the slot finished moving meanwhile) and runs:
// a ends as 1, though the client wrote 3 after 1 on one connection.
func TestReviewTryAgainReordersWrites(t *testing.T) {
	cl, a := rvClusterStart(t, nil)
	slot := upstream.TagSlot("acme")
	from := cl.SlotOwner(t, slot)
	var to *testutil.Redis
	for _, m := range cl.Masters(t) {
		if m.Addr != from.Addr {
			to = m
			break
		}
	}
	alice := rvLogin(t, a, "alice")
	ka, kb := rvAcme+"kv:a", rvAcme+"kv:b"
	alice.DoS("SET", ka, "0")
	alice.DoS("SET", kb, "0")
	src, dst := testutil.Dial(t, from.Addr), testutil.Dial(t, to.Addr)
	s := fmt.Sprint(slot)
	fromID, toID := cl.NodeID(t, from), cl.NodeID(t, to)
	dst.DoS("CLUSTER", "SETSLOT", s, "IMPORTING", fromID)
	src.DoS("CLUSTER", "SETSLOT", s, "MIGRATING", toID)
	if g := src.DoS("MIGRATE", "127.0.0.1", fmt.Sprint(to.Port), "", "0", "5000", "KEYS", kb); g != "+OK\r\n" {
		t.Fatalf("MIGRATE b: %q", g)
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		c1, c2 := testutil.DialFree(t, from.Addr), testutil.DialFree(t, to.Addr)
		defer c1.Close()
		defer c2.Close()
		c1.DoS("MIGRATE", "127.0.0.1", fmt.Sprint(to.Port), "", "0", "5000", "KEYS", ka)
		c2.DoS("CLUSTER", "SETSLOT", s, "NODE", toID)
		c1.DoS("CLUSTER", "SETSLOT", s, "NODE", toID)
		for _, m := range cl.Masters(t) {
			if m.Addr != from.Addr && m.Addr != to.Addr {
				c := testutil.DialFree(t, m.Addr)
				c.DoS("CLUSTER", "SETSLOT", s, "NODE", toID)
				c.Close()
			}
		}
	}()
	alice.Send("MSET", ka, "1", kb, "2")
	alice.Send("SET", ka, "3")
	r1, r2 := string(alice.Read()), string(alice.Read())
	time.Sleep(300 * time.Millisecond)
	final := alice.DoS("GET", ka)
	t.Logf("MSET: %q, SET a 3: %q, then GET a: %q", r1, r2, final)
	if r1 == "+OK\r\n" && r2 == "+OK\r\n" && final != "$1\r\n3\r\n" {
		t.Errorf("both writes acknowledged in order MSET a=1, SET a=3, yet a = %q: the proxy reordered them", final)
	}
}

// TestReviewRedirectBypassesOutputLimit: a reply obtained by following a
// redirect (here ASK, during a migration) is read with no MaxOut and no
// memory budget: listen.max_output_bytes does not apply to it.
func TestReviewRedirectBypassesOutputLimit(t *testing.T) {
	cl, a := rvClusterStart(t, func(c *config.Config) { c.Listen.MaxOutputBytes = 1 << 20 })
	slot := upstream.TagSlot("acme")
	from := cl.SlotOwner(t, slot)
	var to *testutil.Redis
	for _, m := range cl.Masters(t) {
		if m.Addr != from.Addr {
			to = m
			break
		}
	}
	big := strings.Repeat("x", 4<<20)
	key := rvAcme + "kv:big"
	src, dst := testutil.Dial(t, from.Addr), testutil.Dial(t, to.Addr)
	src.DoS("SET", key, big)
	alice := rvLogin(t, a, "alice")
	g := alice.Do("GET", key)
	t.Logf("GET of 4 MiB, no redirect: %d bytes %q", len(g), trunc(g))
	alice = rvLogin(t, a, "alice")

	s := fmt.Sprint(slot)
	dst.DoS("CLUSTER", "SETSLOT", s, "IMPORTING", cl.NodeID(t, from))
	src.DoS("CLUSTER", "SETSLOT", s, "MIGRATING", cl.NodeID(t, to))
	defer func() {
		dst.DoS("CLUSTER", "SETSLOT", s, "STABLE")
		src.DoS("CLUSTER", "SETSLOT", s, "STABLE")
	}()
	if r := src.DoS("MIGRATE", "127.0.0.1", fmt.Sprint(to.Port), "", "0", "5000", "KEYS", key); r != "+OK\r\n" {
		t.Fatalf("MIGRATE: %q", r)
	}
	g = alice.Do("GET", key)
	t.Logf("GET of 4 MiB through ASK: %d bytes %q", len(g), trunc(g))
	if len(g) > 1<<20 {
		t.Errorf("a redirected reply of %d bytes reached the client past max_output_bytes = 1 MiB", len(g))
	}
}

func trunc(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// TestReviewEventLostOnAsk: the event emitter writes each workspace's
// XADD to the node of its slot and never looks at the replies: while the
// slot migrates and the event log has already moved, Redis answers ASK,
// and the event is counted as sent and lost.
func TestReviewEventLostOnAsk(t *testing.T) {
	cl, a := rvClusterStart(t, func(c *config.Config) { c.Events.PlainWrites = []string{"kv"} })
	slot := upstream.TagSlot("acme")
	from := cl.SlotOwner(t, slot)
	var to *testutil.Redis
	for _, m := range cl.Masters(t) {
		if m.Addr != from.Addr {
			to = m
			break
		}
	}
	alice := rvLogin(t, a, "alice")
	key, log := rvAcme+"kv:a", rvAcme+"events:log"
	alice.DoS("SET", key, "1")
	src, dst := testutil.Dial(t, from.Addr), testutil.Dial(t, to.Addr)
	time.Sleep(200 * time.Millisecond)
	if g := src.DoS("XLEN", log); g != ":1\r\n" {
		t.Fatalf("XLEN after the first write: %q", g)
	}
	s := fmt.Sprint(slot)
	dst.DoS("CLUSTER", "SETSLOT", s, "IMPORTING", cl.NodeID(t, from))
	src.DoS("CLUSTER", "SETSLOT", s, "MIGRATING", cl.NodeID(t, to))
	defer func() {
		dst.DoS("CLUSTER", "SETSLOT", s, "STABLE")
		src.DoS("CLUSTER", "SETSLOT", s, "STABLE")
	}()
	if r := src.DoS("MIGRATE", "127.0.0.1", fmt.Sprint(to.Port), "", "0", "5000", "KEYS", log); r != "+OK\r\n" {
		t.Fatalf("MIGRATE: %q", r)
	}
	if g := alice.DoS("SET", key, "2"); g != "+OK\r\n" {
		t.Fatalf("SET during the migration: %q", g)
	}
	time.Sleep(300 * time.Millisecond)
	n1, n2 := src.DoS("XLEN", log), dst.DoS("ASKING")+dst.DoS("XLEN", log)
	t.Logf("event log: source XLEN %q, target %q", n1, n2)
	if !strings.Contains(n2, ":2\r\n") {
		t.Errorf("the second write's event was lost (target log %q, source %q)", n2, n1)
	}
}
