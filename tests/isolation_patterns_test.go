package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
)

func TestIsolationScanConfined(t *testing.T) {
	r, addr := isoStart(t, nil)
	direct := testutil.Dial(t, r.Addr)
	own := map[string]string{} // key -> type
	var batch []byte
	n := 0
	add := func(key, typ string) {
		n++
		switch typ {
		case "string":
			batch = isoCmd(batch, "SET", key, "v")
		case "hash":
			batch = isoCmd(batch, "HSET", key, "f", "v")
		case "list":
			batch = isoCmd(batch, "RPUSH", key, "a")
		case "zset":
			batch = isoCmd(batch, "ZADD", key, "1", "a")
		}
		if strings.HasPrefix(key, "deepagents:{default}:") {
			own[key] = typ
		}
	}
	types := []string{"string", "hash", "list", "zset"}
	for i := 0; i < 60; i++ {
		typ := types[i%len(types)]
		add(fmt.Sprintf("deepagents:{default}:kv:%d", i), typ)
		add(fmt.Sprintf("deepagents:{default}:todos:%d", i), typ)
		add(fmt.Sprintf("deepagents:{other}:kv:%d", i), typ)
		add(fmt.Sprintf("deepagents:{other}:todos:%d", i), typ)
		add(fmt.Sprintf("deepagents:{defaultx}:kv:%d", i), typ)
	}
	// Keys that look close to the workspace but are outside it, and one
	// inside it that mentions the other.
	for _, k := range []string{"plain", "kv", "deepagents", "deepagents:{default}", "deepagents:{default}kv:1",
		"xdeepagents:{default}:kv:1", "Deepagents:{default}:kv:1", "deepagents:{Default}:kv:1", "*", "deepagents:*"} {
		add(k, "string")
	}
	add("deepagents:{default}:kv:{other}:x", "string")
	direct.Write(batch)
	for ; n > 0; n-- {
		if f := direct.Read(); f[0] == '-' {
			t.Fatalf("populate: %q", f)
		}
	}

	c := testutil.Dial(t, addr)
	matches := [][]string{
		nil,
		{"MATCH", "*"},
		{"match", "*"},
		{"MATCH", "**"},
		{"MATCH", "*kv*"},
		{"MATCH", "*{other}*"},
		{"MATCH", "*deepagents:{other}:*"},
		{"MATCH", "deepagents:{default}:*"},
		{"MATCH", "deepagents:{default}:kv:1*"},
		{"MATCH", "deepagents:{other}:*"},
		{"MATCH", "deepagents:*"},
		{"MATCH", "deepagents:{*}:*"},
		{"MATCH", "deepagents:{default}*"},
		{"MATCH", "deepagents:{def*"},
		{"MATCH", "?eep*"},
		{"MATCH", "[d]*"},
		{"MATCH", "[^x]*"},
		{"MATCH", `\*`},
		{"MATCH", `\deepagents:{other}:*`},
		{"MATCH", `deepagents\:{other}:*`},
		{"MATCH", `deepagents:\{default}:*`},
		{"MATCH", "d*"},
		{"MATCH", ""},
		{"MATCH", "plain"},
		{"MATCH", "deepagents:{default}:*", "MATCH", "*"},
		{"MATCH", "*", "MATCH", "deepagents:{other}:*"},
		{"MATCH", "deepagents:{other}:*", "MATCH", "*"},
		{"MATCH", "deepagents:{default}:*", "MATCH", "deepagents:*"},
	}
	extras := [][]string{nil, {"COUNT", "1"}, {"COUNT", "7"}, {"COUNT", "1000"}, {"TYPE", "string"}, {"TYPE", "hash"},
		{"TYPE", "zset", "COUNT", "3"}, {"TYPE", "none"}}
	for _, m := range matches {
		for _, e := range extras {
			for _, order := range []bool{false, true} {
				opts := append(append([]string{}, m...), e...)
				if order {
					opts = append(append([]string{}, e...), m...)
				}
				keys, errReply := isoScanAll(t, c, opts)
				if errReply != "" {
					if !strings.HasPrefix(errReply, "-NOPERM ") {
						t.Errorf("SCAN %q: %q", opts, errReply)
					}
					continue
				}
				for _, k := range keys {
					if !strings.HasPrefix(k, "deepagents:{default}:") {
						t.Errorf("SCAN %q returned %q, outside workspace default", opts, k)
					}
				}
				// Unrestricted patterns see the whole workspace.
				if len(m) == 0 || m[len(m)-1] == "*" {
					want := 0
					for _, typ := range own {
						if len(e) == 0 || e[0] != "TYPE" || e[1] == typ {
							want++
						}
					}
					if got := len(isoSet(keys)); got != want {
						t.Errorf("SCAN %q: %d distinct keys, want %d", opts, got, want)
					}
				}
			}
		}
	}
	// Patterns that cannot be confined are refused, not widened.
	for _, p := range []string{"deepagents:*", "?eep*", "[d]*", `\*`, "deepagents:{other}:*"} {
		if got := c.DoS("SCAN", "0", "MATCH", p); !strings.HasPrefix(got, "-NOPERM ") {
			t.Errorf("SCAN MATCH %q: %q, want -NOPERM", p, got)
		}
	}
}

func isoSet(keys []string) map[string]bool {
	m := map[string]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return m
}

func isoCmd(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

func TestIsolationWidePatterns(t *testing.T) {
	r, addr := isoStart(t, func(c *config.Config) { c.Keyspace.AllowCommands = []string{"sort", "keys"} })
	direct := testutil.Dial(t, r.Addr)
	direct.Do("SET", "deepagents:{default}:kv:a", "1")
	direct.Do("RPUSH", "deepagents:{default}:kv:l", "a")
	direct.Do("SET", "deepagents:{other}:kv:b", "2")
	c := testutil.Dial(t, addr)
	for _, args := range [][]string{
		{"KEYS", "*"},
		{"KEYS", "deepagents:*"},
		{"KEYS", "deepagents:{other}:*"},
		{"KEYS", "?eepagents:{default}:*"},
		{"KEYS", "*deepagents:{default}:*"},
		{"KEYS", "deepagents:{default}*"},
		{"PSUBSCRIBE", "*"},
		{"PSUBSCRIBE", "deepagents:*"},
		{"PSUBSCRIBE", "deepagents:{other}:events*"},
		{"PSUBSCRIBE", "deepagents:{default}:events*", "*"},
		{"PUBSUB", "CHANNELS", "*"},
		{"PUBSUB", "CHANNELS", "deepagents:{other}:*"},
		{"SORT", "deepagents:{default}:kv:l", "BY", "deepagents:{other}:kv:*"},
		{"SORT", "deepagents:{default}:kv:l", "BY", "nosort", "GET", "*"},
	} {
		if got := c.DoS(args...); !strings.HasPrefix(got, "-NOPERM ") {
			t.Errorf("%q: %q, want -NOPERM", args, got)
		}
	}
	if got := c.DoS("KEYS", "deepagents:{default}:*"); !strings.HasPrefix(got, "*2\r\n") || strings.Contains(got, "{other}") {
		t.Errorf("KEYS inside the workspace: %q", got)
	}
	if got := c.DoS("SORT", "deepagents:{default}:kv:l", "BY", "nosort", "GET", "#"); got != "*1\r\n$1\r\na\r\n" {
		t.Errorf("SORT GET #: %q", got)
	}
	// A pattern inside the workspace subscribes.
	p := testutil.Dial(t, addr)
	if got := p.DoS("PSUBSCRIBE", "deepagents:{default}:events*"); !strings.HasPrefix(got, "*3\r\n$10\r\npsubscribe\r\n") {
		t.Errorf("PSUBSCRIBE inside the workspace: %q", got)
	}
}

// TestIsolationPubSubChannelsListing: PUBSUB CHANNELS without a pattern
// lists every channel with a subscriber, across workspaces; for an agent it
// must not reveal another workspace's channel names.
func TestIsolationPubSubChannelsListing(t *testing.T) {
	r, addr := isoStart(t, nil)
	sub := testutil.Dial(t, r.Addr)
	sub.Do("SUBSCRIBE", "deepagents:{other}:events:secret")
	sub.Do("SSUBSCRIBE", "deepagents:{other}:events:shard")
	c := testutil.Dial(t, addr)
	for _, sub := range []string{"CHANNELS", "SHARDCHANNELS"} {
		got := c.DoS("PUBSUB", sub)
		if strings.Contains(got, "{other}") {
			t.Errorf("PUBSUB %s reveals another workspace's channel: %q", sub, got)
		}
		if !strings.HasPrefix(got, "-NOPERM ") && !strings.HasPrefix(got, "*") {
			t.Errorf("PUBSUB %s: %q", sub, got)
		}
		if got := c.DoS("PUBSUB", sub, "deepagents:{default}:events*"); !strings.HasPrefix(got, "*0\r\n") {
			t.Errorf("PUBSUB %s inside the workspace: %q", sub, got)
		}
	}
}

func TestIsolationScriptsRefusedForAgents(t *testing.T) {
	r, addr := isoStart(t, nil)
	mon := isoStartMonitor(t, r.Addr)
	c := testutil.Dial(t, addr)
	own := "deepagents:{default}:kv:s"
	sha := "e0e1f9fabfc9d4800c877a703b823ac0578ff8db" // sha1("return 1")
	for _, args := range [][]string{
		{"EVAL", "return redis.call('SET', 'scriptmark', 1)", "0"},
		{"EVAL", "return 1", "1", own},
		{"EVAL_RO", "return 1", "0"},
		{"EVALSHA", sha, "0"},
		{"EVALSHA", sha, "1", own},
		{"EVALSHA_RO", sha, "0"},
		{"FCALL", "scriptmark", "0"},
		{"FCALL_RO", "scriptmark", "1", own},
		{"SCRIPT", "LOAD", "return 'scriptmark'"},
		{"FUNCTION", "LOAD", "#!lua name=scriptmark\nredis.register_function('f', function() return 1 end)"},
	} {
		if got := c.DoS(args...); !strings.HasPrefix(got, "-NOPERM ") {
			t.Errorf("%q: %q, want -NOPERM", args[:2], got)
		}
	}
	// Inside MULTI too: the transaction is aborted.
	if got := c.DoS("MULTI"); got != "+OK\r\n" {
		t.Fatalf("MULTI: %q", got)
	}
	if got := c.DoS("EVAL", "return redis.call('SET', 'scriptmark', 2)", "0"); !strings.HasPrefix(got, "-NOPERM ") {
		t.Errorf("EVAL in MULTI: %q", got)
	}
	if got := c.DoS("EXEC"); got != "-"+wire.ErrExecAbort+"\r\n" {
		t.Errorf("EXEC: %q", got)
	}
	isoNothingReached(t, mon, "scriptmark")
}

// TestIsolationAdminOnlyForAgents: the keyless and global commands of SPEC §4
// are for admins.
func TestIsolationAdminOnlyForAgents(t *testing.T) {
	r, addr := isoStart(t, nil)
	direct := testutil.Dial(t, r.Addr)
	direct.Do("SET", "deepagents:{default}:kv:survivor", "1")
	c := testutil.Dial(t, addr)
	for _, args := range [][]string{
		{"RANDOMKEY"}, {"DBSIZE"}, {"FLUSHDB"}, {"FLUSHALL"}, {"FLUSHALL", "ASYNC"}, {"SWAPDB", "0", "1"},
		{"MOVE", "deepagents:{default}:kv:survivor", "1"}, {"CONFIG", "GET", "*"}, {"CONFIG", "SET", "maxmemory", "1"},
		{"CONFIG", "RESETSTAT"}, {"DEBUG", "SLEEP", "0"}, {"SHUTDOWN", "NOSAVE"}, {"ACL", "LIST"}, {"ACL", "SETUSER", "x"},
		{"MODULE", "LIST"}, {"REPLICAOF", "NO", "ONE"}, {"SLAVEOF", "NO", "ONE"}, {"SCRIPT", "FLUSH"}, {"SCRIPT", "KILL"},
		{"FUNCTION", "FLUSH"}, {"FUNCTION", "DELETE", "x"}, {"CLIENT", "KILL", "ID", "1"},
		{"CLIENT", "PAUSE", "10"}, {"MONITOR"}, {"SLOWLOG", "GET"}, {"SAVE"}, {"BGSAVE"}, {"BGREWRITEAOF"},
		{"CLUSTER", "RESET"}, {"CLUSTER", "MEET", "127.0.0.1", "1"},
		// Lists the keys of a slot, whatever their workspace (KEYS * by
		// another name on Redis Cluster).
		{"CLUSTER", "GETKEYSINSLOT", "0", "10"}, {"CLUSTER", "COUNTKEYSINSLOT", "0"},
	} {
		if got := c.DoS(args...); !strings.HasPrefix(got, "-NOPERM ") {
			t.Errorf("%q: %q, want -NOPERM", args, got)
		}
	}
	if got := direct.DoS("GET", "deepagents:{default}:kv:survivor"); got != "$1\r\n1\r\n" {
		t.Fatalf("the survivor key: %q", got)
	}
}

// isoHash is the password_sha256 of a password.
func isoHash(pw string) string {
	sum := sha256.Sum256([]byte(pw))
	return hex.EncodeToString(sum[:])
}

func TestIsolationReadonlyCannotWrite(t *testing.T) {
	sweep := isoCommands(t)
	if t.Failed() {
		t.FailNow()
	}
	r, addr := isoStart(t, func(cfg *config.Config) {
		cfg.Users = []config.User{{Name: "reader", PasswordSHA256: isoHash("ro-pass"), Workspaces: []string{"ro"}, Role: "readonly"}}
	})
	direct := testutil.Dial(t, r.Addr)
	direct.Do("SET", "deepagents:{ro}:kv:a", "hello")
	direct.Do("HSET", "deepagents:{ro}:kv:h", "f", "v")
	direct.Do("RPUSH", "deepagents:{ro}:kv:l", "x", "y")
	direct.Do("XADD", "deepagents:{ro}:events", "1-1", "f", "v")
	mon := isoStartMonitor(t, r.Addr)

	c := testutil.Dial(t, addr)
	if got := c.DoS("AUTH", "reader", "ro-pass"); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	if got := c.DoS("WORKSPACE"); got != "$2\r\nro\r\n" {
		t.Fatalf("WORKSPACE: %q", got)
	}
	writes, writeCmds := 0, map[string]bool{}
	for _, s := range sweep {
		if !s.info.Has(keyspace.Write) {
			continue
		}
		writeCmds[s.name] = true
		args := isoFill(s, func(int) string { return "ro" })
		for _, i := range s.ks {
			args[i] = strings.Replace(args[i], "}:kv:", "}:kv:rowrite:", 1)
			args[i] = strings.Replace(args[i], "}:events:", "}:events:rowrite:", 1)
		}
		writes++
		if got := c.DoS(args...); !strings.HasPrefix(got, "-NOPERM ") && !(s.info.Agents == keyspace.AgentsNever && strings.HasPrefix(got, "-ERR '"+s.name+"' is not supported")) {
			t.Errorf("readonly %q: %q, want -NOPERM", args, got)
		}
	}
	for name, tmpls := range isoKeylessWrites {
		writeCmds[name] = true
		for _, tmpl := range tmpls {
			args, _ := isoTemplate(tmpl)
			writes++
			if got := c.DoS(args...); !strings.HasPrefix(got, "-NOPERM ") {
				t.Errorf("readonly %q: %q, want -NOPERM", args, got)
			}
		}
	}
	// Publishing and scripts write too.
	for _, args := range [][]string{
		{"PUBLISH", "deepagents:{ro}:events:rowrite", "x"},
		{"SPUBLISH", "deepagents:{ro}:events:rowrite", "x"},
		{"EVAL", "return redis.call('SET', KEYS[1], 1)", "1", "deepagents:{ro}:kv:rowrite"},
		{"EVAL_RO", "return 'rowrite'", "0"},
	} {
		if got := c.DoS(args...); !strings.HasPrefix(got, "-NOPERM ") {
			t.Errorf("readonly %q: %q, want -NOPERM", args, got)
		}
	}
	// Reads work.
	for _, rd := range []struct {
		args []string
		want string
	}{
		{[]string{"GET", "deepagents:{ro}:kv:a"}, "$5\r\nhello\r\n"},
		{[]string{"HGETALL", "deepagents:{ro}:kv:h"}, "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"},
		{[]string{"LRANGE", "deepagents:{ro}:kv:l", "0", "-1"}, "*2\r\n$1\r\nx\r\n$1\r\ny\r\n"},
		{[]string{"EXISTS", "deepagents:{ro}:kv:a", "deepagents:{ro}:kv:h"}, ":2\r\n"},
		{[]string{"TYPE", "deepagents:{ro}:kv:l"}, "+list\r\n"},
		{[]string{"XLEN", "deepagents:{ro}:events"}, ":1\r\n"},
		{[]string{"MGET", "deepagents:{ro}:kv:a", "deepagents:{ro}:kv:none"}, "*2\r\n$5\r\nhello\r\n$-1\r\n"},
		{[]string{"SCAN", "0", "MATCH", "*kv:a", "COUNT", "1000"}, "*2\r\n$1\r\n0\r\n*1\r\n$20\r\ndeepagents:{ro}:kv:a\r\n"},
	} {
		if got := c.DoS(rd.args...); got != rd.want {
			t.Errorf("readonly %q: %q, want %q", rd.args, got, rd.want)
		}
	}
	// ... but not in another workspace.
	if got := c.DoS("GET", "deepagents:{default}:kv:a"); !strings.HasPrefix(got, "-NOPERM ") {
		t.Errorf("readonly GET of another workspace: %q", got)
	}
	isoNothingReached(t, mon, "rowrite")
	if got := direct.DoS("GET", "deepagents:{ro}:kv:a"); got != "$5\r\nhello\r\n" {
		t.Errorf("data after the readonly sweep: %q", got)
	}
	t.Logf("readonly sweep: %d write commands, %d invocations refused", len(writeCmds), writes)
}

func TestIsolationAdminDoesEverything(t *testing.T) {
	r, addr := isoStart(t, func(cfg *config.Config) {
		cfg.Users = []config.User{{Name: "root", PasswordSHA256: isoHash("admin-pass"), Role: "admin"}}
	})
	direct := testutil.Dial(t, r.Addr)
	direct.Do("SET", "deepagents:{other}:kv:x", "theirs")
	direct.Do("SET", "plain", "p")
	c := testutil.Dial(t, addr)
	if got := c.DoS("AUTH", "root", "admin-pass"); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	for _, step := range []struct {
		args []string
		want string // exact reply, or a prefix ending in "…"
	}{
		{[]string{"GET", "deepagents:{other}:kv:x"}, "$6\r\ntheirs\r\n"},
		{[]string{"GET", "plain"}, "$1\r\np\r\n"},
		{[]string{"SET", "deepagents:{third}:kv:y", "1"}, "+OK\r\n"},
		{[]string{"SET", "not-in-grammar", "1"}, "+OK\r\n"},
		{[]string{"KEYS", "*"}, "*4\r\n…"},
		{[]string{"DBSIZE"}, ":4\r\n"},
		{[]string{"CONFIG", "GET", "maxmemory"}, "*2\r\n$9\r\nmaxmemory\r\n…"},
		{[]string{"EVAL", "return redis.call('GET', KEYS[1])", "1", "deepagents:{other}:kv:x"}, "$6\r\ntheirs\r\n"},
		{[]string{"WORKSPACE", "anything"}, "+OK\r\n"},
		{[]string{"RANDOMKEY"}, "$…"},
		{[]string{"FLUSHALL"}, "+OK\r\n"},
		{[]string{"DBSIZE"}, ":0\r\n"},
	} {
		got := c.DoS(step.args...)
		if p, ok := strings.CutSuffix(step.want, "…"); ok {
			if !strings.HasPrefix(got, p) {
				t.Errorf("admin %q: %q, want %q...", step.args, got, p)
			}
		} else if got != step.want {
			t.Errorf("admin %q: %q, want %q", step.args, got, step.want)
		}
	}
	// SCAN is not confined for admins.
	direct.Do("SET", "deepagents:{other}:kv:z", "1")
	if got := c.DoS("SCAN", "0", "COUNT", "1000"); got != "*2\r\n$1\r\n0\r\n*1\r\n$23\r\ndeepagents:{other}:kv:z\r\n" {
		t.Errorf("admin SCAN: %q", got)
	}
}

// TestIsolationMultiAbortedByRefusal: a refused command inside MULTI makes
// EXEC answer EXECABORT, as Redis does for a command it rejects while
// queueing, and nothing of the transaction runs.
func TestIsolationMultiAbortedByRefusal(t *testing.T) {
	r, addr := isoStart(t, nil)
	direct := testutil.Dial(t, r.Addr)
	own, own2 := "deepagents:{default}:kv:tx1", "deepagents:{default}:kv:tx2"

	// What Redis itself answers for a command rejected at queue time.
	direct.Do("MULTI")
	direct.Do("SET", own, "x")
	direct.Do("NOSUCHCOMMAND")
	redisExec := direct.DoS("EXEC")
	if redisExec != "-"+wire.ErrExecAbort+"\r\n" {
		t.Fatalf("Redis EXEC after a rejected command: %q", redisExec)
	}

	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined=%v", pipelined), func(t *testing.T) {
			c := testutil.Dial(t, addr)
			cmds := [][]string{
				{"WATCH", own},
				{"MULTI"},
				{"SET", own, "1"},
				{"GET", "deepagents:{other}:kv:x"},
				{"SET", own2, "2"},
				{"MULTI"},
				{"EXEC"},
				{"GET", own},
				{"EXISTS", own2},
				{"EXEC"},
				{"SET", own, "after"},
				{"GET", own},
			}
			var got []string
			if pipelined {
				var b []byte
				for _, a := range cmds {
					b = isoCmd(b, a...)
				}
				c.Write(b)
				for range cmds {
					got = append(got, string(c.Read()))
				}
			} else {
				for _, a := range cmds {
					got = append(got, c.DoS(a...))
				}
			}
			want := []string{"+OK", "+OK", "+QUEUED", "-NOPERM key 'deepagents:{other}:kv:x' is outside workspace 'default'",
				"+QUEUED", "-" + wire.ErrNestedMulti, "-" + wire.ErrExecAbort, "$-1", ":0",
				"-ERR EXEC without MULTI", "+OK", "$5\r\nafter"}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("%q: %q, want %q", cmds[i], got[i], want[i])
				}
			}
			direct.Do("DEL", own, own2)
		})
	}
}

// TestIsolationPipelineRefusalInPlace: a refused command in a pipelined batch
// gets its error in its place; the others run.
func TestIsolationPipelineRefusalInPlace(t *testing.T) {
	r, addr := isoStart(t, nil)
	mon := isoStartMonitor(t, r.Addr)
	c := testutil.Dial(t, addr)
	cmds := [][]string{
		{"SET", "deepagents:{default}:kv:p", "1"},
		{"SET", "deepagents:{other}:kv:p", "stolen"},
		{"INCR", "deepagents:{default}:kv:p"},
		{"DEL", "deepagents:{default}:kv:q", "deepagents:{other}:kv:q"},
		{"GET", "unprefixed"},
		{"PING"},
		{"SET", "deepagents:{default}:nokind:p", "1"},
		{"GET", "deepagents:{default}:kv:p"},
	}
	var b []byte
	for _, a := range cmds {
		b = isoCmd(b, a...)
	}
	c.Write(b)
	want := []string{"+OK\r\n", "-NOPERM key 'deepagents:{other}:kv:p'", ":2\r\n", "-NOPERM key 'deepagents:{other}:kv:q'",
		"-NOPERM key 'unprefixed'", "+PONG\r\n", "-BADKEY key 'deepagents:{default}:nokind:p'", "$1\r\n2\r\n"}
	for i := range cmds {
		if got := string(c.Read()); !strings.HasPrefix(got, want[i]) {
			t.Errorf("%q: %q, want %q", cmds[i], got, want[i])
		}
	}
	isoNothingReached(t, mon, "{other}")
}

func TestIsolationWarnAndOffModes(t *testing.T) {
	for _, mode := range []string{"warn", "off"} {
		t.Run(mode, func(t *testing.T) {
			r := testutil.StartRedis(t)
			cfg := testutil.EnforcingConfig(t, r.URL())
			cfg.Keyspace.Mode = mode
			cfg.Keyspace.AllowCommands = []string{"keys"}
			a := testutil.StartProxy(t, cfg)
			direct := testutil.Dial(t, r.Addr)
			direct.Do("SET", "deepagents:{other}:kv:x", "theirs")
			c := testutil.Dial(t, a.Addr())
			steps := []struct{ args []string }{
				{[]string{"GET", "deepagents:{other}:kv:x"}},
				{[]string{"SET", "deepagents:{other}:kv:y", "mine"}},
				{[]string{"SET", "plain", "p"}},
				{[]string{"SET", "deepagents:{default}:nokind", "1"}},
				{[]string{"KEYS", "deepagents:{other}:*"}},
			}
			want := []string{"$6\r\ntheirs\r\n", "+OK\r\n", "+OK\r\n", "+OK\r\n", "*2\r\n"}
			for i, s := range steps {
				if got := c.DoS(s.args...); !strings.HasPrefix(got, want[i]) {
					t.Errorf("%s mode %q: %q, want %q", mode, s.args, got, want[i])
				}
			}
			if got := direct.DoS("GET", "deepagents:{other}:kv:y"); got != "$4\r\nmine\r\n" {
				t.Errorf("%s mode: the write did not reach Redis: %q", mode, got)
			}
			warned, refused := a.Server().Stats.Warned.Load(), int64(a.Server().Stats.RefusedTotal())
			wantWarned := int64(len(steps))
			if mode == "off" {
				wantWarned = 0
			}
			if warned != wantWarned || refused != 0 {
				t.Errorf("%s mode: warned %d refused %d, want %d and 0", mode, warned, refused, wantWarned)
			}
			// In warn mode an unauthenticated client is still an agent; in
			// off mode (a pure proxy) it is an admin, as on Redis itself.
			wantFlush := "-NOPERM "
			if mode == "off" {
				wantFlush = "+OK"
			}
			if got := c.DoS("FLUSHALL"); !strings.HasPrefix(got, wantFlush) {
				t.Errorf("%s mode FLUSHALL: %q, want %s", mode, got, wantFlush)
			}
		})
	}
}

func TestIsolationChannels(t *testing.T) {
	_, addr := isoStart(t, nil)
	other := testutil.Dial(t, addr)
	for _, args := range [][]string{
		{"SUBSCRIBE", "deepagents:{other}:events"},
		{"SUBSCRIBE", "deepagents:{default}:events", "deepagents:{other}:events:x"},
		{"SSUBSCRIBE", "deepagents:{other}:events"},
		{"SUBSCRIBE", "plain-channel"},
		{"PUBLISH", "deepagents:{other}:events", "x"},
		{"SPUBLISH", "deepagents:{other}:events", "x"},
	} {
		if got := other.DoS(args...); !strings.HasPrefix(got, "-NOPERM ") {
			t.Errorf("%q: %q, want -NOPERM", args, got)
		}
	}
	if got := other.DoS("SUBSCRIBE", "deepagents:{default}:todos"); !strings.HasPrefix(got, "-BADKEY ") {
		t.Errorf("SUBSCRIBE to a non-events channel: %q", got)
	}
	// The refusals left the connection a normal one.
	if got := other.DoS("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after refusals: %q", got)
	}

	sub := testutil.Dial(t, addr)
	ch := "deepagents:{default}:events"
	if got := sub.DoS("SUBSCRIBE", ch); got != "*3\r\n$9\r\nsubscribe\r\n$27\r\n"+ch+"\r\n:1\r\n" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	// A subscribed client still cannot reach another workspace.
	if got := sub.DoS("SUBSCRIBE", "deepagents:{other}:events"); !strings.HasPrefix(got, "-NOPERM ") {
		t.Errorf("SUBSCRIBE while subscribed: %q", got)
	}
	pub := testutil.Dial(t, addr)
	// The workspace's feed is the domain's: events come from writes.
	if got := pub.DoS("PUBLISH", ch, "forged"); !strings.HasPrefix(got, "-NOPERM channel '"+ch+"' is the workspace's event feed") {
		t.Fatalf("PUBLISH on the feed: %q", got)
	}
	ch = "deepagents:{default}:events:chat"
	if got := sub.DoS("SUBSCRIBE", ch); got != "*3\r\n$9\r\nsubscribe\r\n$32\r\n"+ch+"\r\n:2\r\n" {
		t.Fatalf("SUBSCRIBE %s: %q", ch, got)
	}
	if got := pub.DoS("PUBLISH", ch, "hello"); got != ":1\r\n" {
		t.Fatalf("PUBLISH: %q", got)
	}
	if got := string(sub.Read()); got != "*3\r\n$7\r\nmessage\r\n$32\r\n"+ch+"\r\n$5\r\nhello\r\n" {
		t.Fatalf("message: %q", got)
	}
}

// TestIsolationTrackingBroadcast: CLIENT TRACKING BCAST reports the name of
// every key modified under its prefixes (every key without one), so an
// agent's prefixes must stay inside its workspace.
func TestIsolationTrackingBroadcast(t *testing.T) {
	r, addr := isoStart(t, nil)
	direct := testutil.Dial(t, r.Addr)
	for _, args := range [][]string{
		{"CLIENT", "TRACKING", "ON", "BCAST"},
		{"CLIENT", "TRACKING", "ON", "BCAST", "NOLOOP"},
		{"CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "deepagents:{other}:"},
		{"CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "deepagents:"},
		{"CLIENT", "TRACKING", "ON", "prefix", "deepagents:{default}:", "BCAST", "PREFIX", ""},
	} {
		c := testutil.Dial(t, addr)
		if got := c.DoS("HELLO", "3"); !strings.HasPrefix(got, "%7\r\n") {
			t.Fatalf("HELLO 3: %q", got)
		}
		got := c.DoS(args...)
		if !strings.HasPrefix(got, "-NOPERM ") {
			t.Errorf("%q: %q, want -NOPERM", args, got)
		}
		direct.Do("SET", "deepagents:{other}:kv:tracked", "x")
		for {
			f := string(c.Do("PING"))
			if strings.Contains(f, "{other}") {
				t.Errorf("%q: another workspace's key reported: %q", args, f)
			}
			if f == "+PONG\r\n" {
				break
			}
		}
		c.Close()
	}
	// Inside the workspace, broadcast tracking works.
	c := testutil.Dial(t, addr)
	c.Do("HELLO", "3")
	if got := c.DoS("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "deepagents:{default}:kv:"); got != "+OK\r\n" {
		t.Fatalf("tracking inside the workspace: %q", got)
	}
	direct.Do("SET", "deepagents:{other}:kv:tracked", "y")
	direct.Do("SET", "deepagents:{default}:kv:tracked", "y")
	want := ">2\r\n$10\r\ninvalidate\r\n*1\r\n$31\r\ndeepagents:{default}:kv:tracked\r\n"
	if got := string(c.Read()); got != want {
		t.Fatalf("invalidation: %q, want %q", got, want)
	}
}
