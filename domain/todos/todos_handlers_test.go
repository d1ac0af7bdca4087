package todos_test

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/domain/domaintest"
	_ "github.com/agentproxy/agentproxy/domain/locks"
	_ "github.com/agentproxy/agentproxy/domain/todos"
)

// TestTodoHandlers drives TODO.* against miniredis: add, list in order,
// claim once, update with IFVERSION, replace keeping ids, remove, and the
// lock on "todos".
func TestTodoHandlers(t *testing.T) {
	e := domaintest.Miniredis(t)
	r := e.Req("ws", "alice", 2)
	if got := e.Do(r, "todo.add first"); !strings.Contains(got, "$7\r\ncontent\r\n$5\r\nfirst\r\n") {
		t.Fatalf("add: %q", got)
	}
	e.DoArgs(r, "todo.add", "second task", "STATUS", "pending", "OWNER", "bob")
	list := e.Do(r, "todo.list")
	if strings.Index(list, "first") > strings.Index(list, "second task") || !strings.Contains(list, "$7\r\nversion\r\n:2\r\n") {
		t.Fatalf("list: %q", list)
	}
	if got := e.Do(r, "todo.claim 1 alice"); !strings.Contains(got, "in_progress") {
		t.Fatalf("claim: %q", got)
	}
	if got := e.Do(e.Req("ws", "carol", 2), "todo.claim 1 carol"); !strings.HasPrefix(got, "-") {
		t.Fatalf("second claim: %q", got)
	}
	if got := e.Do(r, "todo.update 2 IFVERSION 99 status completed"); !strings.HasPrefix(got, "-CONFLICT") {
		t.Fatalf("stale IFVERSION: %q", got)
	}
	got := e.DoArgs(r, "todo.replace", `[{"id":"1","content":"first","status":"completed"},{"content":"third","status":"pending"}]`)
	if !strings.Contains(got, "third") || !strings.Contains(got, "$2\r\nid\r\n$1\r\n1\r\n") {
		t.Fatalf("replace: %q", got)
	}
	if got := e.Do(r, "todo.remove 1"); strings.HasPrefix(got, "-") {
		t.Fatalf("remove: %q", got)
	}
	// A lock on "todos" held by another user stops writes without its token.
	carol := e.Req("ws", "carol", 2)
	e.Do(carol, "lock.acquire todos 10000")
	if got := e.Do(r, "todo.add blocked"); !strings.HasPrefix(got, "-LOCKED") {
		t.Fatalf("add under carol's lock: %q", got)
	}
	if got := e.Do(carol, "todo.add allowed"); strings.HasPrefix(got, "-") {
		t.Fatalf("add by the holder: %q", got)
	}
	if got := e.DoArgs(r, "todo.replace", `[{"content":"x","status":"done"}]`); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("bad status: %q", got)
	}
	if got := e.Do(e.Req("ws", "alice", 3), "todo.list"); !strings.HasPrefix(got, "%") {
		t.Fatalf("RESP3 list: %q", got)
	}
}
