package tests

import (
	"strings"
	"testing"
	"time"
)

// TestAdversarialLockAnnouncements: the proxies' fencing registries follow
// the lock channels; an agent must not be able to make them forget a lock
// of another workspace (or its own) by publishing a forged announcement,
// whatever channel name it uses.
func TestAdversarialLockAnnouncements(t *testing.T) {
	e := advStart(t, nil)
	alice, bob := e.login("alice"), e.login("bob")
	if got := bob.DoS("LOCK.ACQUIRE", "kv:doc", "10000"); !strings.HasPrefix(got, "*6") {
		t.Fatalf("bob LOCK.ACQUIRE: %q", got)
	}
	if got := alice.DoS("LOCK.ACQUIRE", "kv:mine", "10000"); !strings.HasPrefix(got, "*6") {
		t.Fatalf("alice LOCK.ACQUIRE: %q", got)
	}
	forged := func(ws, res string) string {
		return `{"v":1,"type":"lock.released","ws":"` + ws + `","resource":"` + res + `","actor":"x","cmd":"LOCK.RELEASE","version":1,"ts":1}`
	}
	// The lock channel itself is the lock commands' only.
	e.mustRefuse(alice, "PUBLISH", advAcme+"events:locks", forged("acme", "kv:mine"))
	e.mustRefuse(alice, "SPUBLISH", advAcme+"events:locks", forged("acme", "kv:mine"))
	e.mustRefuse(alice, "PUBLISH", advGlobex+"events:locks", forged("globex", "kv:doc"))
	// Channels of alice's own workspace that the registry's pattern
	// (<prefix>:{*}:events:locks) also matches: published, but ignored.
	for _, ch := range []string{
		advAcme + "events:x}:events:locks", advAcme + "events:{globex}:events:locks",
		advAcme + "events:locks}:events:locks",
	} {
		if got := alice.DoS("PUBLISH", ch, forged("globex", "kv:doc")); !strings.HasPrefix(got, ":") {
			t.Fatalf("PUBLISH %s: %q", ch, got)
		}
		alice.DoS("PUBLISH", ch, forged("acme", "kv:mine"))
	}
	time.Sleep(200 * time.Millisecond)
	// Both locks still hold for writers without the token.
	bob2, carol := e.login("bob"), e.login("carol")
	if got := bob2.DoS("SET", advGlobex+"kv:doc", "overwritten"); !strings.HasPrefix(got, "-LOCKED") {
		t.Errorf("globex write past bob's lock after forged announcements: %q", got)
	}
	if got := carol.DoS("SET", advAcme+"kv:mine", "overwritten"); !strings.HasPrefix(got, "-LOCKED") {
		t.Errorf("acme write past alice's lock after forged announcements: %q", got)
	}
	if got := e.direct.DoS("EXISTS", advGlobex+"kv:doc", advAcme+"kv:mine"); got != ":0\r\n" {
		t.Errorf("a write got past a lock: %q", got)
	}
	// The holders still write.
	if got := bob.DoS("SET", advGlobex+"kv:doc", "v"); got != "+OK\r\n" {
		t.Errorf("bob: %q", got)
	}
}
