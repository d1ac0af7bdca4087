package tests

// The adversarial suite: a real redis-server, require_auth = true, agent
// users in two workspaces (alice and carol in "acme", bob in "globex") and an
// admin. Each test attacks one class of the safety promises with several
// forms, and proves the outcome by reading Redis directly: the attack is
// refused or harmless, and the other workspace's data and service are
// untouched.

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

const (
	advAcme   = "deepagents:{acme}:"
	advGlobex = "deepagents:{globex}:"
)

// advEnv is one attack ground.
type advEnv struct {
	t      *testing.T
	r      *testutil.Redis
	a      *app.App
	direct *testutil.Conn
}

func advStart(t *testing.T, edit func(*config.Config)) *advEnv {
	t.Helper()
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Listen.RequireAuth = true
	cfg.Users = []config.User{
		{Name: "alice", PasswordSHA256: isoHash("alice-pw"), Workspaces: []string{"acme"}, Role: "agent"},
		{Name: "carol", PasswordSHA256: isoHash("carol-pw"), Workspaces: []string{"acme"}, Role: "agent"},
		{Name: "bob", PasswordSHA256: isoHash("bob-pw"), Workspaces: []string{"globex"}, Role: "agent"},
		{Name: "root", PasswordSHA256: isoHash("root-pw"), Workspaces: []string{"*"}, Role: "admin"},
	}
	if edit != nil {
		edit(&cfg)
	}
	e := &advEnv{t: t, r: r, a: testutil.StartProxy(t, cfg), direct: testutil.Dial(t, r.Addr)}
	// The victim's data, written straight into Redis.
	e.direct.Do("SET", advGlobex+"kv:secret", "globex-data")
	e.direct.Do("RPUSH", advGlobex+"kv:list", "a", "b")
	e.direct.Do("GEOADD", advAcme+"kv:geo", "15", "37", "m1", "15.1", "37.1", "m2")
	e.direct.Do("GEOADD", advGlobex+"kv:geo", "15", "37", "g1")
	e.direct.Do("XADD", advAcme+"kv:stream", "1-1", "f", "v")
	e.direct.Do("XADD", advGlobex+"kv:stream", "1-1", "f", "v")
	return e
}

// login opens a proxy connection authenticated as user (password
// "<user>-pw").
func (e *advEnv) login(user string) *testutil.Conn {
	e.t.Helper()
	c := testutil.Dial(e.t, e.a.Addr())
	if got := c.DoS("AUTH", user, user+"-pw"); got != "+OK\r\n" {
		e.t.Fatalf("AUTH %s: %q", user, got)
	}
	return c
}

// keys lists every key in Redis's database 0, sorted.
func (e *advEnv) keys() []string {
	e.t.Helper()
	var out []string
	cursor := "0"
	for {
		v, _ := isoParse(e.direct.Do("SCAN", cursor, "COUNT", "1000"))
		cursor = v.elems[0].str
		for _, k := range v.elems[1].elems {
			out = append(out, k.str)
		}
		if cursor == "0" {
			break
		}
	}
	sort.Strings(out)
	return out
}

// victimIntact checks that globex's data is what advStart wrote and that
// no key outside a workspace exists.
func (e *advEnv) victimIntact() {
	e.t.Helper()
	if got := e.direct.DoS("GET", advGlobex+"kv:secret"); got != "$11\r\nglobex-data\r\n" {
		e.t.Errorf("globex's secret: %q", got)
	}
	if got := e.direct.DoS("LRANGE", advGlobex+"kv:list", "0", "-1"); got != "*2\r\n$1\r\na\r\n$1\r\nb\r\n" {
		e.t.Errorf("globex's list: %q", got)
	}
	for _, k := range e.keys() {
		if !strings.HasPrefix(k, advAcme) && !strings.HasPrefix(k, advGlobex) {
			e.t.Errorf("a key outside every workspace exists: %q", k)
		}
		if strings.HasPrefix(k, advGlobex) && k != advGlobex+"kv:secret" && k != advGlobex+"kv:list" &&
			k != advGlobex+"kv:geo" && k != advGlobex+"kv:stream" && !strings.Contains(k, ":bob:") {
			e.t.Errorf("a globex key appeared: %q", k)
		}
	}
}

// refused reports whether a reply is a refusal by the proxy (never a
// result of running the command).
func advRefused(r string) bool {
	for _, p := range []string{"-NOPERM ", "-BADKEY ", "-ERR unknown subcommand",
		"-ERR wrong number of arguments", "-ERR unknown command", "-LOCKED ", "-FENCED "} {
		if strings.HasPrefix(r, p) {
			return true
		}
	}
	return strings.Contains(r, "not supported through agentproxy") || strings.Contains(r, "cannot be queued in MULTI")
}

func (e *advEnv) mustRefuse(c *testutil.Conn, args ...string) string {
	e.t.Helper()
	got := c.DoS(args...)
	if !advRefused(got) {
		e.t.Errorf("%q: %q, want a refusal", args, got)
	}
	return got
}

// TestAdversarialKeyExtraction: forms whose keys the proxy could read
// differently from Redis (class 1).
func TestAdversarialKeyExtraction(t *testing.T) {
	e := advStart(t, func(c *config.Config) { c.Keyspace.AllowCommands = []string{"sort", "sort_ro"} })
	alice := e.login("alice")
	own, foreign := advAcme+"kv:out", advGlobex+"kv:secret"
	for _, args := range [][]string{
		// A key keyword given twice: Redis's parser writes the last.
		{"GEORADIUS", advAcme + "kv:geo", "15", "37", "500", "km", "STORE", own, "STORE", foreign},
		{"GEORADIUS", advAcme + "kv:geo", "15", "37", "500", "km", "store", own, "sToRe", "plain-key"},
		{"GEORADIUSBYMEMBER", advAcme + "kv:geo", "m1", "500", "km", "STOREDIST", own, "STOREDIST", foreign},
		{"GEORADIUS", advAcme + "kv:geo", "15", "37", "500", "km", "STORE", own, "STOREDIST", foreign},
		{"SORT", advAcme + "kv:geo", "STORE", own, "STORE", foreign},
		{"SORT", advAcme + "kv:geo", "STORE", "store", foreign},
		{"XREAD", "STREAMS", advAcme + "kv:stream", "STREAMS", advGlobex + "kv:stream", "0", "0"},
		{"XREADGROUP", "GROUP", "g", "c", "STREAMS", advAcme + "kv:stream", "streams", "0", ">"},
		// A keyword ending in a NUL byte is the keyword to Redis (strcasecmp).
		{"XREAD", "STREAMS\x00", advGlobex + "kv:stream", "0"},
		{"XREAD", "STREAMS\x00x", advGlobex + "kv:stream", "0"},
		{"XREADGROUP", "GROUP", "g", "c", "STREAMS\x00", advGlobex + "kv:stream", ">"},
		{"XREAD", "STREAMS\x00", advGlobex + "kv:stream", "STREAMS", advAcme + "kv:stream", "0", "0"},
		{"GEORADIUS", advAcme + "kv:geo", "15", "37", "500", "km", "STORE\x00", foreign},
		{"GEORADIUSBYMEMBER", advAcme + "kv:geo", "m1", "500", "km", "STOREDIST\x00", foreign},
		{"SORT", advAcme + "kv:geo", "STORE\x00", foreign},
		{"SORT", advAcme + "kv:geo", "BY", "nosort", "GET\x00", advGlobex + "kv:*"},
		// numkeys at and past its edges, counting a foreign key.
		{"ZUNIONSTORE", own, "2", advAcme + "kv:z", foreign},
		{"ZUNIONSTORE", own, "01", foreign},
		{"ZUNIONSTORE", own, "+1", foreign},
		{"ZUNIONSTORE", own, "1.5", foreign},
		{"ZUNIONSTORE", own, " 2", advAcme + "kv:z", foreign},
		{"LMPOP", "2", advAcme + "kv:l", foreign, "LEFT"},
		{"EVAL", "return 1", "4294967297", foreign},
		{"BLMPOP", "0.01", "2", advAcme + "kv:l", foreign, "LEFT"},
		// Keys in every position of multi-key commands.
		{"BITOP", "AND", own, advAcme + "kv:a", foreign},
		{"SMOVE", foreign, own, "a"},
		{"LMOVE", advGlobex + "kv:list", own, "LEFT", "RIGHT"},
		{"COPY", foreign, own},
		{"RENAME", foreign, own},
		{"MSET", own, "1", foreign, "2"},
		{"OBJECT", "ENCODING", foreign},
		{"OBJECT", "NOSUCH", foreign},
		{"MEMORY", "USAGE", foreign},
		{"WATCH", foreign},
		{"XINFO", "STREAM", advGlobex + "kv:stream"},
		{"SORT", advAcme + "kv:geo", "BY", advGlobex + "kv:*"},
		{"SORT", advAcme + "kv:geo", "GET", advAcme + "*"},
		{"MIGRATE", "127.0.0.1", strconv.Itoa(e.r.Port), "", "0", "1000", "KEYS", foreign},
		{"XREAD", "COUNT", "1"},
	} {
		e.mustRefuse(alice, args...)
	}
	// numkeys that counts no key (0, negative, more than the arguments):
	// Redis cannot find the keys either and its parser rejects the form
	// with its own error; nothing runs.
	for _, args := range [][]string{
		{"ZUNIONSTORE", own, "3", advAcme + "kv:z", foreign},
		{"ZUNIONSTORE", own, "0", foreign},
		{"LMPOP", "0", foreign, "LEFT"},
		{"SINTERCARD", "99999999999", foreign},
		{"ZINTERCARD", "-1", foreign},
		{"XREAD", "COUNT", "1", "STREAMS", foreign},
	} {
		if got := alice.DoS(args...); !strings.HasPrefix(got, "-ERR ") {
			t.Errorf("%q: %q, want Redis's error", args, got)
		}
	}
	if got := e.direct.DoS("EXISTS", own); got != ":0\r\n" {
		t.Errorf("a refused command wrote %s: %q", own, got)
	}
	e.victimIntact()
	// Control: the same forms inside the workspace work.
	if got := alice.DoS("GEORADIUS", advAcme+"kv:geo", "15", "37", "500", "km", "STORE", own); got != ":2\r\n" {
		t.Errorf("GEORADIUS STORE own: %q", got)
	}
}

// TestAdversarialDangerousCommands: commands that can hurt every client
// (class 2). Redis survives and nothing changes.
func TestAdversarialDangerousCommands(t *testing.T) {
	e := advStart(t, nil)
	alice := e.login("alice")
	// A crafted DUMP payload (RESTORE crashed Redis 7.0 with some).
	dump := e.direct.Do("DUMP", advGlobex+"kv:secret")
	payload := string(dump[strings.Index(string(dump), "\r\n")+2 : len(dump)-2])
	for _, args := range [][]string{
		{"RESTORE", advAcme + "kv:r", "0", payload},
		{"RESTORE", advAcme + "kv:r", "0", "\x00\x01garbage\x09\x00", "REPLACE"},
		{"KEYS", advAcme + "*"},
		{"SORT", advAcme + "kv:geo"},
		{"SORT_RO", advAcme + "kv:geo"},
		{"FLUSHALL"}, {"FLUSHDB", "ASYNC"}, {"SWAPDB", "0", "1"}, {"MOVE", advAcme + "kv:geo", "1"},
		{"DEBUG", "SEGFAULT"}, {"DEBUG", "SLEEP", "5"}, {"SHUTDOWN", "NOSAVE"}, {"CONFIG", "SET", "maxmemory", "1"},
		{"CONFIG", "GET", "*"}, {"CLIENT", "PAUSE", "10000"}, {"CLIENT", "KILL", "TYPE", "normal"},
		{"SCRIPT", "FLUSH"}, {"FUNCTION", "FLUSH"}, {"MODULE", "LOAD", "/tmp/x.so"}, {"REPLICAOF", "127.0.0.1", "1"},
		{"BGSAVE"}, {"SAVE"}, {"LASTSAVE"}, {"ROLE"}, {"FAILOVER"}, {"PFSELFTEST"}, {"PFDEBUG", "GETREG", advAcme + "kv:h"},
		{"MIGRATE", "127.0.0.1", "1", advAcme + "kv:geo", "0", "100"}, {"RESTORE-ASKING", advAcme + "kv:r", "0", payload},
		{"ACL", "SETUSER", "evil", "on", ">x", "+@all"}, {"LATENCY", "RESET"}, {"SLOWLOG", "RESET"}, {"MEMORY", "PURGE"},
		{"EVAL", "redis.call('flushall')", "0"}, {"SCRIPT", "LOAD", "return 1"}, {"FCALL", "f", "0"},
	} {
		e.mustRefuse(alice, args...)
	}
	if got := e.direct.DoS("PING"); got != "+PONG\r\n" {
		t.Fatalf("Redis after the attacks: %q", got)
	}
	if got := e.direct.DoS("EXISTS", advAcme+"kv:r"); got != ":0\r\n" {
		t.Errorf("RESTORE reached Redis: %q", got)
	}
	if got := e.direct.DoS("CONFIG", "GET", "maxmemory"); got != "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n" {
		t.Errorf("maxmemory changed: %q", got)
	}
	e.victimIntact()
	// An operator may hand a confinable one to agents; it is then checked
	// by its keys like any other.
	e2 := advStart(t, func(c *config.Config) { c.Keyspace.AllowCommands = []string{"restore"} })
	a2 := e2.login("alice")
	if got := a2.DoS("RESTORE", advAcme+"kv:r", "0", payload); got != "+OK\r\n" {
		t.Errorf("allowed RESTORE: %q", got)
	}
	e2.mustRefuse(a2, "RESTORE", advGlobex+"kv:r", "0", payload)
	e2.mustRefuse(a2, "KEYS", "*")
}

// advClientFlags lists Redis's view of its connections: id -> flags, db.
func (e *advEnv) clientList() []map[string]string {
	e.t.Helper()
	v, _ := isoParse(e.direct.Do("CLIENT", "LIST"))
	var out []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(v.str), "\n") {
		m := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, val, _ := strings.Cut(f, "=")
			m[k] = val
		}
		out = append(out, m)
	}
	return out
}

// TestAdversarialSharedConnectionState: commands that would change the
// state of an upstream connection other clients share (class 3).
func TestAdversarialSharedConnectionState(t *testing.T) {
	e := advStart(t, nil)
	alice, bob := e.login("alice"), e.login("bob")
	for _, args := range [][]string{
		{"CLIENT", "NO-EVICT", "ON"}, {"CLIENT", "REPLY", "OFF"}, {"CLIENT", "REPLY", "SKIP"},
		{"ASKING"}, {"READONLY"}, {"READWRITE"}, {"SCRIPT", "DEBUG", "YES"},
		{"CLIENT", "TRACKING", "ON", "REDIRECT", "1"}, {"CLIENT", "NOSUCH", "ON"},
	} {
		e.mustRefuse(alice, args...)
	}
	// State queued inside MULTI would change the pinned connection at EXEC.
	for _, inner := range [][]string{
		{"SUBSCRIBE", advAcme + "events"}, {"PSUBSCRIBE", advAcme + "events*"}, {"CLIENT", "TRACKING", "ON"},
		{"CLIENT", "REPLY", "OFF"}, {"HELLO", "3"}, {"AUTH", "bob", "bob-pw"}, {"UNSUBSCRIBE", "a", "b"},
		{"CLIENT", "SETNAME", "x"}, {"INFO"}, {"MONITOR"},
	} {
		if got := alice.DoS("MULTI"); got != "+OK\r\n" {
			t.Fatalf("MULTI: %q", got)
		}
		e.mustRefuse(alice, inner...)
		if got := alice.DoS("EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
			t.Errorf("EXEC after refused %q: %q", inner, got)
		}
	}
	// Agents stay in database 0; SELECT 0 is a no-op that clients send.
	e.mustRefuse(alice, "SELECT", "5")
	if got := alice.DoS("SELECT", "0"); got != "+OK\r\n" {
		t.Fatalf("SELECT 0: %q", got)
	}
	alice.Do("MULTI")
	e.mustRefuse(alice, "SELECT", "6")
	if got := alice.DoS("EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
		t.Fatalf("EXEC after SELECT 6: %q", got)
	}
	alice.Close()
	// An admin may SELECT; that pins, and the database never leaks into
	// others' connections.
	root := e.login("root")
	if got := root.DoS("SELECT", "5"); got != "+OK\r\n" {
		t.Fatalf("admin SELECT 5: %q", got)
	}
	root.Do("SET", advAcme+"kv:in5", "x")
	root.Do("MULTI")
	root.Do("SELECT", "6")
	if got := root.DoS("EXEC"); !strings.HasPrefix(got, "*1\r\n") {
		t.Fatalf("admin EXEC: %q", got)
	}
	root.Close()
	// Bob's commands, shared and pinned, still land in database 0 and get
	// their own replies.
	for i := 0; i < 20; i++ {
		k := advGlobex + "kv:bob:" + strconv.Itoa(i)
		if got := bob.DoS("SET", k, "v"); got != "+OK\r\n" {
			t.Fatalf("bob SET: %q", got)
		}
		bob.Do("MULTI")
		bob.Do("INCR", k+":n")
		if got := bob.DoS("EXEC"); got != "*1\r\n:1\r\n" {
			t.Fatalf("bob EXEC: %q", got)
		}
		if got := bob.DoS("BLPOP", advGlobex+"kv:bob:empty", "0.01"); got != "*-1\r\n" {
			t.Fatalf("bob BLPOP: %q", got)
		}
		if got := e.direct.DoS("EXISTS", k, k+":n"); got != ":2\r\n" {
			t.Fatalf("bob's keys not in db 0: %q", got)
		}
	}
	// No connection left with state: none subscribed, tracking, no-evict,
	// silenced, or in another database once the attacker is gone.
	deadline := time.Now().Add(5 * time.Second)
	for {
		bad := ""
		for _, c := range e.clientList() {
			if c["cmd"] == "client|list" || strings.HasPrefix(c["name"], "agentproxy-") {
				continue // this check's own connection, the proxy's lock watch
			}
			if c["db"] != "0" || c["sub"] != "0" || c["psub"] != "0" || strings.ContainsAny(c["flags"], "etPx") {
				bad = fmt.Sprint(c)
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an upstream connection keeps state after the attacker left: %s", bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.victimIntact()
}

// TestAdversarialOtherConnections: commands that name a connection by id
// (class 4).
func TestAdversarialOtherConnections(t *testing.T) {
	e := advStart(t, nil)
	alice, bob := e.login("alice"), e.login("bob")
	bobID := strings.TrimSuffix(strings.TrimPrefix(bob.DoS("CLIENT", "ID"), ":"), "\r\n")
	// Bob blocks; alice tries to unblock, kill or probe him, by his proxy
	// id and by every id Redis has.
	bob.Send("BLPOP", advGlobex+"kv:wait", "0")
	time.Sleep(100 * time.Millisecond)
	ids := []string{bobID}
	for _, c := range e.clientList() {
		ids = append(ids, c["id"])
	}
	for _, id := range ids {
		e.mustRefuse(alice, "CLIENT", "UNBLOCK", id)
		e.mustRefuse(alice, "CLIENT", "UNBLOCK", id, "ERROR")
		e.mustRefuse(alice, "CLIENT", "KILL", "ID", id)
		e.mustRefuse(alice, "CLIENT", "TRACKING", "ON", "REDIRECT", id)
		e.mustRefuse(alice, "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", advAcme, "REDIRECT", id)
		if got := alice.DoS("CLIENT", "LIST", "ID", id); id != bobID && strings.Contains(got, "id=") && !strings.Contains(got, "user=alice") {
			t.Errorf("CLIENT LIST ID %s shows another connection: %q", id, got)
		}
	}
	for _, args := range [][]string{
		{"CLIENT", "KILL", "127.0.0.1:1"}, {"CLIENT", "KILL", "USER", "default"}, {"CLIENT", "KILL", "ADDR", "127.0.0.1:1"},
		{"CLIENT", "KILL", "LADDR", e.r.Addr}, {"CLIENT", "KILL", "SKIPME", "no"}, {"CLIENT", "PAUSE", "100", "WRITE"},
		{"CLIENT", "UNPAUSE"}, {"CLIENT", "NO-EVICT", "on"},
	} {
		e.mustRefuse(alice, args...)
	}
	// What alice can see is her own connection only.
	for _, args := range [][]string{{"CLIENT", "LIST"}, {"CLIENT", "INFO"}, {"CLIENT", "LIST", "TYPE", "normal"}} {
		got := alice.DoS(args...)
		if strings.Count(got, "id=") != 1 || !strings.Contains(got, "user=alice") || strings.Contains(got, e.r.Addr) {
			t.Errorf("%q: %q, want alice's own connection only", args, got)
		}
	}
	// Bob is still blocked and gets the element when it comes.
	if got := e.direct.DoS("RPUSH", advGlobex+"kv:wait", "x"); got != ":1\r\n" {
		t.Fatal(got)
	}
	if got := string(bob.Read()); got != "*2\r\n$27\r\n"+advGlobex+"kv:wait\r\n$1\r\nx\r\n" {
		t.Errorf("bob's BLPOP: %q", got)
	}
	e.victimIntact()
}

// TestAdversarialOwnedKinds: the domain's state written or read raw
// (class 5), and lock tokens used by another user of the workspace.
func TestAdversarialOwnedKinds(t *testing.T) {
	e := advStart(t, nil)
	alice, carol := e.login("alice"), e.login("carol")
	// Domain state made through the domain commands.
	tok := strings.TrimPrefix(strings.Split(alice.DoS("LOCK.ACQUIRE", "doc", "60000"), "\r\n")[3], ":")
	if got := alice.DoS("FILE.WRITE", "/notes.md", "hi"); !strings.HasPrefix(got, "*8\r\n") {
		t.Fatalf("FILE.WRITE: %q", got)
	}
	alice.Do("TODO.ADD", "first")
	alice.Do("CACHE.SET", "tool", "h1", "cached")
	fence := e.direct.DoS("GET", advAcme+"fence:doc")
	meta := e.direct.DoS("HGETALL", advAcme+"files:/notes.md")
	events := e.direct.DoS("XLEN", advAcme+"events:log")
	for _, args := range [][]string{
		{"DEL", advAcme + "fence:doc"}, {"SET", advAcme + "fence:doc", "0"}, {"DECR", advAcme + "fence:doc"},
		{"GET", advAcme + "fence:doc"}, {"HGETALL", advAcme + "lock:doc"}, {"DUMP", advAcme + "lock:doc"},
		{"PEXPIRE", advAcme + "lock:doc", "1"}, {"DEL", advAcme + "lock:doc"}, {"HSET", advAcme + "lock:doc", "token", "99"},
		{"HSET", advAcme + "files:/notes.md", "size", "999"}, {"DEL", advAcme + "files:#index"},
		{"ZADD", advAcme + "files:#index", "0", "/forged"}, {"RENAME", advAcme + "files:/notes.md", advAcme + "kv:x"},
		{"COPY", advAcme + "kv:any", advAcme + "todos"}, {"HSET", advAcme + "todo:1", "status", "completed"},
		{"XADD", advAcme + "events:log", "*", "event", "forged"}, {"XTRIM", advAcme + "events:log", "MAXLEN", "0"},
		{"PUBLISH", advAcme + "events", `{"type":"forged"}`}, {"SET", advAcme + "cache:tool:h1", "poison"},
		{"HSET", advAcme + "cache:tool:h1", "value", "poison"}, {"EXPIRE", advAcme + "cache:tool:h1", "100000"},
		{"SUNIONSTORE", advAcme + "todos", advAcme + "kv:a"}, {"BITOP", "OR", advAcme + "fence:doc", advAcme + "kv:a"},
	} {
		got := e.mustRefuse(carol, args...)
		if strings.HasPrefix(got, "-NOPERM key") && !strings.Contains(got, "use ") {
			t.Errorf("%q: the refusal does not name what to use: %q", args, got)
		}
	}
	// Carol, in the same workspace, sees alice's token (LOCK.INFO) but
	// cannot act as the holder with it.
	info := carol.DoS("LOCK.INFO", "doc")
	if !strings.Contains(info, "\r\n:"+tok+"\r\n") {
		t.Fatalf("LOCK.INFO: %q", info)
	}
	for _, args := range [][]string{
		{"LOCK.USE", "doc", tok}, {"LOCK.RELEASE", "doc", tok}, {"LOCK.EXTEND", "doc", tok, "999999"},
	} {
		if got := carol.DoS(args...); !strings.HasPrefix(got, "-LOCKED resource 'doc' is held by user 'alice'") {
			t.Errorf("carol %q: %q", args, got)
		}
	}
	// A guarded write with the stolen token: the lock on files:/notes.md.
	ftok := strings.TrimPrefix(strings.Split(alice.DoS("LOCK.ACQUIRE", "files:/notes.md", "60000"), "\r\n")[3], ":")
	if got := carol.DoS("FILE.WRITE", "/notes.md", "carol", "FENCE", ftok); !strings.HasPrefix(got, "-LOCKED ") {
		t.Errorf("carol's FILE.WRITE with alice's token: %q", got)
	}
	if got := alice.DoS("FILE.WRITE", "/notes.md", "alice2", "FENCE", ftok); !strings.HasPrefix(got, "*8\r\n") {
		t.Errorf("alice's own fenced write: %q", got)
	}
	// Raw reads of the other domain kinds stay (they hide no proof).
	for _, args := range [][]string{{"HGET", advAcme + "files:/notes.md", "size"}, {"XLEN", advAcme + "events:log"},
		{"HGET", advAcme + "cache:tool:h1", "value"}, {"LRANGE", advAcme + "todos", "0", "-1"}} {
		if got := carol.DoS(args...); advRefused(got) {
			t.Errorf("raw read %q refused: %q", args, got)
		}
	}
	if got := e.direct.DoS("GET", advAcme+"fence:doc"); got != fence {
		t.Errorf("fence counter changed: %q, was %q", got, fence)
	}
	if got := e.direct.DoS("HGET", advAcme+"lock:doc", "holder"); got != "$5\r\nalice\r\n" {
		t.Errorf("lock holder: %q", got)
	}
	if got := e.direct.DoS("HGET", advAcme+"cache:tool:h1", "value"); got != "$6\r\ncached\r\n" {
		t.Errorf("cache entry: %q", got)
	}
	if got := carol.DoS("FILE.GET", "/notes.md"); got != "$6\r\nalice2\r\n" {
		t.Errorf("FILE.GET: %q", got)
	}
	_ = meta
	// Only the successful domain writes added events.
	n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(events, ":"), "\r\n"))
	if got := e.direct.DoS("XLEN", advAcme+"events:log"); got != ":"+strconv.Itoa(n+2)+"\r\n" {
		t.Errorf("event log: %q, want %d (lock.acquired, file.write)", got, n+2)
	}
	e.victimIntact()
}

// advPipe sends args n times in one write and reads the n replies.
func advPipe(c *testutil.Conn, n int, args ...string) []string {
	var b []byte
	for i := 0; i < n; i++ {
		b = isoCmd(b, args...)
	}
	c.Write(b)
	out := make([]string, n)
	for i := range out {
		out[i] = string(c.Read())
	}
	return out
}

// advConcurrent runs f in n goroutines until stop closes.
func advConcurrent(n int, stop <-chan struct{}, f func(i int)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				f(i)
			}
		}(i)
	}
	return &wg
}

// TestAdversarialDedicatedExhaustion: one workspace's clients cannot take
// every Redis connection with blocking commands, subscriptions or
// transactions; other workspaces keep getting theirs.
func TestAdversarialDedicatedExhaustion(t *testing.T) {
	e := advStart(t, func(c *config.Config) { c.Upstream.MaxDedicatedPerWorkspace = 4 })
	var held []*testutil.Conn
	for i := 0; i < 4; i++ {
		c := e.login("alice")
		c.Send("BLPOP", advAcme+"kv:never", "0")
		held = append(held, c)
	}
	time.Sleep(200 * time.Millisecond)
	extra := e.login("alice")
	for _, args := range [][]string{{"BLPOP", advAcme + "kv:never", "0"}, {"MULTI"}, {"SUBSCRIBE", advAcme + "events"}} {
		if got := extra.DoS(args...); !strings.HasPrefix(got, "-TRYAGAIN this workspace holds as many dedicated") {
			t.Errorf("alice's 5th dedicated %q: %q", args, got)
		}
	}
	// Plain commands still work for alice, and bob is not limited by her.
	if got := extra.DoS("SET", advAcme+"kv:plain", "1"); got != "+OK\r\n" {
		t.Errorf("plain SET: %q", got)
	}
	bob := e.login("bob")
	if got := bob.DoS("BLPOP", advGlobex+"kv:empty", "0.01"); got != "*-1\r\n" {
		t.Errorf("bob's BLPOP: %q", got)
	}
	if got := bob.DoS("MULTI"); got != "+OK\r\n" {
		t.Errorf("bob's MULTI: %q", got)
	}
	bob.Do("DISCARD")
	// When alice's blocked clients leave, her slots come back.
	for _, c := range held {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := extra.DoS("BLPOP", advAcme+"kv:never", "0.01")
		if got == "*-1\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's slots after her clients left: %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
