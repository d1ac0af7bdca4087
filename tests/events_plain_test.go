package tests

// Events on plain writes ([events] plain_writes, SPEC §8) against a real
// redis-server: one envelope per key a successful write wrote, on the
// workspace's channel and in its log; none for a write that failed, was
// refused, or was queued in a transaction that did not run.

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

func TestEventsPlainWrites(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Events.PlainWrites = []string{"kv"}
	a := testutil.StartProxy(t, cfg)
	sub := ceSubscribe(t, a.Addr())
	c := testutil.Dial(t, a.Addr())
	direct := testutil.Dial(t, r.Addr)
	k := func(n string) string { return "deepagents:{default}:kv:" + n }
	logLen := func() string { return direct.DoS("XLEN", ceLog) }

	expect := func(what string, want ...string) {
		t.Helper()
		var got []string
		for range want {
			e := ceNext(t, sub)
			got = append(got, e.Type+" "+e.Resource+" "+e.Cmd)
			if e.Actor != "default" {
				t.Errorf("%s: actor %q", what, e.Actor)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: events %q, want %q", what, got, want)
		}
		ceNone(t, sub, what)
	}

	if got := c.DoS("MSET", k("a"), "1", k("b"), "2", k("c"), "3"); got != "+OK\r\n" {
		t.Fatal(got)
	}
	expect("MSET of 3 keys", "kv.write kv:a mset", "kv.write kv:b mset", "kv.write kv:c mset")
	if got := logLen(); got != ":3\r\n" {
		t.Errorf("event log after MSET: XLEN %q", got)
	}
	c.Do("HSET", k("h"), "f", "v")
	expect("HSET", "kv.write kv:h hset")
	c.Do("DEL", k("a"), k("b"))
	expect("DEL", "kv.delete kv:a del", "kv.delete kv:b del")
	c.Do("LMOVE", k("nolist"), k("dst"), "LEFT", "LEFT")
	ceNone(t, sub, "LMOVE of an empty source (nothing written)")
	c.Do("RPUSH", k("src"), "x")
	expect("RPUSH", "kv.write kv:src rpush")
	c.Do("LMOVE", k("src"), k("dst"), "LEFT", "LEFT")
	expect("LMOVE (both lists written)", "kv.write kv:src lmove", "kv.write kv:dst lmove")
	c.Do("DEL", k("missing"))
	ceNone(t, sub, "DEL of a missing key")
	c.Do("SET", k("a"), "v", "NX")
	expect("SET NX of a new key", "kv.write kv:a set")
	c.Do("SET", k("a"), "v", "NX")
	ceNone(t, sub, "SET NX of an existing key")
	c.Do("SET", k("new"), "v", "GET")
	expect("SET GET of a new key (nil, but written)", "kv.write kv:new set")
	c.Do("DEL", k("a"), k("new"))
	expect("DEL", "kv.delete kv:a del", "kv.delete kv:new del")

	// Failed and refused writes emit nothing.
	direct.Do("RPUSH", k("list"), "x")
	if got := c.DoS("SET", k("list"), "v", "XX", "GET"); !strings.HasPrefix(got, "-WRONGTYPE") {
		t.Fatalf("WRONGTYPE: %q", got)
	}
	ceNone(t, sub, "a write Redis refused")
	if got := c.DoS("INCR", k("c")); got != ":4\r\n" {
		t.Fatal(got)
	}
	expect("INCR", "kv.write kv:c incr")
	c.Do("SET", k("s"), "x")
	expect("SET", "kv.write kv:s set")
	if got := c.DoS("INCR", k("s")); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("INCR of a string: %q", got)
	}
	ceNone(t, sub, "INCR of a non-number")
	if got := c.DoS("SET", "deepagents:{other}:kv:x", "v"); !strings.HasPrefix(got, "-NOPERM") {
		t.Fatalf("another workspace: %q", got)
	}
	ceNone(t, sub, "a refused write")
	holder := testutil.Dial(t, a.Addr())
	holder.Do("LOCK.ACQUIRE", "kv:locked", "5000")
	expect("LOCK.ACQUIRE (the domain's own event)", "lock.acquired kv:locked LOCK.ACQUIRE")
	if got := c.DoS("SET", k("locked"), "v"); !strings.HasPrefix(got, "-LOCKED") {
		t.Fatalf("LOCKED: %q", got)
	}
	ceNone(t, sub, "a LOCKED write")
	holder.Do("SET", k("locked"), "v")
	expect("the holder's write", "kv.write kv:locked set")

	// Transactions: events once EXEC ran the write, for the writes that
	// succeeded; none for a discarded or aborted one.
	c.Do("MULTI")
	c.Do("SET", k("t1"), "v")
	c.Do("DISCARD")
	ceNone(t, sub, "DISCARD")
	c.Do("MULTI")
	c.Do("SET", k("t2"), "v")
	c.Do("SET", "deepagents:{other}:kv:x", "v")
	c.Do("EXEC")
	ceNone(t, sub, "EXECABORT")
	c.Do("MULTI")
	c.Do("SET", k("t3"), "v")
	c.Do("INCR", k("s")) // fails at EXEC
	c.Do("SET", k("locked"), "v")
	if got := c.DoS("EXEC"); !strings.HasPrefix(got, "*3\r\n+OK\r\n-ERR") || !strings.Contains(got, "-LOCKED") {
		t.Fatalf("EXEC: %q", got)
	}
	expect("EXEC with one good write", "kv.write kv:t3 set")
	w := testutil.Dial(t, a.Addr())
	w.Do("WATCH", k("watched"))
	direct.Do("SET", k("watched"), "changed")
	w.Do("MULTI")
	w.Do("SET", k("watched"), "v")
	if got := w.DoS("EXEC"); got != "*-1\r\n" {
		t.Fatalf("EXEC after WATCH: %q", got)
	}
	ceNone(t, sub, "a transaction WATCH aborted")

	// Kinds not listed emit nothing for plain writes.
	if got := c.DoS("SET", "deepagents:{default}:kvx", "v"); !strings.HasPrefix(got, "-") {
		t.Fatalf("bad kind accepted: %q", got)
	}
	ceNone(t, sub, "a key outside the grammar")

	// The log holds what the channel carried.
	if got := logLen(); got != ":18\r\n" {
		t.Errorf("event log XLEN %q, want 18 (every event sent)", got)
	}
}

// TestEventsPlainCoalesce: with a window, a burst of writes to one key
// sends its last event only; other keys keep theirs.
func TestEventsPlainCoalesce(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Events.PlainWrites = []string{"kv"}
	cfg.Events.Coalesce = config.D(100 * time.Millisecond)
	a := testutil.StartProxy(t, cfg)
	sub := ceSubscribe(t, a.Addr())
	c := testutil.Dial(t, a.Addr())
	for i := 0; i < 20; i++ {
		c.Send("INCR", "deepagents:{default}:kv:counter")
	}
	c.Send("SET", "deepagents:{default}:kv:other", "v")
	for i := 0; i < 21; i++ {
		c.Read()
	}
	got := map[string]int{}
	for i := 0; i < 2; i++ {
		e := ceNext(t, sub)
		got[e.Resource]++
	}
	ceNone(t, sub, "coalesced")
	if got["kv:counter"] != 1 || got["kv:other"] != 1 {
		t.Errorf("coalesced events %v, want one each", got)
	}
}
