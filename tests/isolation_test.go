package tests

// Workspace isolation (SPEC §4, §10), adversarially: every key-taking
// command of the table is called with keys of another workspace and must be
// refused with NOPERM before anything reaches Redis (a MONITOR on the real
// server proves it); SCAN never lists another workspace's key whatever its
// MATCH/TYPE/COUNT; wide KEYS/PSUBSCRIBE patterns and raw scripts are
// refused for agents; a readonly user cannot write by any command; an admin
// can do everything.

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/keyspace"
)

// isoInvocations are plausible invocations of every command of the table
// that has key specs: "K" marks a key (or, for the sharded pub/sub commands,
// a channel) and `""` an empty argument. TestIsolationInvocationTable checks
// that the K positions are exactly what keyspace.Extract finds.
var isoInvocations = map[string][]string{
	"append":                {"append K v"},
	"bitcount":              {"bitcount K", "bitcount K 0 -1 BIT"},
	"bitfield":              {"bitfield K GET u8 0", "bitfield K SET u8 0 1"},
	"bitfield_ro":           {"bitfield_ro K GET u8 0"},
	"bitop":                 {"bitop AND K K K", "bitop NOT K K"},
	"bitpos":                {"bitpos K 1"},
	"blmove":                {"blmove K K LEFT RIGHT 0.01"},
	"blmpop":                {"blmpop 0.01 2 K K LEFT COUNT 2"},
	"blpop":                 {"blpop K K 0.01"},
	"brpop":                 {"brpop K K 0.01"},
	"brpoplpush":            {"brpoplpush K K 0.01"},
	"bzmpop":                {"bzmpop 0.01 2 K K MIN"},
	"bzpopmax":              {"bzpopmax K K 0.01"},
	"bzpopmin":              {"bzpopmin K K 0.01"},
	"copy":                  {"copy K K REPLACE"},
	"decr":                  {"decr K"},
	"decrby":                {"decrby K 2"},
	"del":                   {"del K", "del K K K"},
	"dump":                  {"dump K"},
	"eval":                  {"eval return(1) 2 K K a"},
	"eval_ro":               {"eval_ro return(1) 1 K"},
	"evalsha":               {"evalsha e0e1f9fabfc9d4800c877a703b823ac0578ff8db 1 K"},
	"evalsha_ro":            {"evalsha_ro e0e1f9fabfc9d4800c877a703b823ac0578ff8db 1 K"},
	"exists":                {"exists K K"},
	"expire":                {"expire K 100", "expire K 100 NX"},
	"expireat":              {"expireat K 4000000000"},
	"expiretime":            {"expiretime K"},
	"fcall":                 {"fcall myfn 1 K a"},
	"fcall_ro":              {"fcall_ro myfn 1 K"},
	"geoadd":                {"geoadd K 13.361389 38.115556 Palermo"},
	"geodist":               {"geodist K a b km"},
	"geohash":               {"geohash K a"},
	"geopos":                {"geopos K a"},
	"georadius":             {"georadius K 15 37 200 km", "georadius K 15 37 200 km STORE K", "georadius K 15 37 200 km STOREDIST K"},
	"georadius_ro":          {"georadius_ro K 15 37 200 km"},
	"georadiusbymember":     {"georadiusbymember K a 200 km", "georadiusbymember K a 200 km STORE K"},
	"georadiusbymember_ro":  {"georadiusbymember_ro K a 200 km"},
	"geosearch":             {"geosearch K FROMLONLAT 15 37 BYRADIUS 200 km"},
	"geosearchstore":        {"geosearchstore K K FROMLONLAT 15 37 BYRADIUS 200 km"},
	"get":                   {"get K"},
	"getbit":                {"getbit K 0"},
	"getdel":                {"getdel K"},
	"getex":                 {"getex K PERSIST"},
	"getrange":              {"getrange K 0 -1"},
	"getset":                {"getset K v"},
	"hdel":                  {"hdel K f"},
	"hexists":               {"hexists K f"},
	"hget":                  {"hget K f"},
	"hgetall":               {"hgetall K"},
	"hincrby":               {"hincrby K f 1"},
	"hincrbyfloat":          {"hincrbyfloat K f 1.5"},
	"hkeys":                 {"hkeys K"},
	"hlen":                  {"hlen K"},
	"hmget":                 {"hmget K f g"},
	"hmset":                 {"hmset K f v"},
	"hrandfield":            {"hrandfield K 2"},
	"hscan":                 {"hscan K 0 MATCH * COUNT 10"},
	"hset":                  {"hset K f v g w"},
	"hsetnx":                {"hsetnx K f v"},
	"hstrlen":               {"hstrlen K f"},
	"hvals":                 {"hvals K"},
	"incr":                  {"incr K"},
	"incrby":                {"incrby K 2"},
	"incrbyfloat":           {"incrbyfloat K 1.5"},
	"lcs":                   {"lcs K K"},
	"lindex":                {"lindex K 0"},
	"linsert":               {"linsert K BEFORE a b"},
	"llen":                  {"llen K"},
	"lmove":                 {"lmove K K LEFT RIGHT"},
	"lmpop":                 {"lmpop 2 K K LEFT"},
	"lpop":                  {"lpop K"},
	"lpos":                  {"lpos K a"},
	"lpush":                 {"lpush K a b"},
	"lpushx":                {"lpushx K a"},
	"lrange":                {"lrange K 0 -1"},
	"lrem":                  {"lrem K 0 a"},
	"lset":                  {"lset K 0 a"},
	"ltrim":                 {"ltrim K 0 -1"},
	"memory|usage":          {"memory usage K", "memory usage K SAMPLES 5"},
	"mget":                  {"mget K K K"},
	"migrate":               {"migrate 127.0.0.1 1 K 0 10", `migrate 127.0.0.1 1 "" 0 10 KEYS K K`, `migrate 127.0.0.1 1 "" 0 10 AUTH pw KEYS K`},
	"move":                  {"move K 1"},
	"mset":                  {"mset K v K w"},
	"msetnx":                {"msetnx K v K w"},
	"object|encoding":       {"object encoding K"},
	"object|freq":           {"object freq K"},
	"object|idletime":       {"object idletime K"},
	"object|refcount":       {"object refcount K"},
	"persist":               {"persist K"},
	"pexpire":               {"pexpire K 100000"},
	"pexpireat":             {"pexpireat K 4000000000000"},
	"pexpiretime":           {"pexpiretime K"},
	"pfadd":                 {"pfadd K a b"},
	"pfcount":               {"pfcount K K"},
	"pfdebug":               {"pfdebug GETREG K"},
	"pfmerge":               {"pfmerge K K"},
	"psetex":                {"psetex K 100000 v"},
	"pttl":                  {"pttl K"},
	"rename":                {"rename K K"},
	"renamenx":              {"renamenx K K"},
	"restore":               {"restore K 0 payload REPLACE"},
	"restore-asking":        {"restore-asking K 0 payload"},
	"rpop":                  {"rpop K 2"},
	"rpoplpush":             {"rpoplpush K K"},
	"rpush":                 {"rpush K a"},
	"rpushx":                {"rpushx K a"},
	"sadd":                  {"sadd K a b"},
	"scard":                 {"scard K"},
	"sdiff":                 {"sdiff K K"},
	"sdiffstore":            {"sdiffstore K K K"},
	"set":                   {"set K v", "set K v EX 100 NX GET"},
	"setbit":                {"setbit K 7 1"},
	"setex":                 {"setex K 100 v"},
	"setnx":                 {"setnx K v"},
	"setrange":              {"setrange K 0 v"},
	"sinter":                {"sinter K K"},
	"sintercard":            {"sintercard 2 K K LIMIT 1"},
	"sinterstore":           {"sinterstore K K K"},
	"sismember":             {"sismember K a"},
	"smembers":              {"smembers K"},
	"smismember":            {"smismember K a b"},
	"smove":                 {"smove K K a"},
	"sort":                  {"sort K", "sort K LIMIT 0 10 ALPHA STORE K"},
	"sort_ro":               {"sort_ro K ALPHA"},
	"spop":                  {"spop K"},
	"spublish":              {"spublish K hello"},
	"srandmember":           {"srandmember K 2"},
	"srem":                  {"srem K a"},
	"sscan":                 {"sscan K 0"},
	"ssubscribe":            {"ssubscribe K K"},
	"strlen":                {"strlen K"},
	"substr":                {"substr K 0 1"},
	"sunion":                {"sunion K K"},
	"sunionstore":           {"sunionstore K K K"},
	"touch":                 {"touch K K"},
	"ttl":                   {"ttl K"},
	"type":                  {"type K"},
	"unlink":                {"unlink K K"},
	"watch":                 {"watch K K"},
	"xack":                  {"xack K g 0-1"},
	"xadd":                  {"xadd K * f v", "xadd K MAXLEN 10 * f v"},
	"xautoclaim":            {"xautoclaim K g c 0 0-0"},
	"xclaim":                {"xclaim K g c 0 0-1"},
	"xdel":                  {"xdel K 0-1"},
	"xgroup|create":         {"xgroup create K g $ MKSTREAM"},
	"xgroup|createconsumer": {"xgroup createconsumer K g c"},
	"xgroup|delconsumer":    {"xgroup delconsumer K g c"},
	"xgroup|destroy":        {"xgroup destroy K g"},
	"xgroup|setid":          {"xgroup setid K g $"},
	"xinfo|consumers":       {"xinfo consumers K g"},
	"xinfo|groups":          {"xinfo groups K"},
	"xinfo|stream":          {"xinfo stream K"},
	"xlen":                  {"xlen K"},
	"xpending":              {"xpending K g"},
	"xrange":                {"xrange K - +"},
	"xread":                 {"xread STREAMS K 0", "xread COUNT 1 STREAMS K K 0 0"},
	"xreadgroup":            {"xreadgroup GROUP g c STREAMS K >", "xreadgroup GROUP g c COUNT 1 STREAMS K K > >"},
	"xrevrange":             {"xrevrange K + -"},
	"xsetid":                {"xsetid K 0-1"},
	"xtrim":                 {"xtrim K MAXLEN 10"},
	"zadd":                  {"zadd K 1 a 2 b"},
	"zcard":                 {"zcard K"},
	"zcount":                {"zcount K 0 1"},
	"zdiff":                 {"zdiff 2 K K"},
	"zdiffstore":            {"zdiffstore K 2 K K"},
	"zincrby":               {"zincrby K 1 a"},
	"zinter":                {"zinter 2 K K WITHSCORES"},
	"zintercard":            {"zintercard 2 K K"},
	"zinterstore":           {"zinterstore K 2 K K WEIGHTS 1 2"},
	"zlexcount":             {"zlexcount K - +"},
	"zmpop":                 {"zmpop 2 K K MIN"},
	"zmscore":               {"zmscore K a"},
	"zpopmax":               {"zpopmax K"},
	"zpopmin":               {"zpopmin K 2"},
	"zrandmember":           {"zrandmember K"},
	"zrange":                {"zrange K 0 -1"},
	"zrangebylex":           {"zrangebylex K - +"},
	"zrangebyscore":         {"zrangebyscore K 0 1"},
	"zrangestore":           {"zrangestore K K 0 -1"},
	"zrank":                 {"zrank K a"},
	"zrem":                  {"zrem K a"},
	"zremrangebylex":        {"zremrangebylex K - +"},
	"zremrangebyrank":       {"zremrangebyrank K 0 -1"},
	"zremrangebyscore":      {"zremrangebyscore K 0 1"},
	"zrevrange":             {"zrevrange K 0 -1"},
	"zrevrangebylex":        {"zrevrangebylex K + -"},
	"zrevrangebyscore":      {"zrevrangebyscore K 1 0"},
	"zrevrank":              {"zrevrank K a"},
	"zscan":                 {"zscan K 0"},
	"zscore":                {"zscore K a"},
	"zunion":                {"zunion 2 K K"},
	"zunionstore":           {"zunionstore K 2 K K AGGREGATE MAX"},
}

// isoNotSwept are the key-taking commands the sweep leaves out, and why.
var isoNotSwept = map[string]string{
	"sunsubscribe": "leaving a channel is always allowed (it reaches no data)",
}

// isoKeylessWrites are invocations of the write commands without key specs,
// for the readonly sweep.
var isoKeylessWrites = map[string][]string{
	"flushall":         {"flushall"},
	"flushdb":          {"flushdb ASYNC"},
	"swapdb":           {"swapdb 0 1"},
	"function|delete":  {"function delete mylib"},
	"function|flush":   {"function flush"},
	"function|load":    {"function load code"},
	"function|restore": {"function restore payload"},
}

// isoTemplate splits an invocation into arguments and the K positions.
func isoTemplate(tmpl string) (args []string, ks []int) {
	for i, f := range strings.Fields(tmpl) {
		switch f {
		case "K":
			ks = append(ks, i)
		case `""`:
			f = ""
		}
		args = append(args, f)
	}
	return args, ks
}

func isoBytes(args []string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

// isoExtract resolves an invocation and returns its command and the
// positions of its keys and channels, sorted, and of its channels alone.
func isoExtract(t *testing.T, args []string) (*keyspace.Command, []int, map[int]bool) {
	t.Helper()
	b := isoBytes(args)
	info := keyspace.Resolve(b)
	if info == nil {
		t.Fatalf("%q: not in the command table", args)
	}
	var acc keyspace.Access
	if err := keyspace.Extract(info, b, &acc); err != nil {
		t.Fatalf("%q: extract: %v", args, err)
	}
	pos := append(append([]int{}, acc.Keys...), acc.Channels...)
	sort.Ints(pos)
	ch := map[int]bool{}
	for _, i := range acc.Channels {
		ch[i] = true
	}
	return info, pos, ch
}

// isoSweep is one invocation of the sweep with its K positions resolved.
type isoSweep struct {
	name     string
	args     []string
	ks       []int
	channels map[int]bool
	info     *keyspace.Command
}

// isoCommands checks the invocation table against the command table and
// returns the sweep in a stable order.
func isoCommands(t *testing.T) []isoSweep {
	t.Helper()
	var out []isoSweep
	seen := map[string]bool{}
	for _, name := range keyspace.Names() {
		info := keyspace.Resolve(isoBytes(strings.Split(name, "|")))
		if info == nil || info.Name != name {
			t.Fatalf("%s: Resolve finds %v", name, info)
		}
		if len(info.Keys) == 0 {
			continue
		}
		seen[name] = true
		if _, skip := isoNotSwept[name]; skip {
			continue
		}
		tmpls := isoInvocations[name]
		if len(tmpls) == 0 {
			t.Errorf("%s has key specs but no invocation in isoInvocations", name)
			continue
		}
		for _, tmpl := range tmpls {
			args, ks := isoTemplate(tmpl)
			got, pos, ch := isoExtract(t, args)
			if got.Name != name {
				t.Errorf("%q resolves to %s, want %s", tmpl, got.Name, name)
			}
			if !got.ArityOK(len(args)) {
				t.Errorf("%q: wrong arity for %s (%d)", tmpl, name, got.Arity)
			}
			if fmt.Sprint(pos) != fmt.Sprint(ks) {
				t.Errorf("%q: Extract finds keys/channels at %v, the template marks %v", tmpl, pos, ks)
			}
			out = append(out, isoSweep{name: name, args: args, ks: ks, channels: ch, info: got})
		}
	}
	for name := range isoInvocations {
		if !seen[name] {
			t.Errorf("isoInvocations has %s, which has no key specs in the table", name)
		}
	}
	return out
}

func TestIsolationInvocationTable(t *testing.T) {
	sweep := isoCommands(t)
	if len(sweep) < 190 {
		t.Fatalf("only %d invocations", len(sweep))
	}
	// Every write command has a readonly invocation.
	for _, name := range keyspace.Names() {
		info := keyspace.Resolve(isoBytes(strings.Split(name, "|")))
		if !info.Has(keyspace.Write) {
			continue
		}
		if len(isoInvocations[name]) == 0 && len(isoKeylessWrites[name]) == 0 {
			t.Errorf("write command %s has no invocation", name)
		}
	}
}

// isoKey names key i of an invocation of cmd in workspace ws: distinct per
// command and position so the commands that run do not trip over each
// other's types. Channels are under the workspace's events.
func isoKey(ws, cmd string, i int, channel bool) string {
	cmd = strings.ReplaceAll(cmd, "|", "-")
	if channel {
		return "deepagents:{" + ws + "}:events:" + cmd + ":" + strconv.Itoa(i)
	}
	return "deepagents:{" + ws + "}:kv:" + cmd + ":" + strconv.Itoa(i)
}

// isoFill returns the invocation with the key at each K position named for
// the workspace ws(i).
func isoFill(s isoSweep, ws func(i int) string) []string {
	args := append([]string{}, s.args...)
	for _, i := range s.ks {
		args[i] = isoKey(ws(i), s.name, i, s.channels[i])
	}
	return args
}

// isoMonitor watches everything a real Redis executes.
type isoMonitor struct {
	t    *testing.T
	addr string
	c    *testutil.Conn
}

func isoStartMonitor(t *testing.T, addr string) *isoMonitor {
	t.Helper()
	c := testutil.Dial(t, addr)
	if r := c.DoS("MONITOR"); r != "+OK\r\n" {
		t.Fatalf("MONITOR: %q", r)
	}
	return &isoMonitor{t: t, addr: addr, c: c}
}

// lines returns what Redis executed since the monitor started: a unique
// ECHO sent directly marks the end, so every earlier command has been seen.
func (m *isoMonitor) lines() []string {
	m.t.Helper()
	token := fmt.Sprintf("iso-monitor-sentinel-%d", time.Now().UnixNano())
	d := testutil.Dial(m.t, m.addr)
	if r := d.DoS("ECHO", token); !strings.Contains(r, token) {
		m.t.Fatalf("ECHO: %q", r)
	}
	d.Close()
	var out []string
	for {
		f := string(m.c.Read())
		if strings.Contains(f, token) {
			return out
		}
		out = append(out, f)
	}
}

// isoNothingReached fails if Redis executed any command mentioning marker.
func isoNothingReached(t *testing.T, m *isoMonitor, marker string) int {
	t.Helper()
	lines := m.lines()
	for _, l := range lines {
		if strings.Contains(l, marker) {
			t.Errorf("a command with %q reached Redis: %q", marker, l)
		}
	}
	return len(lines)
}

// isoStart starts a Redis and an enforcing proxy (loopback clients are
// agents of workspace "default").
func isoStart(t *testing.T, edit func(*config.Config)) (*testutil.Redis, string) {
	t.Helper()
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	if edit != nil {
		edit(&cfg)
	}
	a := testutil.StartProxy(t, cfg)
	return r, a.Addr()
}

// isoIsRefusal reports whether a reply is one of the proxy's refusals.
func isoIsRefusal(r string) bool {
	return strings.HasPrefix(r, "-NOPERM") || strings.HasPrefix(r, "-BADKEY") ||
		strings.HasPrefix(r, "-ERR wrong number of arguments")
}

func TestIsolationForeignKeysRefused(t *testing.T) {
	sweep := isoCommands(t)
	if t.Failed() {
		t.FailNow()
	}
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	agent := testutil.StartProxy(t, cfg)
	// With keyspace.allow_scripts the script commands are checked by their
	// declared keys instead of being refused outright.
	cfg.Keyspace.AllowScripts = true
	cfg.Keyspace.AllowCommands = []string{"sort", "sort_ro", "keys", "restore"}
	scripting := testutil.StartProxy(t, cfg)
	mon := isoStartMonitor(t, r.Addr)
	c, sc := testutil.Dial(t, agent.Addr()), testutil.Dial(t, scripting.Addr())
	calls, commands := 0, map[string]bool{}
	for _, s := range sweep {
		// All keys foreign, then each key foreign among keys of the
		// client's own workspace.
		variants := [][]string{isoFill(s, func(int) string { return "other" })}
		if len(s.ks) > 1 {
			for _, f := range s.ks {
				f := f
				variants = append(variants, isoFill(s, func(i int) string {
					if i == f {
						return "other"
					}
					return "default"
				}))
			}
		}
		for _, args := range variants {
			got := c.DoS(args...)
			calls++
			commands[s.name] = true
			switch {
			case s.info.Agents == keyspace.AgentsNever:
				if !strings.HasPrefix(got, "-ERR '"+s.name+"' is not supported through agentproxy") {
					t.Errorf("%q: got %q, want the unsupported refusal", args, got)
				}
			case !strings.HasPrefix(got, "-NOPERM "):
				t.Errorf("%q: got %q, want -NOPERM", args, got)
			case s.info.Has(keyspace.Admin) || s.info.Has(keyspace.Script) || s.info.Agents == keyspace.AgentsDangerous:
				// Refused for the role or the command, before the keys are looked at.
			case !strings.Contains(got, "{other}"):
				t.Errorf("%q: the refusal %q does not name the foreign key", args, got)
			}
			if s.info.Has(keyspace.Script) || s.info.Agents == keyspace.AgentsDangerous {
				calls++
				if got := sc.DoS(args...); !strings.HasPrefix(got, "-NOPERM key 'deepagents:{other}:") {
					t.Errorf("allow_scripts %q: got %q, want -NOPERM naming the foreign key", args, got)
				}
			}
		}
	}
	// The connection is still a plain, working one.
	if got := c.DoS("SET", "deepagents:{default}:kv:after", "1"); got != "+OK\r\n" {
		t.Fatalf("after the sweep: %q", got)
	}
	n := isoNothingReached(t, mon, "{other}")
	if n == 0 {
		t.Fatalf("MONITOR saw nothing, not even the SET after the sweep")
	}
	t.Logf("foreign-key sweep: %d commands, %d refused calls; Redis executed %d other commands", len(commands), calls, n)
}

// TestIsolationOwnKeysForwarded is the control of the sweep: the same
// invocations with keys of the client's own workspace pass access control
// (except the admin-only and script commands) and are well-formed enough
// that Redis does not call them a syntax error.
func TestIsolationOwnKeysForwarded(t *testing.T) {
	sweep := isoCommands(t)
	if t.Failed() {
		t.FailNow()
	}
	_, addr := isoStart(t, func(c *config.Config) {
		c.Keyspace.AllowCommands = []string{"sort", "sort_ro", "keys", "restore"}
	})
	shared := testutil.Dial(t, addr)
	for _, s := range sweep {
		args := isoFill(s, func(int) string { return "default" })
		if s.info.Agents == keyspace.AgentsNever {
			continue
		}
		c := shared
		if s.info.Has(keyspace.PubSub) || s.info.Has(keyspace.Transaction) {
			c = testutil.Dial(t, addr) // leaves the connection in a state
		}
		got := c.DoS(args...)
		if c != shared {
			c.Close()
		}
		switch {
		case s.info.Has(keyspace.Admin) || s.info.Has(keyspace.Script):
			if !strings.HasPrefix(got, "-NOPERM '"+s.name+"' is ") {
				t.Errorf("%q: got %q, want the admin/script refusal", args, got)
			}
		case isoIsRefusal(got):
			t.Errorf("%q: own keys refused: %q", args, got)
		case strings.Contains(got, "syntax error") || strings.Contains(got, "wrong number of arguments") ||
			strings.Contains(got, "unknown command") || strings.Contains(got, "unknown subcommand"):
			t.Errorf("%q: Redis rejects the invocation: %q", args, got)
		}
	}
}

// isoValue is a decoded RESP reply (enough for SCAN and KEYS).
type isoValue struct {
	kind  byte
	str   string
	elems []isoValue
}

func isoParse(b []byte) (isoValue, []byte) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 1 {
		panic(fmt.Sprintf("bad RESP %q", b))
	}
	kind, line, rest := b[0], string(b[1:i]), b[i+2:]
	switch kind {
	case '$', '=', '!':
		n, _ := strconv.Atoi(line)
		if n < 0 {
			return isoValue{kind: '_'}, rest
		}
		return isoValue{kind: kind, str: string(rest[:n])}, rest[n+2:]
	case '*', '~', '>', '%':
		n, _ := strconv.Atoi(line)
		if kind == '%' {
			n *= 2
		}
		v := isoValue{kind: kind}
		if n < 0 {
			v.kind = '_'
		}
		for k := 0; k < n; k++ {
			var e isoValue
			e, rest = isoParse(rest)
			v.elems = append(v.elems, e)
		}
		return v, rest
	}
	return isoValue{kind: kind, str: line}, rest
}

// isoScanAll iterates SCAN to cursor 0 with the given options and returns
// the keys seen, or the error reply of the first call.
func isoScanAll(t *testing.T, c *testutil.Conn, opts []string) ([]string, string) {
	t.Helper()
	var keys []string
	cursor := "0"
	for n := 0; ; n++ {
		if n > 100000 {
			t.Fatalf("SCAN %q never ends", opts)
		}
		raw := c.Do(append([]string{"SCAN", cursor}, opts...)...)
		if raw[0] == '-' {
			if n > 0 {
				t.Fatalf("SCAN %q: error mid-iteration: %q", opts, raw)
			}
			return nil, string(raw)
		}
		v, _ := isoParse(raw)
		if len(v.elems) != 2 {
			t.Fatalf("SCAN %q: reply %q", opts, raw)
		}
		for _, k := range v.elems[1].elems {
			keys = append(keys, k.str)
		}
		cursor = v.elems[0].str
		if cursor == "0" {
			return keys, ""
		}
	}
}
