package tests

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// Tests of the lock domain commands (SPEC §5, §6), run against a real
// redis-server and against the embedded store, speaking raw RESP.

// lkErr is a RESP error reply.
type lkErr string

// lkMap is a RESP3 map, kept flat: [k, v, k, v, ...].
type lkMap []any

// lkParse decodes one RESP2/RESP3 reply: strings for simple and bulk
// strings, int64, nil, lkErr, []any for arrays/sets/pushes, lkMap for maps.
func lkParse(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("empty reply")
	}
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return nil, nil, fmt.Errorf("no CRLF in %q", b)
	}
	line, rest := string(b[1:i]), b[i+2:]
	switch b[0] {
	case '+':
		return line, rest, nil
	case '-':
		return lkErr(line), rest, nil
	case ':':
		n, err := strconv.ParseInt(line, 10, 64)
		return n, rest, err
	case '_':
		return nil, rest, nil
	case ',', '(':
		return line, rest, nil
	case '#':
		return line == "t", rest, nil
	case '$', '=', '!':
		n, err := strconv.Atoi(line)
		if err != nil {
			return nil, nil, err
		}
		if n < 0 {
			return nil, rest, nil
		}
		if len(rest) < n+2 || string(rest[n:n+2]) != "\r\n" {
			return nil, nil, fmt.Errorf("bad bulk in %q", b)
		}
		if b[0] == '!' {
			return lkErr(rest[:n]), rest[n+2:], nil
		}
		return string(rest[:n]), rest[n+2:], nil
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(line)
		if err != nil {
			return nil, nil, err
		}
		if n < 0 {
			return nil, rest, nil
		}
		if b[0] == '%' || b[0] == '|' {
			n *= 2
		}
		out := make([]any, 0, n)
		for j := 0; j < n; j++ {
			var v any
			if v, rest, err = lkParse(rest); err != nil {
				return nil, nil, err
			}
			out = append(out, v)
		}
		if b[0] == '|' { // attribute: the reply follows
			return lkParse(rest)
		}
		if b[0] == '%' {
			return lkMap(out), rest, nil
		}
		return out, rest, nil
	}
	return nil, nil, fmt.Errorf("unknown RESP type %q", b[0])
}

// lkMust parses a whole reply.
func lkMust(t testing.TB, b []byte) any {
	t.Helper()
	v, rest, err := lkParse(b)
	if err != nil || len(rest) != 0 {
		t.Fatalf("parse %q: %v (rest %q)", b, err, rest)
	}
	return v
}

// lkFields turns a flat array or map reply into field → value.
func lkFields(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var flat []any
	switch v := lkMust(t, b).(type) {
	case []any:
		flat = v
	case lkMap:
		flat = v
	default:
		t.Fatalf("want a record, got %q", b)
	}
	if len(flat)%2 != 0 {
		t.Fatalf("odd record %q", b)
	}
	m := map[string]any{}
	for i := 0; i < len(flat); i += 2 {
		k, _ := flat[i].(string)
		m[k] = flat[i+1]
	}
	return m
}

func lkInt(t testing.TB, v any) int64 {
	t.Helper()
	switch n := v.(type) {
	case int64:
		return n
	case string:
		if i, err := strconv.ParseInt(n, 10, 64); err == nil {
			return i
		}
	}
	t.Fatalf("not an integer: %#v", v)
	return 0
}

// lkAcquire takes a lock and returns its token, failing the test otherwise.
func lkAcquire(t testing.TB, c *testutil.Conn, res string, ttl int, extra ...string) int64 {
	t.Helper()
	b := c.Do(append([]string{"LOCK.ACQUIRE", res, strconv.Itoa(ttl)}, extra...)...)
	if len(b) == 0 || b[0] == '-' {
		t.Fatalf("LOCK.ACQUIRE %s: %q", res, b)
	}
	return lkInt(t, lkFields(t, b)["token"])
}

// lkBackend is one store behind the proxy: Redis is nil for embedded.
type lkBackend struct {
	name string
	addr string
	// direct is the store itself (redis-server or the embedded store),
	// for reading and sabotaging what agents may not touch.
	direct string
	app    *app.App
	redis  *testutil.Redis
}

// lkBackends runs f against a proxy to a real redis-server and a proxy on
// the embedded store; edit (optional) adjusts each config.
func lkBackends(t *testing.T, edit func(*config.Config), f func(t *testing.T, b lkBackend)) {
	t.Run("redis", func(t *testing.T) {
		r := testutil.StartRedis(t)
		cfg := testutil.EnforcingConfig(t, r.URL())
		if edit != nil {
			edit(&cfg)
		}
		a := testutil.StartProxy(t, cfg)
		f(t, lkBackend{name: "redis", addr: a.Addr(), direct: r.Addr, app: a, redis: r})
	})
	t.Run("embedded", func(t *testing.T) {
		cfg := testutil.EnforcingConfig(t, "embedded")
		if edit != nil {
			edit(&cfg)
		}
		a := testutil.StartProxy(t, cfg)
		f(t, lkBackend{name: "embedded", addr: a.Addr(), direct: a.Store().Addr(), app: a})
	})
}

func lkWantPrefix(t testing.TB, what string, got []byte, prefix string) {
	t.Helper()
	if !strings.HasPrefix(string(got), prefix) {
		t.Fatalf("%s: got %q, want prefix %q", what, got, prefix)
	}
}

const lkFence = "deepagents:{default}:fence:"

func TestLockTokensNeverGoBackwards(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		d := testutil.Dial(t, b.direct)
		var last int64
		next := func(tok int64, how string) {
			t.Helper()
			if tok <= last {
				t.Fatalf("%s: token %d after %d", how, tok, last)
			}
			last = tok
			if got := d.DoS("GET", lkFence+"r1"); got != fmt.Sprintf("$%d\r\n%d\r\n", len(strconv.FormatInt(tok, 10)), tok) {
				t.Fatalf("fence counter after %s: %q, want %d", how, got, tok)
			}
			if got := d.DoS("PTTL", lkFence+"r1"); got != ":-1\r\n" {
				t.Fatalf("fence counter must never expire: PTTL %q", got)
			}
		}
		for i := 0; i < 5; i++ {
			tok := lkAcquire(t, c, "r1", 10000)
			next(tok, "acquire")
			if got := c.DoS("LOCK.RELEASE", "r1", strconv.FormatInt(tok, 10)); got != ":1\r\n" {
				t.Fatalf("release: %q", got)
			}
		}
		// Expiry: the lock goes, the counter stays.
		tok := lkAcquire(t, c, "r1", 40)
		next(tok, "acquire before expiry")
		time.Sleep(120 * time.Millisecond)
		info := lkFields(t, c.Do("LOCK.INFO", "r1"))
		if lkInt(t, info["held"]) != 0 || lkInt(t, info["fence"]) != tok {
			t.Fatalf("LOCK.INFO after expiry: %v", info)
		}
		next(lkAcquire(t, c, "r1", 10000), "acquire after expiry")
		// Another resource has its own counter.
		if tok := lkAcquire(t, c, "r2", 10000); tok != 1 {
			t.Fatalf("first token of r2: %d", tok)
		}
	})
}

func TestLockContendedAndWait(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c1, c2 := testutil.Dial(t, b.addr), testutil.Dial(t, b.addr)
		tok := lkAcquire(t, c1, "w", 5000, "OWNER", "alice")
		got := c2.DoS("LOCK.ACQUIRE", "w", "5000", "OWNER", "bob")
		lkWantPrefix(t, "second acquirer", []byte(got), "-LOCKED ")
		if !strings.Contains(got, "'alice'") {
			t.Errorf("LOCKED should name the holder: %q", got)
		}
		var left int
		if i := strings.Index(got, " for "); i < 0 {
			t.Errorf("LOCKED should give the remaining ms: %q", got)
		} else if _, err := fmt.Sscanf(got[i:], " for %d ms more", &left); err != nil || left <= 0 || left > 5000 {
			t.Errorf("remaining ms in %q: %d %v", got, left, err)
		}
		info := lkFields(t, c2.Do("LOCK.INFO", "w"))
		if lkInt(t, info["held"]) != 1 || info["owner"] != "alice" || lkInt(t, info["token"]) != tok {
			t.Fatalf("LOCK.INFO: %v", info)
		}

		// WAIT acquires once the holder releases.
		type res struct {
			b   []byte
			dur time.Duration
		}
		done := make(chan res, 1)
		go func() {
			t0 := time.Now()
			b := c2.Do("LOCK.ACQUIRE", "w", "5000", "OWNER", "bob", "WAIT", "3000")
			done <- res{b, time.Since(t0)}
		}()
		time.Sleep(200 * time.Millisecond)
		if got := c1.DoS("LOCK.RELEASE", "w", strconv.FormatInt(tok, 10)); got != ":1\r\n" {
			t.Fatalf("release: %q", got)
		}
		r := <-done
		if r.b[0] == '-' {
			t.Fatalf("WAIT acquire after release: %q", r.b)
		}
		tok2 := lkInt(t, lkFields(t, r.b)["token"])
		if tok2 != tok+1 {
			t.Fatalf("token after wait: %d, want %d", tok2, tok+1)
		}
		t.Logf("%s: WAIT acquired %v after the holder began (released at ~200ms)", b.name, r.dur)

		// WAIT that the holder never ends gives LOCKED after the wait.
		t0 := time.Now()
		got = c1.DoS("LOCK.ACQUIRE", "w", "5000", "WAIT", "400")
		el := time.Since(t0)
		lkWantPrefix(t, "WAIT not released", []byte(got), "-LOCKED ")
		if el < 400*time.Millisecond {
			t.Fatalf("WAIT 400 gave up early, after %v", el)
		}
		t.Logf("%s: WAIT 400 on a held lock answered LOCKED after %v", b.name, el)

		// A lock that expires shortly before the wait ends is still taken:
		// the last try happens at the deadline, not one backoff before it.
		lkAcquire(t, c1, "w3", 330)
		t0 = time.Now()
		got = c2.DoS("LOCK.ACQUIRE", "w3", "1000", "WAIT", "420")
		if strings.HasPrefix(got, "-") {
			t.Fatalf("WAIT 420 on a lock expiring at 330 ms: %q after %v", got, time.Since(t0))
		}
		// Bad WAIT values.
		for _, w := range []string{"0", "-1", "x", "600001"} {
			lkWantPrefix(t, "WAIT "+w, c1.Do("LOCK.ACQUIRE", "w2", "1000", "WAIT", w), "-ERR WAIT ms")
		}
		lkWantPrefix(t, "unknown option", c1.Do("LOCK.ACQUIRE", "w2", "1000", "BOGUS", "1"), "-ERR syntax error")
		lkWantPrefix(t, "dangling option", c1.Do("LOCK.ACQUIRE", "w2", "1000", "OWNER"), "-ERR syntax error")
	})
}

func TestLockExtendReleaseUse(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c1, c2 := testutil.Dial(t, b.addr), testutil.Dial(t, b.addr)
		s := func(n int64) string { return strconv.FormatInt(n, 10) }

		t1 := lkAcquire(t, c1, "e", 1000)
		ext := lkFields(t, c1.Do("LOCK.EXTEND", "e", s(t1), "20000"))
		if lkInt(t, ext["token"]) != t1 || lkInt(t, ext["ttl_ms"]) != 20000 {
			t.Fatalf("EXTEND: %v", ext)
		}
		if left := lkInt(t, lkFields(t, c2.Do("LOCK.INFO", "e"))["ttl_ms"]); left < 15000 || left > 20000 {
			t.Fatalf("ttl after EXTEND: %d", left)
		}
		// A non-holder cannot release (a higher, never-issued token too).
		lkWantPrefix(t, "release by non-holder", c2.Do("LOCK.RELEASE", "e", s(t1+7)), "-LOCKED ")
		lkWantPrefix(t, "extend by non-holder", c2.Do("LOCK.EXTEND", "e", s(t1+7), "1000"), "-LOCKED ")
		// LOCK.USE with the current token attaches it.
		if got := c2.DoS("LOCK.USE", "e", s(t1)); got != "+OK\r\n" {
			t.Fatalf("LOCK.USE current: %q", got)
		}
		if got := c1.DoS("LOCK.RELEASE", "e", s(t1)); got != ":1\r\n" {
			t.Fatalf("release: %q", got)
		}
		// The old token is stale once someone else holds the lock.
		t2 := lkAcquire(t, c2, "e", 10000)
		lkWantPrefix(t, "extend stale", c1.Do("LOCK.EXTEND", "e", s(t1), "1000"), "-FENCED ")
		lkWantPrefix(t, "release stale", c1.Do("LOCK.RELEASE", "e", s(t1)), "-LOCKED ")
		lkWantPrefix(t, "use stale", c1.Do("LOCK.USE", "e", s(t1)), "-FENCED ")
		if got := c1.DoS("LOCK.USE", "e", s(t2)); got != "+OK\r\n" {
			t.Fatalf("LOCK.USE current: %q", got)
		}
		if got := c2.DoS("LOCK.RELEASE", "e", s(t2)); got != ":1\r\n" {
			t.Fatalf("release t2: %q", got)
		}
		// Nothing held: every token is fenced.
		lkWantPrefix(t, "use unheld", c1.Do("LOCK.USE", "e", s(t2)), "-FENCED ")
		// After expiry.
		t3 := lkAcquire(t, c1, "e", 40)
		time.Sleep(120 * time.Millisecond)
		lkWantPrefix(t, "extend expired", c1.Do("LOCK.EXTEND", "e", s(t3), "1000"), "-FENCED ")
		lkWantPrefix(t, "release expired", c1.Do("LOCK.RELEASE", "e", s(t3)), "-FENCED ")
		lkWantPrefix(t, "use expired", c1.Do("LOCK.USE", "e", s(t3)), "-FENCED ")
		info := lkFields(t, c1.Do("LOCK.INFO", "e"))
		if lkInt(t, info["held"]) != 0 || lkInt(t, info["fence"]) != t3 {
			t.Fatalf("LOCK.INFO after all: %v", info)
		}
	})
}

func TestLockBadArguments(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		xlen := func() string { return c.DoS("XLEN", "deepagents:{default}:events:log") }
		before := xlen()
		for _, args := range [][]string{
			{"LOCK.ACQUIRE"}, {"LOCK.ACQUIRE", "bad"},
			{"LOCK.EXTEND", "bad", "1"}, {"LOCK.EXTEND", "bad", "1", "1000", "x"},
			{"LOCK.RELEASE", "bad"}, {"LOCK.RELEASE", "bad", "1", "x"},
			{"LOCK.INFO"}, {"LOCK.INFO", "bad", "x"},
			{"LOCK.USE", "bad"}, {"LOCK.USE", "bad", "1", "x"},
		} {
			got := c.DoS(args...)
			if !strings.HasPrefix(got, "-ERR wrong number of arguments") {
				t.Errorf("%q: %q, want a wrong-number-of-arguments error", args, got)
			}
		}
		for _, ttl := range []string{"0", "-5", "2592000001", "99999999999999999999", "abc", "1.5", ""} {
			got := c.DoS("LOCK.ACQUIRE", "bad", ttl)
			if !strings.HasPrefix(got, "-ERR ttl_ms must be a whole number from 1 to 2592000000") {
				t.Errorf("LOCK.ACQUIRE ttl %q: %q", ttl, got)
			}
		}
		tok := lkAcquire(t, c, "bad2", 10000)
		for _, ttl := range []string{"0", "-5", "2592000001", "abc"} {
			lkWantPrefix(t, "EXTEND ttl "+ttl, c.Do("LOCK.EXTEND", "bad2", strconv.FormatInt(tok, 10), ttl), "-ERR ttl_ms must be")
		}
		for _, tk := range []string{"0", "-1", "x"} {
			lkWantPrefix(t, "RELEASE token "+tk, c.Do("LOCK.RELEASE", "bad2", tk), "-ERR token must be")
			lkWantPrefix(t, "USE token "+tk, c.Do("LOCK.USE", "bad2", tk), "-ERR token must be")
		}
		lkWantPrefix(t, "resource with CRLF", c.Do("LOCK.ACQUIRE", "a\r\nb", "1000"), "-ERR resource names")
		lkWantPrefix(t, "empty resource", c.Do("LOCK.ACQUIRE", "", "1000"), "-ERR resource names")
		lkWantPrefix(t, "long resource", c.Do("LOCK.ACQUIRE", strings.Repeat("r", 1101), "1000"), "-ERR resource names")
		// Nothing written for the refused commands.
		for _, k := range []string{"deepagents:{default}:lock:bad", lkFence + "bad"} {
			if got := testutil.Dial(t, b.direct).DoS("EXISTS", k); got != ":0\r\n" {
				t.Errorf("EXISTS %s after refused commands: %q", k, got)
			}
		}
		info := lkFields(t, c.Do("LOCK.INFO", "bad2"))
		if lkInt(t, info["held"]) != 1 || lkInt(t, info["token"]) != tok || lkInt(t, info["ttl_ms"]) > 10000 {
			t.Errorf("bad2 changed by refused EXTENDs: %v", info)
		}
		if got, want := xlen(), fmt.Sprintf(":%d\r\n", lkInt(t, lkMust(t, []byte(before)))+1); got != want {
			t.Errorf("events log: %q, want %q (one acquire, no event for refused commands)", got, want)
		}
	})
}

func TestLockRESP3Maps(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		lkWantPrefix(t, "HELLO 3", c.Do("HELLO", "3"), "%")
		got := c.Do("LOCK.ACQUIRE", "m", "10000", "OWNER", "o3")
		lkWantPrefix(t, "LOCK.ACQUIRE", got, "%3\r\n")
		acq := lkFields(t, got)
		if _, ok := lkMust(t, got).(lkMap); !ok || lkInt(t, acq["ttl_ms"]) != 10000 || lkInt(t, acq["expires_at"]) < time.Now().Add(-time.Minute).UnixMilli() {
			t.Fatalf("LOCK.ACQUIRE map: %v", acq)
		}
		tok := strconv.FormatInt(lkInt(t, acq["token"]), 10)
		got = c.Do("LOCK.INFO", "m")
		lkWantPrefix(t, "LOCK.INFO held", got, "%5\r\n")
		if info := lkFields(t, got); info["owner"] != "o3" || lkInt(t, info["token"]) != lkInt(t, acq["token"]) {
			t.Fatalf("LOCK.INFO map: %v", info)
		}
		lkWantPrefix(t, "LOCK.EXTEND", c.Do("LOCK.EXTEND", "m", tok, "5000"), "%3\r\n")
		if got := c.DoS("LOCK.RELEASE", "m", tok); got != ":1\r\n" {
			t.Fatalf("LOCK.RELEASE: %q", got)
		}
		lkWantPrefix(t, "LOCK.INFO free", c.Do("LOCK.INFO", "m"), "%2\r\n")
		lkWantPrefix(t, "LOCKED under RESP3", func() []byte {
			c2 := testutil.Dial(t, b.addr)
			c2.Do("HELLO", "3")
			lkAcquire(t, c, "m", 10000)
			return c2.Do("LOCK.ACQUIRE", "m", "10000")
		}(), "-LOCKED ")
		// RESP2 keeps flat arrays.
		c2 := testutil.Dial(t, b.addr)
		lkWantPrefix(t, "RESP2 LOCK.INFO", c2.Do("LOCK.INFO", "m"), "*10\r\n")
	})
}

func TestLockReadonlyUser(t *testing.T) {
	edit := func(cfg *config.Config) {
		cfg.Users = []config.User{
			{Name: "reader", PasswordSHA256: isoHash("ro-pass"), Workspaces: []string{"default"}, Role: "readonly"},
			{Name: "writer", PasswordSHA256: isoHash("rw-pass"), Workspaces: []string{"default"}, Role: "agent"},
		}
	}
	lkBackends(t, edit, func(t *testing.T, b lkBackend) {
		w := testutil.Dial(t, b.addr)
		if got := w.DoS("AUTH", "writer", "rw-pass"); got != "+OK\r\n" {
			t.Fatalf("AUTH writer: %q", got)
		}
		tok := lkAcquire(t, w, "ro", 10000)
		r := testutil.Dial(t, b.addr)
		if got := r.DoS("AUTH", "reader", "ro-pass"); got != "+OK\r\n" {
			t.Fatalf("AUTH reader: %q", got)
		}
		lkWantPrefix(t, "readonly LOCK.ACQUIRE", r.Do("LOCK.ACQUIRE", "ro2", "1000"), "-NOPERM ")
		lkWantPrefix(t, "readonly LOCK.EXTEND", r.Do("LOCK.EXTEND", "ro", strconv.FormatInt(tok, 10), "1000"), "-NOPERM ")
		lkWantPrefix(t, "readonly LOCK.RELEASE", r.Do("LOCK.RELEASE", "ro", strconv.FormatInt(tok, 10)), "-NOPERM ")
		lkWantPrefix(t, "readonly CACHE.SET", r.Do("CACHE.SET", "t", "h", "v"), "-NOPERM ")
		info := lkFields(t, r.Do("LOCK.INFO", "ro"))
		if lkInt(t, info["held"]) != 1 || info["owner"] != "writer" || lkInt(t, info["token"]) != tok {
			t.Fatalf("readonly LOCK.INFO: %v", info)
		}
		if got := testutil.Dial(t, b.direct).DoS("EXISTS", "deepagents:{default}:lock:ro2"); got != ":0\r\n" {
			t.Fatalf("refused acquire wrote the lock: %q", got)
		}
	})
}

// TestLockConcurrentTokensUnique: many clients race for one resource; every
// granted token is unique and tokens only grow.
func TestLockConcurrentTokensUnique(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		var mu sync.Mutex
		seen := map[int64]bool{}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := testutil.Dial(t, b.addr)
				for i := 0; i < 25; i++ {
					got := c.Do("LOCK.ACQUIRE", "race", "5000", "WAIT", "5000")
					if got[0] == '-' {
						t.Errorf("acquire: %q", got)
						return
					}
					tok := lkInt(t, lkFields(t, got)["token"])
					mu.Lock()
					if seen[tok] {
						t.Errorf("token %d granted twice", tok)
					}
					seen[tok] = true
					mu.Unlock()
					if r := c.DoS("LOCK.RELEASE", "race", strconv.FormatInt(tok, 10)); r != ":1\r\n" {
						t.Errorf("release %d: %q", tok, r)
						return
					}
				}
			}()
		}
		wg.Wait()
		if len(seen) != 200 {
			t.Fatalf("%d tokens, want 200", len(seen))
		}
		for i := int64(1); i <= 200; i++ {
			if !seen[i] {
				t.Fatalf("token %d missing: tokens must be 1..200", i)
			}
		}
	})
}
