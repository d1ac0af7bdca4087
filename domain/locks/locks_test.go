package locks_test

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/domain/domaintest"
	_ "github.com/agentproxy/agentproxy/domain/locks"
)

func field(reply, name string) string {
	parts := strings.Split(reply, "\r\n")
	for i, p := range parts {
		if p == name && i+1 < len(parts) {
			return strings.TrimPrefix(parts[i+1], ":")
		}
	}
	return ""
}

// TestLocks drives LOCK.* against miniredis: tokens grow, the holder is
// recorded, another user's use of the token is refused, release frees it.
func TestLocks(t *testing.T) {
	e := domaintest.Miniredis(t)
	alice, carol := e.Req("ws", "alice", 2), e.Req("ws", "carol", 2)
	r := e.Do(alice, "lock.acquire doc 10000")
	if !strings.HasPrefix(r, "*6\r\n$5\r\ntoken\r\n:1\r\n") {
		t.Fatalf("acquire: %q", r)
	}
	if alice.HeldToken("doc") != "1" {
		t.Fatalf("the connection does not hold the token: %v", alice.Locks)
	}
	if r := e.Do(carol, "lock.acquire doc 10000"); !strings.HasPrefix(r, "-LOCKED resource 'doc' is held by 'alice'") {
		t.Fatalf("second acquire: %q", r)
	}
	info := e.Do(carol, "lock.info doc")
	if field(info, "held") != "1" || field(info, "token") != "1" {
		t.Fatalf("info: %q", info)
	}
	for _, line := range []string{"lock.use doc 1", "lock.release doc 1", "lock.extend doc 1 5000"} {
		if r := e.Do(carol, line); !strings.HasPrefix(r, "-LOCKED resource 'doc' is held by user 'alice'") {
			t.Errorf("carol %s: %q", line, r)
		}
	}
	if r := e.Do(alice, "lock.extend doc 1 20000"); !strings.HasPrefix(r, "*6\r\n$5\r\ntoken\r\n:1\r\n") {
		t.Fatalf("extend: %q", r)
	}
	if r := e.Do(alice, "lock.release doc 1"); r != ":1\r\n" {
		t.Fatalf("release: %q", r)
	}
	if _, held := alice.Locks["doc"]; held {
		t.Fatal("released token still attached")
	}
	if r := e.Do(carol, "lock.acquire doc 10000"); !strings.HasPrefix(r, "*6\r\n$5\r\ntoken\r\n:2\r\n") {
		t.Fatalf("acquire after release: %q", r)
	}
	// RESP3 clients get maps; bad arguments get clear errors.
	if r := e.Do(e.Req("ws", "dan", 3), "lock.info doc"); !strings.HasPrefix(r, "%") {
		t.Fatalf("RESP3 info: %q", r)
	}
	for line, want := range map[string]string{
		"lock.acquire x 0": "-ERR ttl_ms must be", "lock.release x abc": "-ERR token must be",
		"lock.acquire x 100 OWNER": "-ERR syntax error",
	} {
		if r := e.Do(alice, line); !strings.HasPrefix(r, want) {
			t.Errorf("%s: %q, want %q...", line, r, want)
		}
	}
	// Every lock of the workspace lives under its prefix.
	if got := e.Direct().DoS("HGET", "deepagents:{ws}:lock:doc", "holder"); got != "$5\r\ncarol\r\n" {
		t.Fatalf("holder in the store: %q", got)
	}
}
