package events_test

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/domain/domaintest"
	_ "github.com/agentproxy/agentproxy/domain/events"
	_ "github.com/agentproxy/agentproxy/domain/locks"
)

// TestEventsRead: the log the domain's writes append to, read with AFTER
// and COUNT, and BLOCK on a connection of its own.
func TestEventsRead(t *testing.T) {
	e := domaintest.Miniredis(t)
	r := e.Req("ws", "alice", 2)
	if got := e.Do(r, "events.read"); got != "*-1\r\n" {
		t.Fatalf("empty log: %q", got)
	}
	e.Do(r, "lock.acquire a 10000")
	e.Do(r, "lock.acquire b 10000")
	got := e.Do(r, "events.read COUNT 1")
	if !strings.Contains(got, "lock.acquired") || strings.Count(got, "lock.acquired") != 1 {
		t.Fatalf("COUNT 1: %q", got)
	}
	if all := e.Do(r, "events.read"); strings.Count(all, "lock.acquired") != 2 || !strings.Contains(all, `"actor":"alice"`) {
		t.Fatalf("whole log: %q", all)
	}
	if got := e.Do(r, "events.read BLOCK 50 AFTER $"); got != "*-1\r\n" && got != "_\r\n" {
		t.Fatalf("BLOCK with nothing new: %q", got)
	}
	for line, want := range map[string]string{"events.read COUNT 0": "-ERR COUNT must be",
		"events.read BLOCK -1": "-ERR BLOCK must be", "events.read AFTER": "-ERR syntax error", "events.read X 1": "-ERR syntax error"} {
		if got := e.Do(r, line); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want %q...", line, got, want)
		}
	}
}
