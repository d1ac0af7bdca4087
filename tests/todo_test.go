package tests

// TODO.* (SPEC §5): every command and error against a real redis-server and
// the embedded store, nothing written and nothing published by a refused
// command, exactly one event per successful one, RESP3 maps, and a
// concurrency test of IFVERSION retries and TODO.CLAIM.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

const (
	todoChannel = "deepagents:{default}:events"
	todoLog     = "deepagents:{default}:events:log"
)

// todoBackends runs f against a proxy in front of redis-server and one on
// the embedded store; f gets the proxy's address.
func todoBackends(t *testing.T, f func(t *testing.T, addr string)) {
	t.Run("redis", func(t *testing.T) {
		r := testutil.StartRedis(t)
		f(t, todoReady(t, testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL())).Addr()))
	})
	t.Run("embedded", func(t *testing.T) {
		f(t, todoReady(t, testutil.StartProxy(t, testutil.EnforcingConfig(t, "embedded")).Addr()))
	})
}

// todoReady waits until the proxy's shared upstream connections of both
// protocols are up (StartProxy waits for the first of them only).
func todoReady(t *testing.T, addr string) string {
	t.Helper()
	for _, proto := range []string{"2", "3"} {
		c := testutil.Dial(t, addr)
		c.Do("HELLO", proto)
		deadline := time.Now().Add(10 * time.Second)
		for strings.HasPrefix(c.DoS("TODO.LIST"), "-TRYAGAIN") {
			if time.Now().After(deadline) {
				t.Fatalf("RESP%s upstream connection not up", proto)
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.Close()
	}
	return addr
}

// todoVal decodes a reply: arrays are []any, maps map[string]any, bulk and
// simple strings string, integers int64, errors error, nulls nil.
func todoVal(t *testing.T, b []byte) any {
	t.Helper()
	v, n, err := todoDecode(b)
	if err != nil || n != len(b) {
		t.Fatalf("bad reply %q: %v", b, err)
	}
	return v
}

func todoDecode(b []byte) (any, int, error) {
	i := strings.Index(string(b), "\r\n")
	if len(b) == 0 || i < 0 {
		return nil, 0, errors.New("short")
	}
	line := string(b[1:i])
	switch b[0] {
	case '+':
		return line, i + 2, nil
	case '-':
		return errors.New(line), i + 2, nil
	case ':':
		n, err := strconv.ParseInt(line, 10, 64)
		return n, i + 2, err
	case '_':
		return nil, i + 2, nil
	case '$':
		n, _ := strconv.Atoi(line)
		if n < 0 {
			return nil, i + 2, nil
		}
		return string(b[i+2 : i+2+n]), i + 4 + n, nil
	case '*', '%':
		n, _ := strconv.Atoi(line)
		off := i + 2
		var arr []any
		m := map[string]any{}
		count := n
		if b[0] == '%' {
			count = 2 * n
		}
		for k := 0; k < count; k++ {
			v, used, err := todoDecode(b[off:])
			if err != nil {
				return nil, 0, err
			}
			off += used
			arr = append(arr, v)
		}
		if b[0] == '*' {
			if arr == nil {
				arr = []any{}
			}
			return arr, off, nil
		}
		for k := 0; k < len(arr); k += 2 {
			m[arr[k].(string)] = arr[k+1]
		}
		return m, off, nil
	}
	return nil, 0, fmt.Errorf("unexpected type %q", b[0])
}

// todoRec turns a record (flat array or map) into a map.
func todoRec(t *testing.T, v any) map[string]any {
	t.Helper()
	switch r := v.(type) {
	case map[string]any:
		return r
	case []any:
		m := map[string]any{}
		for i := 0; i+1 < len(r); i += 2 {
			m[r[i].(string)] = r[i+1]
		}
		return m
	}
	t.Fatalf("not a record: %#v", v)
	return nil
}

// todoListOf decodes TODO.LIST: the version and the items in order.
func todoListOf(t *testing.T, b []byte) (int64, []map[string]any) {
	t.Helper()
	v := todoVal(t, b)
	if err, ok := v.(error); ok {
		t.Fatalf("TODO.LIST: %v", err)
	}
	rec := todoRec(t, v)
	var items []map[string]any
	for _, it := range rec["items"].([]any) {
		items = append(items, todoRec(t, it))
	}
	return rec["version"].(int64), items
}

// todoEnv checks a mutation's side effects: the reply, the stream length
// and the live events.
type todoEnv struct {
	t   *testing.T
	c   *testutil.Conn // the client
	aux *testutil.Conn // reads state
	sub *testutil.Conn // subscribed to the events channel
}

func newTodoEnv(t *testing.T, addr string) *todoEnv {
	e := &todoEnv{t: t, c: testutil.Dial(t, addr), aux: testutil.Dial(t, addr), sub: testutil.Dial(t, addr)}
	if r := e.sub.DoS("SUBSCRIBE", todoChannel); !strings.Contains(r, "subscribe") {
		t.Fatalf("SUBSCRIBE: %q", r)
	}
	return e
}

func (e *todoEnv) xlen() int64 {
	e.t.Helper()
	v, ok := todoVal(e.t, e.aux.Do("XLEN", todoLog)).(int64)
	if !ok {
		e.t.Fatalf("XLEN not an integer")
	}
	return v
}

// ok runs a mutation that must succeed and emit one event of type typ.
func (e *todoEnv) ok(typ string, args ...string) any {
	e.t.Helper()
	return e.okOn(e.c, typ, args...)
}

func (e *todoEnv) okOn(c *testutil.Conn, typ string, args ...string) any {
	e.t.Helper()
	before := e.xlen()
	v := todoVal(e.t, c.Do(args...))
	if err, bad := v.(error); bad {
		e.t.Fatalf("%v: %v", args, err)
	}
	if got := e.xlen(); got != before+1 {
		e.t.Fatalf("%v: event log grew by %d, want 1", args, got-before)
	}
	var msg []any
	var env map[string]any
	for {
		msg = todoVal(e.t, e.sub.Read()).([]any)
		if msg[0] != "message" || msg[1] != todoChannel {
			e.t.Fatalf("%v: unexpected frame %#v", args, msg)
		}
		env = nil
		if err := json.Unmarshal([]byte(msg[2].(string)), &env); err != nil {
			e.t.Fatalf("%v: event %q: %v", args, msg[2], err)
		}
		// Skip the events of LOCK.* commands run in between.
		if typ, _ := env["type"].(string); !strings.HasPrefix(typ, "lock.") {
			break
		}
	}
	if env["type"] != typ || env["v"] != 1.0 || env["ws"] != "default" || env["cmd"] != strings.ToUpper(args[0]) ||
		env["actor"] == nil || env["resource"] == nil || env["version"] == nil || env["ts"] == nil {
		e.t.Fatalf("%v: event %s, want type %s", args, msg[2], typ)
	}
	return v
}

// fail runs a command that must be refused with an error starting with
// want and change nothing: same list, no event.
func (e *todoEnv) fail(want string, args ...string) {
	e.t.Helper()
	e.failOn(e.c, want, args...)
}

func (e *todoEnv) failOn(c *testutil.Conn, want string, args ...string) {
	e.t.Helper()
	before, list := e.xlen(), e.aux.DoS("TODO.LIST")
	got := c.DoS(args...)
	if !strings.HasPrefix(got, "-"+want) {
		e.t.Fatalf("%q: got %q, want an error starting with %q", args, got, want)
	}
	if after := e.xlen(); after != before {
		e.t.Fatalf("%q: refused but the event log grew by %d", args, after-before)
	}
	if after := e.aux.DoS("TODO.LIST"); after != list {
		e.t.Fatalf("%q: refused but the list changed:\n%q\n%q", args, list, after)
	}
}

// quiet checks that no further event arrives.
func (e *todoEnv) quiet() {
	e.t.Helper()
	if b, err := e.sub.ReadTimeout(200 * time.Millisecond); err == nil {
		e.t.Fatalf("unexpected event %q", b)
	}
}

func TestTodoCommands(t *testing.T) {
	todoBackends(t, func(t *testing.T, addr string) {
		e := newTodoEnv(t, addr)
		const empty = "*4\r\n$7\r\nversion\r\n:0\r\n$5\r\nitems\r\n*0\r\n"
		if got := e.c.DoS("TODO.LIST"); got != empty {
			t.Fatalf("empty TODO.LIST: %q, want %q", got, empty)
		}

		// REPLACE: ids are minted, kept for unchanged and matching items.
		e.ok("todo.replaced", "TODO.REPLACE", `[{"content":"a","status":"pending"},{"content":"b","status":"in_progress","owner":"x","priority":2}]`)
		v, items := todoListOf(t, e.c.Do("TODO.LIST"))
		if v != 1 || len(items) != 2 || items[0]["id"] != "1" || items[1]["id"] != "2" || items[1]["owner"] != "x" ||
			items[1]["priority"] != "2" || items[0]["version"] != int64(1) || items[0]["created_at"].(int64) <= 0 {
			t.Fatalf("after REPLACE: %d %v", v, items)
		}
		e.ok("todo.replaced", "TODO.REPLACE", `[{"content":"b","status":"completed"},{"content":"c","status":"pending"}]`)
		v, items = todoListOf(t, e.c.Do("TODO.LIST"))
		if v != 2 || len(items) != 2 || items[0]["id"] != "2" || items[0]["status"] != "completed" ||
			items[0]["owner"] != "x" || items[0]["version"] != int64(2) || items[1]["id"] != "3" {
			t.Fatalf("after second REPLACE: %d %v", v, items)
		}
		if got := e.aux.DoS("EXISTS", "deepagents:{default}:todo:1"); got != ":0\r\n" {
			t.Fatalf("dropped item 1 still exists: %q", got)
		}
		// By id, with new content; an unknown id gets a fresh one.
		r := todoRec(t, e.ok("todo.replaced", "TODO.REPLACE",
			`[{"id":"3","content":"c2","status":"pending"},{"id":2,"content":"b","status":"completed"},{"id":"99","content":"n","status":"cancelled"}]`, "IFVERSION", "2"))
		if r["version"] != int64(3) {
			t.Fatalf("REPLACE reply: %v", r)
		}
		_, items = todoListOf(t, e.c.Do("TODO.LIST"))
		if len(items) != 3 || items[0]["id"] != "3" || items[0]["content"] != "c2" || items[1]["id"] != "2" ||
			items[1]["version"] != int64(2) || items[2]["id"] != "4" || items[2]["status"] != "cancelled" {
			t.Fatalf("after REPLACE by id: %v", items)
		}

		// REPLACE errors.
		for _, bad := range []struct{ json, want string }{
			{`not json`, "ERR TODO.REPLACE takes a JSON array of {content, status} objects: "},
			{`{"content":"a","status":"pending"}`, "ERR TODO.REPLACE takes a JSON array"},
			{`null`, "ERR TODO.REPLACE takes a JSON array"},
			{`[1]`, "ERR TODO.REPLACE takes a JSON array of {content, status} objects: element 0 is not an object"},
			{`[{"status":"pending"}]`, "ERR TODO.REPLACE takes a JSON array of {content, status} objects: element 0 has no content"},
			{`[{"content":"a"}]`, "ERR TODO.REPLACE takes a JSON array of {content, status} objects: element 0 has no status"},
			{`[{"content":5,"status":"pending"}]`, "ERR TODO.REPLACE takes a JSON array of {content, status} objects: element 0: content must be a string"},
			{`[{"content":"a","status":"pending"},{"content":"b","status":"done"}]`, "ERR status must be one of pending, in_progress, completed, cancelled"},
			{`[{"id":"1","content":"a","status":"pending"},{"id":"1","content":"b","status":"pending"}]`, "ERR TODO.REPLACE takes a JSON array of {content, status} objects: element 1 repeats id 1"},
		} {
			e.fail(bad.want, "TODO.REPLACE", bad.json)
		}
		e.fail("CONFLICT version is 3, not 0; re-read and retry", "TODO.REPLACE", `[]`, "IFVERSION", "0")
		e.fail("CONFLICT version is 3, not 7; re-read and retry", "TODO.REPLACE", `[]`, "IFVERSION", "7")
		e.fail("ERR IFVERSION must be a whole number", "TODO.REPLACE", `[]`, "IFVERSION", "x")
		e.fail("ERR syntax error", "TODO.REPLACE", `[]`, "IFVERSION")
		e.fail("ERR syntax error near 'BOGUS'", "TODO.REPLACE", `[]`, "BOGUS", "1")

		// ADD.
		r = todoRec(t, e.ok("todo.added", "TODO.ADD", "d"))
		if r["id"] != "5" || r["status"] != "pending" || r["version"] != int64(1) || r["content"] != "d" {
			t.Fatalf("TODO.ADD: %v", r)
		}
		r = todoRec(t, e.ok("todo.added", "TODO.ADD", "top", "POSITION", "0", "STATUS", "in_progress", "OWNER", "me", "PRIORITY", "high"))
		if r["id"] != "6" || r["status"] != "in_progress" || r["owner"] != "me" || r["priority"] != "high" {
			t.Fatalf("TODO.ADD with options: %v", r)
		}
		e.ok("todo.added", "TODO.ADD", "second", "POSITION", "1", "IFVERSION", "5")
		v, items = todoListOf(t, e.c.Do("TODO.LIST"))
		var ids []string
		for _, it := range items {
			ids = append(ids, it["id"].(string))
		}
		if v != 6 || strings.Join(ids, ",") != "6,7,3,2,4,5" {
			t.Fatalf("order after ADD: version %d ids %v", v, ids)
		}
		e.fail("ERR status must be one of pending, in_progress, completed, cancelled", "TODO.ADD", "x", "STATUS", "done")
		e.fail("ERR POSITION must be a whole number", "TODO.ADD", "x", "POSITION", "-1")
		e.fail("ERR syntax error", "TODO.ADD", "x", "STATUS")
		e.fail("ERR syntax error near 'COLOR'", "TODO.ADD", "x", "COLOR", "red")
		e.fail("ERR todo content must not be empty", "TODO.ADD", "")
		e.fail("CONFLICT version is 6, not 0", "TODO.ADD", "x", "IFVERSION", "0")
		e.fail("CONFLICT version is 6, not 5", "TODO.ADD", "x", "IFVERSION", "5")

		// UPDATE.
		r = todoRec(t, e.ok("todo.updated", "TODO.UPDATE", "5", "status", "completed", "PRIORITY", "1"))
		if r["status"] != "completed" || r["priority"] != "1" || r["version"] != int64(2) || r["content"] != "d" {
			t.Fatalf("TODO.UPDATE: %v", r)
		}
		r = todoRec(t, e.ok("todo.updated", "TODO.UPDATE", "5", "IFVERSION", "2", "content", "d2"))
		if r["content"] != "d2" || r["version"] != int64(3) {
			t.Fatalf("TODO.UPDATE IFVERSION: %v", r)
		}
		e.fail("CONFLICT version is 3, not 2; re-read and retry", "TODO.UPDATE", "5", "IFVERSION", "2", "content", "x")
		e.fail("CONFLICT version is 3, not 0", "TODO.UPDATE", "5", "IFVERSION", "0", "content", "x")
		e.fail("ERR no such todo '42'", "TODO.UPDATE", "42", "content", "x")
		e.fail("ERR no such todo 'abc'", "TODO.UPDATE", "abc", "content", "x")
		e.fail("ERR status must be one of pending, in_progress, completed, cancelled", "TODO.UPDATE", "5", "status", "later")
		e.fail("ERR syntax error near 'color'", "TODO.UPDATE", "5", "color", "red")
		e.fail("ERR syntax error", "TODO.UPDATE", "5", "status", "pending", "owner")
		e.fail("ERR TODO.UPDATE needs at least one field", "TODO.UPDATE", "5", "IFVERSION", "3")

		// CLAIM.
		r = todoRec(t, e.ok("todo.claimed", "TODO.CLAIM", "3", "alice"))
		if r["status"] != "in_progress" || r["owner"] != "alice" || r["id"] != "3" {
			t.Fatalf("TODO.CLAIM: %v", r)
		}
		e.fail("CONFLICT todo 3 is in_progress, not pending", "TODO.CLAIM", "3", "bob")
		e.fail("CONFLICT todo 5 is completed, not pending", "TODO.CLAIM", "5", "bob")
		e.fail("ERR no such todo '77'", "TODO.CLAIM", "77", "bob")

		// REMOVE.
		r = todoRec(t, e.ok("todo.removed", "TODO.REMOVE", "7", "IFVERSION", "1"))
		if r["id"] != "7" {
			t.Fatalf("TODO.REMOVE: %v", r)
		}
		e.fail("ERR no such todo '7'", "TODO.REMOVE", "7")
		e.fail("CONFLICT version is 3, not 1", "TODO.REMOVE", "5", "IFVERSION", "1")
		v, items = todoListOf(t, e.c.Do("TODO.LIST"))
		if v != 10 || len(items) != 5 {
			t.Fatalf("after REMOVE: %d %v", v, items)
		}
		if got := e.aux.DoS("EXISTS", "deepagents:{default}:todo:7"); got != ":0\r\n" {
			t.Fatalf("removed item still exists: %q", got)
		}

		// Wrong arity.
		for _, args := range [][]string{{"TODO.LIST", "x"}, {"TODO.ADD"}, {"TODO.UPDATE", "5", "status"},
			{"TODO.CLAIM", "5"}, {"TODO.REMOVE"}, {"TODO.REPLACE"}} {
			e.fail("ERR wrong number of arguments for '"+strings.ToLower(args[0])+"' command", args...)
		}

		// Emptying the list keeps its version history.
		e.ok("todo.replaced", "TODO.REPLACE", `[]`, "IFVERSION", "10")
		if v, items = todoListOf(t, e.c.Do("TODO.LIST")); v != 11 || len(items) != 0 {
			t.Fatalf("after emptying: %d %v", v, items)
		}
		if got := e.aux.DoS("EXISTS", "deepagents:{default}:todo:5"); got != ":0\r\n" {
			t.Fatalf("replaced-away item still exists: %q", got)
		}
		e.quiet()
	})
}

func TestTodoFence(t *testing.T) {
	todoBackends(t, func(t *testing.T, addr string) {
		e := newTodoEnv(t, addr)
		holder := testutil.Dial(t, addr)
		e.ok("todo.added", "TODO.ADD", "a")

		// Burn token 1 so that a stale token exists.
		if got := holder.DoS("LOCK.ACQUIRE", "todos", "30000"); !strings.Contains(got, "token") {
			t.Fatalf("LOCK.ACQUIRE: %q", got)
		}
		holder.Do("LOCK.RELEASE", "todos", "1")
		if got := todoRec(t, todoVal(t, holder.Do("LOCK.ACQUIRE", "todos", "30000", "OWNER", "alice"))); got["token"] != int64(2) {
			t.Fatalf("LOCK.ACQUIRE: %v", got)
		}

		e.fail("LOCKED resource 'todos' is held by 'alice' for ", "TODO.ADD", "b")
		e.fail("LOCKED resource 'todos' is held by 'alice'", "TODO.UPDATE", "1", "content", "x")
		e.fail("LOCKED resource 'todos' is held by 'alice'", "TODO.CLAIM", "1", "bob")
		e.fail("LOCKED resource 'todos' is held by 'alice'", "TODO.REMOVE", "1")
		e.fail("LOCKED resource 'todos' is held by 'alice'", "TODO.REPLACE", `[]`)
		e.fail("FENCED token 1 is stale", "TODO.ADD", "b", "FENCE", "1")
		e.fail("FENCED token 1 is stale", "TODO.UPDATE", "1", "FENCE", "1", "content", "x")
		e.fail("FENCED token 9 was never issued", "TODO.REPLACE", `[]`, "FENCE", "9")
		e.fail("ERR FENCE token must be a whole number", "TODO.REMOVE", "1", "FENCE", "x")

		// The holder's token, given or injected.
		e.ok("todo.added", "TODO.ADD", "b", "FENCE", "2")
		e.ok("todo.updated", "TODO.UPDATE", "1", "FENCE", "2", "content", "a2")
		e.okOn(holder, "todo.claimed", "TODO.CLAIM", "1", "alice")
		e.okOn(holder, "todo.replaced", "TODO.REPLACE", `[{"content":"a2","status":"completed"}]`)

		// Released: the token no longer fences.
		holder.Do("LOCK.RELEASE", "todos", "2")
		e.fail("FENCED the lock on 'todos' has expired", "TODO.ADD", "c", "FENCE", "2")
		e.ok("todo.added", "TODO.ADD", "c")

		// Expired by its TTL.
		if got := todoRec(t, todoVal(t, holder.Do("LOCK.ACQUIRE", "todos", "50"))); got["token"] != int64(3) {
			t.Fatalf("LOCK.ACQUIRE: %v", got)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(e.aux.DoS("LOCK.INFO", "todos"), "held\r\n:0") {
			if time.Now().After(deadline) {
				t.Fatal("lock did not expire")
			}
			time.Sleep(10 * time.Millisecond)
		}
		e.fail("FENCED the lock on 'todos' has expired", "TODO.UPDATE", "1", "FENCE", "3", "status", "pending")
		e.ok("todo.updated", "TODO.UPDATE", "1", "status", "pending")
		e.quiet()
	})
}

func TestTodoRESP3(t *testing.T) {
	todoBackends(t, func(t *testing.T, addr string) {
		c := testutil.Dial(t, addr)
		if b := c.Do("HELLO", "3"); b[0] != '%' {
			t.Fatalf("HELLO 3: %q", b)
		}
		if got, want := c.DoS("TODO.LIST"), "%2\r\n$7\r\nversion\r\n:0\r\n$5\r\nitems\r\n*0\r\n"; got != want {
			t.Fatalf("empty TODO.LIST: %q, want %q", got, want)
		}
		got := c.DoS("TODO.ADD", "a", "OWNER", "o")
		if !strings.HasPrefix(got, "%8\r\n$2\r\nid\r\n$1\r\n1\r\n$7\r\ncontent\r\n$1\r\na\r\n$6\r\nstatus\r\n$7\r\npending\r\n") {
			t.Fatalf("TODO.ADD: %q", got)
		}
		for _, args := range [][]string{{"TODO.UPDATE", "1", "priority", "3"}, {"TODO.CLAIM", "1", "x"}} {
			if got := c.DoS(args...); !strings.HasPrefix(got, "%8\r\n") {
				t.Fatalf("%v: %q", args, got)
			}
		}
		got = c.DoS("TODO.REPLACE", `[{"content":"a","status":"completed"},{"content":"b","status":"pending"}]`)
		if !strings.HasPrefix(got, "%2\r\n$7\r\nversion\r\n:4\r\n$5\r\nitems\r\n*2\r\n%8\r\n") {
			t.Fatalf("TODO.REPLACE: %q", got)
		}
		got = c.DoS("TODO.LIST")
		if !strings.HasPrefix(got, "%2\r\n$7\r\nversion\r\n:4\r\n$5\r\nitems\r\n*2\r\n%8\r\n$2\r\nid\r\n$1\r\n1\r\n") ||
			strings.Count(got, "%8\r\n") != 2 {
			t.Fatalf("TODO.LIST: %q", got)
		}
		_, items := todoListOf(t, []byte(got))
		if items[0]["status"] != "completed" || items[0]["owner"] != "x" || items[1]["id"] != "2" {
			t.Fatalf("TODO.LIST items: %v", items)
		}
		if got := c.DoS("TODO.REMOVE", "2"); got != "%2\r\n$2\r\nid\r\n$1\r\n2\r\n$7\r\nversion\r\n:5\r\n" {
			t.Fatalf("TODO.REMOVE: %q", got)
		}
		if got := c.DoS("TODO.CLAIM", "1", "y"); !strings.HasPrefix(got, "-CONFLICT todo 1 is completed, not pending") {
			t.Fatalf("TODO.CLAIM: %q", got)
		}
	})
}

// TestTodoConcurrent: 16 clients increment a counter todo with IFVERSION,
// retrying on CONFLICT, claim every task todo, and add todos (the ADD path
// retries internally when the list moves under it): no increment is lost,
// every task is claimed exactly once, every added id is unique.
func TestTodoConcurrent(t *testing.T) {
	todoBackends(t, func(t *testing.T, addr string) {
		const clients, incs, tasks, adds = 16, 8, 8, 3
		setup := testutil.Dial(t, addr)
		var list []string
		list = append(list, `{"content":"0","status":"in_progress"}`)
		for i := 0; i < tasks; i++ {
			list = append(list, fmt.Sprintf(`{"content":"task %d","status":"pending"}`, i))
		}
		if got := setup.DoS("TODO.REPLACE", "["+strings.Join(list, ",")+"]"); got[0] == '-' {
			t.Fatalf("TODO.REPLACE: %q", got)
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			claims  = map[string][]int{}
			added   = map[string]bool{}
			retries int
			fails   []string
		)
		failf := func(format string, a ...any) {
			mu.Lock()
			fails = append(fails, fmt.Sprintf(format, a...))
			mu.Unlock()
		}
		for g := 0; g < clients; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				c := testutil.Dial(t, addr)
				for i := 0; i < incs; i++ {
					for {
						_, items := todoListOf(t, c.Do("TODO.LIST"))
						n, _ := strconv.Atoi(items[0]["content"].(string))
						ver := strconv.FormatInt(items[0]["version"].(int64), 10)
						got := c.DoS("TODO.UPDATE", "1", "IFVERSION", ver, "content", strconv.Itoa(n+1))
						if strings.HasPrefix(got, "-CONFLICT version is ") {
							mu.Lock()
							retries++
							mu.Unlock()
							continue
						}
						if got[0] == '-' {
							failf("TODO.UPDATE: %q", got)
						}
						break
					}
				}
				for k := 0; k < tasks; k++ {
					id := strconv.Itoa(k + 2)
					got := c.DoS("TODO.CLAIM", id, "g"+strconv.Itoa(g))
					switch {
					case strings.HasPrefix(got, "-CONFLICT todo "+id+" is in_progress, not pending"):
					case got[0] == '-':
						failf("TODO.CLAIM %s: %q", id, got)
					default:
						mu.Lock()
						claims[id] = append(claims[id], g)
						mu.Unlock()
					}
				}
				for k := 0; k < adds; k++ {
					r := todoVal(t, c.Do("TODO.ADD", fmt.Sprintf("added %d/%d", g, k)))
					if err, bad := r.(error); bad {
						failf("TODO.ADD: %v", err)
						continue
					}
					id := todoRec(t, r)["id"].(string)
					mu.Lock()
					if added[id] {
						fails = append(fails, "id "+id+" added twice")
					}
					added[id] = true
					mu.Unlock()
				}
			}(g)
		}
		wg.Wait()
		if len(fails) > 0 {
			t.Fatalf("%d failures, first: %s", len(fails), fails[0])
		}
		_, items := todoListOf(t, setup.Do("TODO.LIST"))
		if items[0]["content"] != strconv.Itoa(clients*incs) || items[0]["version"] != int64(1+clients*incs) {
			t.Fatalf("counter: %v after %d increments (%d conflicts retried)", items[0], clients*incs, retries)
		}
		for k := 0; k < tasks; k++ {
			id := strconv.Itoa(k + 2)
			it := items[k+1]
			if len(claims[id]) != 1 || it["status"] != "in_progress" || it["owner"] != "g"+strconv.Itoa(claims[id][0]) {
				t.Fatalf("todo %s: claimed by %v, now %v", id, claims[id], it)
			}
		}
		if len(added) != clients*adds || len(items) != 1+tasks+clients*adds {
			t.Fatalf("added %d ids, list has %d items", len(added), len(items))
		}
		t.Logf("%d conflicts retried", retries)
	})
}
