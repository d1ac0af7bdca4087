package cache_test

import (
	"strings"
	"testing"

	_ "github.com/agentproxy/agentproxy/domain/cache"
	"github.com/agentproxy/agentproxy/domain/domaintest"
)

// TestCache drives CACHE.* against miniredis: misses and hits counted,
// the TTL policy applied, IFVERSION and the lock on the entry honoured.
func TestCache(t *testing.T) {
	e := domaintest.Miniredis(t)
	r := e.Req("ws", "alice", 2)
	if got := e.Do(r, "cache.get tool h1"); got != "$-1\r\n" {
		t.Fatalf("miss: %q", got)
	}
	if got := e.Do(r, "cache.set tool h1 value"); got != "+OK\r\n" {
		t.Fatalf("set: %q", got)
	}
	if got := e.Do(r, "cache.get tool h1"); got != "$5\r\nvalue\r\n" {
		t.Fatalf("hit: %q", got)
	}
	if h, m := e.Dom.Stats.CacheHits.Load(), e.Dom.Stats.CacheMisses.Load(); h != 1 || m != 1 {
		t.Fatalf("hits %d misses %d", h, m)
	}
	d := e.Direct()
	if ttl := d.DoS("PTTL", "deepagents:{ws}:cache:tool:h1"); ttl == ":-1\r\n" || ttl == ":-2\r\n" {
		t.Fatalf("no default TTL: %q", ttl)
	}
	e.Do(r, "cache.set tool h2 v TTL 999999999999")
	if ttl := d.DoS("PTTL", "deepagents:{ws}:cache:tool:h2"); ttl > ":86400000\r\n" && len(ttl) >= len(":86400000\r\n") {
		t.Fatalf("TTL not clamped to 24 h: %q", ttl)
	}
	if got := e.Do(r, "cache.set tool h1 other IFVERSION 0"); !strings.HasPrefix(got, "-CONFLICT") {
		t.Fatalf("IFVERSION 0 on an existing entry: %q", got)
	}
	if got := e.Do(r, "cache.set tool h1 v TTL x"); !strings.HasPrefix(got, "-ERR TTL ms must be") {
		t.Fatalf("bad TTL: %q", got)
	}
	if got := e.Do(e.Req("ws", "alice", 3), "cache.get tool nope"); got != "_\r\n" {
		t.Fatalf("RESP3 miss: %q", got)
	}
}
