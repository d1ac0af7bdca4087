package tests

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// Tests of the tool cache and of the events the domain commands emit
// (SPEC §5, §8), against a real redis-server and the embedded store.

const (
	ceChannel = "deepagents:{default}:events"
	ceLog     = "deepagents:{default}:events:log"
)

// ceEnvelope is the event JSON of SPEC §8.
type ceEnvelope struct {
	V        *int    `json:"v"`
	Type     string  `json:"type"`
	WS       string  `json:"ws"`
	Resource string  `json:"resource"`
	Actor    string  `json:"actor"`
	Cmd      string  `json:"cmd"`
	Version  *int64  `json:"version"`
	TS       float64 `json:"ts"`
}

// ceSubscribe opens a subscriber on the workspace's event channel.
func ceSubscribe(t testing.TB, addr string) *testutil.Conn {
	t.Helper()
	s := testutil.Dial(t, addr)
	got := s.DoS("SUBSCRIBE", ceChannel)
	if !strings.Contains(got, "subscribe") || !strings.Contains(got, ceChannel) {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	return s
}

// ceNext reads one published event, or fails.
func ceNext(t testing.TB, s *testutil.Conn) ceEnvelope {
	t.Helper()
	b, err := s.ReadTimeout(5 * time.Second)
	if err != nil {
		t.Fatalf("no event: %v", err)
	}
	v, ok := lkMust(t, b).([]any)
	if !ok || len(v) != 3 || v[0] != "message" || v[1] != ceChannel {
		t.Fatalf("not a message on %s: %q", ceChannel, b)
	}
	return ceDecode(t, v[2].(string))
}

func ceDecode(t testing.TB, s string) ceEnvelope {
	t.Helper()
	var e ceEnvelope
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		t.Fatalf("event JSON %q: %v", s, err)
	}
	if e.V == nil || *e.V != 1 || e.WS != "default" || e.Type == "" || e.Cmd == "" || e.Actor == "" || e.Resource == "" || e.TS <= 0 {
		t.Fatalf("incomplete envelope %s", s)
	}
	if d := time.Since(time.UnixMilli(int64(e.TS))); d < -time.Minute || d > time.Minute {
		t.Fatalf("envelope ts %v is not now (%v off): %s", e.TS, d, s)
	}
	return e
}

// ceNone checks that no event arrives within a short while.
func ceNone(t testing.TB, s *testutil.Conn, what string) {
	t.Helper()
	b, err := s.ReadTimeout(150 * time.Millisecond)
	if err == nil {
		t.Fatalf("%s: unexpected event %q", what, b)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: subscriber broke: %v", what, err)
	}
}

// ceLogEntries reads the whole event log with XRANGE through the proxy.
func ceLogEntries(t testing.TB, c *testutil.Conn) (ids []string, events []ceEnvelope) {
	t.Helper()
	b := c.Do("XRANGE", ceLog, "-", "+")
	entries, ok := lkMust(t, b).([]any)
	if !ok {
		if lkMust(t, b) == nil {
			return nil, nil
		}
		t.Fatalf("XRANGE: %q", b)
	}
	for _, e := range entries {
		pair := e.([]any)
		ids = append(ids, pair[0].(string))
		var fields []any
		switch f := pair[1].(type) {
		case []any:
			fields = f
		case lkMap:
			fields = f
		}
		if len(fields) != 2 || fields[0] != "event" {
			t.Fatalf("log entry fields %v", fields)
		}
		events = append(events, ceDecode(t, fields[1].(string)))
	}
	return ids, events
}

func TestEventsExactlyOncePerWrite(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		other := testutil.Dial(t, b.addr)
		sub := ceSubscribe(t, b.addr)
		want := 0
		xlen := func() {
			t.Helper()
			if got := c.DoS("XLEN", ceLog); got != ":"+strconv.Itoa(want)+"\r\n" {
				t.Fatalf("XLEN %s: %q, want %d", ceLog, got, want)
			}
		}
		ok := func(typ, cmd, res string, version int64, actor string) {
			t.Helper()
			e := ceNext(t, sub)
			if e.Type != typ || e.Cmd != cmd || (e.Resource != res && e.Resource != "lock:"+res) || (version >= 0 && (e.Version == nil || *e.Version != version)) || (actor != "" && e.Actor != actor) {
				t.Fatalf("event %+v, want %s %s %s v%d", e, typ, cmd, res, version)
			}
			ceNone(t, sub, cmd+" (a second event)")
			want++
			xlen()
		}
		fail := func(what string, reply []byte) {
			t.Helper()
			if len(reply) == 0 || reply[0] != '-' {
				t.Fatalf("%s should fail: %q", what, reply)
			}
			ceNone(t, sub, what)
			xlen()
		}
		xlen()
		tok := lkAcquire(t, c, "ev", 10000, "OWNER", "ag1")
		ok("lock.acquired", "LOCK.ACQUIRE", "ev", tok, "ag1")
		fail("contended acquire", other.Do("LOCK.ACQUIRE", "ev", "1000"))
		fail("acquire with bad ttl", c.Do("LOCK.ACQUIRE", "ev2", "0"))
		s := strconv.FormatInt(tok, 10)
		lkWantPrefix(t, "extend", c.Do("LOCK.EXTEND", "ev", s, "20000"), "*6\r\n")
		ok("lock.extended", "LOCK.EXTEND", "ev", tok, "")
		fail("extend by non-holder", other.Do("LOCK.EXTEND", "ev", strconv.FormatInt(tok+1, 10), "1000"))
		fail("release by non-holder", other.Do("LOCK.RELEASE", "ev", strconv.FormatInt(tok+1, 10)))
		if got := c.DoS("LOCK.RELEASE", "ev", s); got != ":1\r\n" {
			t.Fatalf("release: %q", got)
		}
		ok("lock.released", "LOCK.RELEASE", "ev", tok, "")
		fail("release again", c.Do("LOCK.RELEASE", "ev", s))
		fail("extend released", c.Do("LOCK.EXTEND", "ev", s, "1000"))
		c.Do("LOCK.INFO", "ev")
		ceNone(t, sub, "LOCK.INFO")
		xlen()
		if got := c.DoS("CACHE.SET", "tool", "h1", "value"); got != "+OK\r\n" {
			t.Fatalf("CACHE.SET: %q", got)
		}
		ok("cache.set", "CACHE.SET", "cache:tool:h1", -1, "")
		fail("CACHE.SET bad ttl", c.Do("CACHE.SET", "tool", "h1", "v", "TTL", "0"))
		fail("CACHE.SET bad option", c.Do("CACHE.SET", "tool", "h1", "v", "NOPE", "1"))
		// A cache entry under a lock: without the token LOCKED, with it OK.
		ctok := lkAcquire(t, c, "cache:tool:h2", 10000)
		ok("lock.acquired", "LOCK.ACQUIRE", "cache:tool:h2", ctok, "")
		fail("CACHE.SET under another's lock", other.Do("CACHE.SET", "tool", "h2", "v"))
		fail("CACHE.SET with a wrong token", other.Do("CACHE.SET", "tool", "h2", "v", "FENCE", strconv.FormatInt(ctok+5, 10)))
		if got := other.DoS("CACHE.SET", "tool", "h2", "v", "FENCE", strconv.FormatInt(ctok, 10)); got != "+OK\r\n" {
			t.Fatalf("CACHE.SET with the token: %q", got)
		}
		// A cache event's version is the entry's version (1, then 2).
		ok("cache.set", "CACHE.SET", "cache:tool:h2", 1, "")
		// The holder's own connection has its token injected.
		if got := c.DoS("CACHE.SET", "tool", "h2", "v2"); got != "+OK\r\n" {
			t.Fatalf("CACHE.SET by the holder: %q", got)
		}
		ok("cache.set", "CACHE.SET", "cache:tool:h2", 2, "")

		// The durable log matches what was published, in order.
		_, events := ceLogEntries(t, c)
		var types []string
		for _, e := range events {
			types = append(types, e.Type)
		}
		wantTypes := []string{"lock.acquired", "lock.extended", "lock.released", "cache.set", "lock.acquired", "cache.set", "cache.set"}
		if !slices.Equal(types, wantTypes) {
			t.Fatalf("log types %v, want %v", types, wantTypes)
		}
	})
}

func TestEventsRead(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		if got := c.DoS("EVENTS.READ"); got != "*-1\r\n" && got != "_\r\n" && got != "*0\r\n" {
			t.Fatalf("EVENTS.READ on an empty log: %q", got)
		}
		for i := 0; i < 5; i++ {
			tok := lkAcquire(t, c, "rd", 10000)
			if got := c.DoS("LOCK.RELEASE", "rd", strconv.FormatInt(tok, 10)); got != ":1\r\n" {
				t.Fatalf("release: %q", got)
			}
		}
		ids, _ := ceLogEntries(t, c)
		if len(ids) != 10 {
			t.Fatalf("%d log entries, want 10", len(ids))
		}
		read := func(args ...string) []string {
			t.Helper()
			b := c.Do(append([]string{"EVENTS.READ"}, args...)...)
			v := lkMust(t, b)
			if v == nil {
				return nil
			}
			var streams []any
			switch s := v.(type) {
			case []any:
				streams = s
			case lkMap:
				streams = []any{[]any{s[0], s[1]}}
			default:
				t.Fatalf("EVENTS.READ %v: %q", args, b)
			}
			st := streams[0].([]any)
			if st[0] != ceLog {
				t.Fatalf("EVENTS.READ stream %v", st[0])
			}
			var out []string
			for _, e := range st[1].([]any) {
				out = append(out, e.([]any)[0].(string))
			}
			return out
		}
		if got := read(); !slices.Equal(got, ids) {
			t.Fatalf("EVENTS.READ: %v, want %v", got, ids)
		}
		if got := read("AFTER", ids[3], "COUNT", "4"); !slices.Equal(got, ids[4:8]) {
			t.Fatalf("EVENTS.READ AFTER COUNT: %v, want %v", got, ids[4:8])
		}
		if got := read("COUNT", "2"); !slices.Equal(got, ids[:2]) {
			t.Fatalf("EVENTS.READ COUNT 2: %v", got)
		}
		if got := read("AFTER", ids[9]); got != nil {
			t.Fatalf("EVENTS.READ after the last: %v", got)
		}
		lkWantPrefix(t, "COUNT 0", c.Do("EVENTS.READ", "COUNT", "0"), "-ERR COUNT")
		lkWantPrefix(t, "BLOCK -1", c.Do("EVENTS.READ", "BLOCK", "-1"), "-ERR BLOCK")
		lkWantPrefix(t, "dangling", c.Do("EVENTS.READ", "AFTER"), "-ERR syntax error")
		lkWantPrefix(t, "unknown", c.Do("EVENTS.READ", "FROM", "0"), "-ERR syntax error")

		// BLOCK wakes on another client's acquire and does not hold up a
		// third client's GET.
		last := ids[len(ids)-1]
		blocker := testutil.Dial(t, b.addr)
		type res struct {
			b   []byte
			err error
			at  time.Time
		}
		done := make(chan res, 1)
		t0 := time.Now()
		blocker.Send("EVENTS.READ", "BLOCK", "2000", "AFTER", last)
		go func() {
			b, err := blocker.ReadTimeout(5 * time.Second)
			done <- res{b, err, time.Now()}
		}()
		time.Sleep(150 * time.Millisecond)
		third := testutil.Dial(t, b.addr)
		g0 := time.Now()
		if got := third.DoS("GET", "deepagents:{default}:kv:x"); got != "$-1\r\n" {
			t.Fatalf("GET: %q", got)
		}
		gd := time.Since(g0)
		if gd > time.Second {
			t.Fatalf("GET took %v while EVENTS.READ BLOCK was waiting", gd)
		}
		select {
		case r := <-done:
			t.Fatalf("EVENTS.READ BLOCK returned early: %q %v", r.b, r.err)
		default:
		}
		a0 := time.Now()
		tok := lkAcquire(t, c, "wake", 10000)
		r := <-done
		if r.err != nil {
			t.Fatalf("EVENTS.READ BLOCK: %v", r.err)
		}
		st := lkMust(t, r.b)
		var entries []any
		switch s := st.(type) {
		case []any:
			entries = s[0].([]any)[1].([]any)
		case lkMap:
			entries = s[1].([]any)
		default:
			t.Fatalf("EVENTS.READ BLOCK reply %q", r.b)
		}
		if len(entries) != 1 {
			t.Fatalf("EVENTS.READ BLOCK: %d entries: %q", len(entries), r.b)
		}
		f := entries[0].([]any)[1].([]any)
		e := ceDecode(t, f[1].(string))
		if e.Type != "lock.acquired" || (e.Resource != "wake" && e.Resource != "lock:wake") || *e.Version != tok {
			t.Fatalf("woken with %+v", e)
		}
		if r.at.Sub(t0) > 1900*time.Millisecond {
			t.Fatalf("EVENTS.READ BLOCK ran to its timeout (%v) instead of waking", r.at.Sub(t0))
		}
		t.Logf("%s: GET during BLOCK took %v; BLOCK woke %v after the acquire was sent", b.name, gd, r.at.Sub(a0))
		// With nothing new, BLOCK times out with nil.
		t1 := time.Now()
		got := blocker.DoS("EVENTS.READ", "BLOCK", "300", "AFTER", "$")
		if got != "*-1\r\n" && got != "_\r\n" {
			t.Fatalf("EVENTS.READ BLOCK 300 AFTER $ with no writes: %q", got)
		}
		if d := time.Since(t1); d < 250*time.Millisecond {
			t.Fatalf("EVENTS.READ BLOCK 300 returned after %v", d)
		}
	})
}

func TestCacheSetGet(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		st := &b.app.Server().Domain().Stats
		h0, m0 := st.CacheHits.Load(), st.CacheMisses.Load()
		if got := c.DoS("CACHE.GET", "search", "abc"); got != "$-1\r\n" {
			t.Fatalf("miss: %q", got)
		}
		if got := c.DoS("CACHE.SET", "search", "abc", "result\x00bytes"); got != "+OK\r\n" {
			t.Fatalf("CACHE.SET: %q", got)
		}
		if got := c.DoS("CACHE.GET", "search", "abc"); got != "$12\r\nresult\x00bytes\r\n" {
			t.Fatalf("hit: %q", got)
		}
		if got := c.DoS("CACHE.GET", "search", "abd"); got != "$-1\r\n" {
			t.Fatalf("other hash: %q", got)
		}
		if h, m := st.CacheHits.Load()-h0, st.CacheMisses.Load()-m0; h != 1 || m != 2 {
			t.Fatalf("hits %d misses %d, want 1 and 2", h, m)
		}
		pttl := func(hash string) int64 {
			t.Helper()
			return lkInt(t, lkMust(t, c.Do("PTTL", "deepagents:{default}:cache:search:"+hash)))
		}
		if p := pttl("abc"); p < 3_590_000 || p > 3_600_000 {
			t.Fatalf("default TTL: PTTL %d, want about 3600000", p)
		}
		c.Do("CACHE.SET", "search", "t5", "v", "TTL", "5000")
		if p := pttl("t5"); p < 4_000 || p > 5_000 {
			t.Fatalf("TTL 5000: PTTL %d", p)
		}
		c.Do("CACHE.SET", "search", "big", "v", "ttl", strconv.FormatInt(48*3600*1000, 10))
		if p := pttl("big"); p < 86_390_000 || p > 86_400_000 {
			t.Fatalf("TTL 48h: PTTL %d, want clamped to 86400000", p)
		}
		c.Do("CACHE.SET", "search", "short", "v", "TTL", "50")
		time.Sleep(150 * time.Millisecond)
		if got := c.DoS("CACHE.GET", "search", "short"); got != "$-1\r\n" {
			t.Fatalf("expired entry: %q", got)
		}
		// Bad arguments: clear errors, nothing written.
		for _, ttl := range []string{"0", "-1", "x", "1099511627777"} {
			lkWantPrefix(t, "TTL "+ttl, c.Do("CACHE.SET", "search", "bad", "v", "TTL", ttl), "-ERR TTL ms must be")
		}
		lkWantPrefix(t, "CACHE.SET arity", c.Do("CACHE.SET", "search", "bad"), "-ERR wrong number of arguments")
		lkWantPrefix(t, "CACHE.GET arity", c.Do("CACHE.GET", "search"), "-ERR wrong number of arguments")
		lkWantPrefix(t, "dangling", c.Do("CACHE.SET", "search", "bad", "v", "TTL"), "-ERR syntax error")
		lkWantPrefix(t, "bad tool", c.Do("CACHE.SET", "", "bad", "v"), "-ERR resource names")
		if got := c.DoS("EXISTS", "deepagents:{default}:cache:search:bad"); got != ":0\r\n" {
			t.Fatalf("refused CACHE.SET wrote: %q", got)
		}
		// RESP3: hit is a bulk, miss is null.
		c3 := testutil.Dial(t, b.addr)
		c3.Do("HELLO", "3")
		if got := c3.DoS("CACHE.GET", "search", "none"); got != "_\r\n" {
			t.Fatalf("RESP3 miss: %q", got)
		}
		if got := c3.DoS("CACHE.GET", "search", "abc"); got != "$12\r\nresult\x00bytes\r\n" {
			t.Fatalf("RESP3 hit: %q", got)
		}
		if h, m := st.CacheHits.Load()-h0, st.CacheMisses.Load()-m0; h != 2 || m != 4 {
			t.Fatalf("hits %d misses %d, want 2 and 4", h, m)
		}
	})
}

// TestLockScriptCacheLoss: after SCRIPT FLUSH or a Redis restart, the next
// domain command falls back from EVALSHA to EVAL and succeeds.
func TestLockScriptCacheLoss(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL()))
	c := testutil.Dial(t, a.Addr())
	tok := lkAcquire(t, c, "sf", 10000)
	direct := testutil.Dial(t, r.Addr)
	if got := direct.DoS("SCRIPT", "FLUSH"); got != "+OK\r\n" {
		t.Fatalf("SCRIPT FLUSH: %q", got)
	}
	tok2 := lkAcquire(t, c, "sf2", 10000)
	if got := c.DoS("LOCK.RELEASE", "sf", strconv.FormatInt(tok, 10)); got != ":1\r\n" {
		t.Fatalf("release after flush: %q", got)
	}
	if got := c.DoS("CACHE.SET", "t", "h", "v"); got != "+OK\r\n" {
		t.Fatalf("CACHE.SET after flush: %q", got)
	}
	_ = tok2
	// Kill and restart Redis: empty, no scripts cached.
	direct.Close()
	r.Stop()
	r.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.Do("LOCK.ACQUIRE", "sf3", "10000")
		if got[0] != '-' {
			if n := lkInt(t, lkFields(t, got)["token"]); n != 1 {
				t.Fatalf("token on a fresh Redis: %d", n)
			}
			break
		}
		if !strings.HasPrefix(string(got), "-TRYAGAIN") && !strings.HasPrefix(string(got), "-ERR upstream") {
			t.Fatalf("LOCK.ACQUIRE after restart: %q", got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("LOCK.ACQUIRE still failing after restart: %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	direct = testutil.Dial(t, r.Addr)
	if got := direct.DoS("SCRIPT", "EXISTS", "x"); got != "*1\r\n:0\r\n" {
		t.Fatalf("SCRIPT EXISTS: %q", got)
	}
}

// TestEventsPropagationLatency measures LOCK.ACQUIRE/RELEASE → subscriber
// delivery over 1000 pairs (figures logged, not asserted).
func TestEventsPropagationLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		sub := ceSubscribe(t, b.addr)
		var d []time.Duration
		for i := 0; i < 1000; i++ {
			t0 := time.Now()
			c.Send("LOCK.ACQUIRE", "lat", "10000")
			ev := ceNext(t, sub)
			d = append(d, time.Since(t0))
			reply := c.Read()
			if ev.Type != "lock.acquired" || reply[0] == '-' {
				t.Fatalf("acquire: %q %+v", reply, ev)
			}
			t0 = time.Now()
			c.Send("LOCK.RELEASE", "lat", strconv.FormatInt(*ev.Version, 10))
			ev = ceNext(t, sub)
			d = append(d, time.Since(t0))
			if got := string(c.Read()); got != ":1\r\n" || ev.Type != "lock.released" {
				t.Fatalf("release: %q %+v", got, ev)
			}
		}
		slices.Sort(d)
		t.Logf("%s: write→subscriber over %d events: p50 %v p99 %v max %v", b.name, len(d), d[len(d)/2], d[len(d)*99/100], d[len(d)-1])
	})
}

// BenchmarkCacheGetHit and BenchmarkPlainGet compare CACHE.GET hits with a
// plain GET of the same value through the proxy to a real Redis.
func BenchmarkCacheGetHit(b *testing.B) {
	c := ceBenchConn(b)
	if got := c.DoS("CACHE.SET", "bench", "h", strings.Repeat("v", 256)); got != "+OK\r\n" {
		b.Fatalf("CACHE.SET: %q", got)
	}
	ceBenchLoop(b, c, "CACHE.GET", "bench", "h")
}

func BenchmarkPlainGet(b *testing.B) {
	c := ceBenchConn(b)
	if got := c.DoS("SET", "deepagents:{default}:kv:bench", strings.Repeat("v", 256)); got != "+OK\r\n" {
		b.Fatalf("SET: %q", got)
	}
	ceBenchLoop(b, c, "GET", "deepagents:{default}:kv:bench")
}

// ceBenchLoop sends one command b.N times on the raw socket and reads the
// known-size reply into a fixed buffer, so the allocations reported are the
// proxy's (it runs in this process), not the test client's.
func ceBenchLoop(b *testing.B, c *testutil.Conn, args ...string) {
	want := "$256\r\n" + strings.Repeat("v", 256) + "\r\n"
	req := upstream.AppendCommand(nil, args...)
	nc := c.NetConn()
	nc.SetDeadline(time.Now().Add(10 * time.Minute))
	buf := make([]byte, len(want))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := nc.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf); err != nil {
			b.Fatal(err)
		}
		if i == 0 && string(buf) != want {
			b.Fatalf("%s: %q", args[0], buf)
		}
	}
}

func ceBenchConn(b *testing.B) *testutil.Conn {
	r := testutil.StartRedis(b)
	a := testutil.StartProxy(b, testutil.EnforcingConfig(b, r.URL()))
	return testutil.Dial(b, a.Addr())
}
