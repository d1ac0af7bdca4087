package tests

// TTL policies ([[ttl]], SPEC §7) over the write families, against a real
// redis-server: each write goes through the proxy, and the key's TTL is
// read from Redis directly. kv keys: default 1h, max 2h; the pattern
// kv:req:* requires a TTL: default 10m, max 1h.

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

func TestTTLPolicyWriteFamilies(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.TTL = []config.TTL{
		{Pattern: "deepagents:{*}:kv:req:*", Default: config.D(10 * time.Minute), Max: config.D(time.Hour), Require: true},
		{Kind: "kv", Default: config.D(time.Hour), Max: config.D(2 * time.Hour)},
	}
	cfg.Listen.RequireAuth = true
	cfg.Users = []config.User{
		{Name: "agent", PasswordSHA256: isoHash("agent-pw"), Workspaces: []string{"w"}, Role: "agent"},
		{Name: "root", PasswordSHA256: isoHash("root-pw"), Workspaces: []string{"*"}, Role: "admin"},
	}
	a := testutil.StartProxy(t, cfg)
	direct := testutil.Dial(t, r.Addr)
	login := func(user string) *testutil.Conn {
		c := testutil.Dial(t, a.Addr())
		if got := c.DoS("AUTH", user, user+"-pw"); got != "+OK\r\n" {
			t.Fatalf("AUTH %s: %q", user, got)
		}
		return c
	}
	agent, root := login("agent"), login("root")
	const (
		hour   = int64(time.Hour / time.Millisecond)
		max    = 2 * hour
		reqDef = int64(10 * time.Minute / time.Millisecond)
		reqMax = hour
		none   = -1 // persistent
		gone   = -2 // no key
	)
	k := func(name string) string { return "deepagents:{w}:kv:" + name }
	far := strconv.FormatInt(time.Now().Add(48*time.Hour).Unix(), 10)
	farMs := strconv.FormatInt(time.Now().Add(48*time.Hour).UnixMilli(), 10)
	dump := func(key string) string {
		direct.Do("SET", "tmp:dump", "payload")
		b := direct.Do("DUMP", "tmp:dump")
		return bulkString(b)
	}
	cases := []struct {
		name  string
		setup [][]string // straight into Redis
		by    *testutil.Conn
		cmd   []string
		reply string // prefix
		key   string
		want  int64 // ms (± 2 s), or none / gone
	}{
		{"SET", nil, agent, []string{"SET", k("set"), "v"}, "+OK", k("set"), hour},
		{"SET EX within max", nil, agent, []string{"SET", k("ex"), "v", "EX", "600"}, "+OK", k("ex"), 600000},
		{"SET EX past max", nil, agent, []string{"SET", k("ex2"), "v", "EX", "99999"}, "+OK", k("ex2"), max},
		{"SET PX past max", nil, agent, []string{"SET", k("px"), "v", "PX", "100000000"}, "+OK", k("px"), max},
		{"SET EXAT past max", nil, agent, []string{"SET", k("exat"), "v", "EXAT", far}, "+OK", k("exat"), max},
		{"SET PXAT past max", nil, agent, []string{"SET", k("pxat"), "v", "PXAT", farMs}, "+OK", k("pxat"), max},
		{"SET KEEPTTL keeps", [][]string{{"SET", k("keep"), "v", "EX", "300"}}, agent, []string{"SET", k("keep"), "v2", "KEEPTTL"}, "+OK", k("keep"), 300000},
		{"SET KEEPTTL new key", nil, agent, []string{"SET", k("keep2"), "v", "KEEPTTL"}, "+OK", k("keep2"), hour},
		{"SET drops a TTL", [][]string{{"SET", k("drop"), "v", "EX", "300"}}, agent, []string{"SET", k("drop"), "v2"}, "+OK", k("drop"), hour},
		{"SET GET", nil, agent, []string{"SET", k("setget"), "v", "GET"}, "$-1", k("setget"), hour},
		{"SETNX", nil, agent, []string{"SETNX", k("setnx"), "v"}, ":1", k("setnx"), hour},
		{"SETEX past max", nil, agent, []string{"SETEX", k("setex"), "99999", "v"}, "+OK", k("setex"), max},
		{"PSETEX", nil, agent, []string{"PSETEX", k("psetex"), "5000", "v"}, "+OK", k("psetex"), 5000},
		{"GETSET", nil, agent, []string{"GETSET", k("getset"), "v"}, "$-1", k("getset"), hour},
		{"MSET first", nil, agent, []string{"MSET", k("m1"), "a", k("m2"), "b"}, "+OK", k("m1"), hour},
		{"MSET second", nil, agent, []string{"MSET", k("m3"), "a", k("m4"), "b"}, "+OK", k("m4"), hour},
		{"MSETNX", nil, agent, []string{"MSETNX", k("mn1"), "a", k("mn2"), "b"}, ":1", k("mn2"), hour},
		{"APPEND", nil, agent, []string{"APPEND", k("append"), "v"}, ":1", k("append"), hour},
		{"INCR", nil, agent, []string{"INCR", k("incr")}, ":1", k("incr"), hour},
		{"INCRBYFLOAT", nil, agent, []string{"INCRBYFLOAT", k("incrf"), "1.5"}, "$3", k("incrf"), hour},
		{"SETRANGE", nil, agent, []string{"SETRANGE", k("setrange"), "3", "v"}, ":4", k("setrange"), hour},
		{"SETBIT", nil, agent, []string{"SETBIT", k("bit"), "7", "1"}, ":0", k("bit"), hour},
		{"BITFIELD", nil, agent, []string{"BITFIELD", k("bf"), "SET", "u8", "0", "1"}, "*1", k("bf"), hour},
		{"BITOP dest", [][]string{{"SET", k("b1"), "a"}}, agent, []string{"BITOP", "OR", k("bitop"), k("b1")}, ":1", k("bitop"), hour},
		{"HSET", nil, agent, []string{"HSET", k("hash"), "f", "v"}, ":1", k("hash"), hour},
		{"HSETNX", nil, agent, []string{"HSETNX", k("hsetnx"), "f", "v"}, ":1", k("hsetnx"), hour},
		{"HINCRBY", nil, agent, []string{"HINCRBY", k("hincr"), "f", "2"}, ":2", k("hincr"), hour},
		{"HMSET", nil, agent, []string{"HMSET", k("hmset"), "f", "v"}, "+OK", k("hmset"), hour},
		{"LPUSH", nil, agent, []string{"LPUSH", k("list"), "a"}, ":1", k("list"), hour},
		{"RPUSHX on persistent", [][]string{{"RPUSH", k("rpushx"), "a"}}, agent, []string{"RPUSHX", k("rpushx"), "b"}, ":2", k("rpushx"), hour},
		{"LMOVE dest", [][]string{{"RPUSH", k("lsrc"), "a", "b"}}, agent, []string{"LMOVE", k("lsrc"), k("ldst"), "LEFT", "RIGHT"}, "$1", k("ldst"), hour},
		{"BLMOVE dest", [][]string{{"RPUSH", k("bsrc"), "a"}}, agent, []string{"BLMOVE", k("bsrc"), k("bdst"), "LEFT", "RIGHT", "1"}, "$1", k("bdst"), hour},
		{"RPOPLPUSH dest", [][]string{{"RPUSH", k("rsrc"), "a"}}, agent, []string{"RPOPLPUSH", k("rsrc"), k("rdst")}, "$1", k("rdst"), hour},
		{"LINSERT", [][]string{{"RPUSH", k("linsert"), "a"}}, agent, []string{"LINSERT", k("linsert"), "BEFORE", "a", "z"}, ":2", k("linsert"), hour},
		{"SADD", nil, agent, []string{"SADD", k("set1"), "a"}, ":1", k("set1"), hour},
		{"SMOVE dest", [][]string{{"SADD", k("ssrc"), "a"}}, agent, []string{"SMOVE", k("ssrc"), k("sdst"), "a"}, ":1", k("sdst"), hour},
		{"SUNIONSTORE", [][]string{{"SADD", k("su"), "a"}}, agent, []string{"SUNIONSTORE", k("sunion"), k("su")}, ":1", k("sunion"), hour},
		{"ZADD", nil, agent, []string{"ZADD", k("zset"), "1", "a"}, ":1", k("zset"), hour},
		{"ZINCRBY", nil, agent, []string{"ZINCRBY", k("zincr"), "1", "a"}, "$1", k("zincr"), hour},
		{"ZRANGESTORE", [][]string{{"ZADD", k("zsrc"), "1", "a"}}, agent, []string{"ZRANGESTORE", k("zdst"), k("zsrc"), "0", "-1"}, ":1", k("zdst"), hour},
		{"ZUNIONSTORE", [][]string{{"ZADD", k("zu"), "1", "a"}}, agent, []string{"ZUNIONSTORE", k("zunion"), "1", k("zu")}, ":1", k("zunion"), hour},
		{"XADD", nil, agent, []string{"XADD", k("stream"), "*", "f", "v"}, "$", k("stream"), hour},
		{"XGROUP CREATE MKSTREAM", nil, agent, []string{"XGROUP", "CREATE", k("xg"), "g", "$", "MKSTREAM"}, "+OK", k("xg"), hour},
		{"PFADD", nil, agent, []string{"PFADD", k("hll"), "a"}, ":1", k("hll"), hour},
		{"PFMERGE", [][]string{{"PFADD", k("hll2"), "a"}}, agent, []string{"PFMERGE", k("hllm"), k("hll2")}, "+OK", k("hllm"), hour},
		{"GEOADD", nil, agent, []string{"GEOADD", k("geo"), "13", "38", "m"}, ":1", k("geo"), hour},
		{"GEOSEARCHSTORE", [][]string{{"GEOADD", k("geosrc"), "13", "38", "m"}}, agent,
			[]string{"GEOSEARCHSTORE", k("geodst"), k("geosrc"), "FROMLONLAT", "13", "38", "BYRADIUS", "10", "km"}, ":1", k("geodst"), hour},
		{"SORT STORE (admin)", [][]string{{"RPUSH", k("sortsrc"), "2", "1"}}, root, []string{"SORT", k("sortsrc"), "STORE", k("sorted")}, ":2", k("sorted"), hour},
		{"COPY from persistent", [][]string{{"SET", k("csrc"), "v"}}, agent, []string{"COPY", k("csrc"), k("cdst")}, ":1", k("cdst"), hour},
		{"COPY keeps a shorter TTL", [][]string{{"SET", k("csrc2"), "v", "EX", "60"}}, agent, []string{"COPY", k("csrc2"), k("cdst2")}, ":1", k("cdst2"), 60000},
		{"RENAME", [][]string{{"SET", k("rsrc2"), "v"}}, agent, []string{"RENAME", k("rsrc2"), k("rdst2")}, "+OK", k("rdst2"), hour},
		{"RENAMENX", [][]string{{"SET", k("rnsrc"), "v", "EX", "99999"}}, agent, []string{"RENAMENX", k("rnsrc"), k("rndst")}, ":1", k("rndst"), max},
		{"EXPIRE within max", [][]string{{"SET", k("exp"), "v"}}, agent, []string{"EXPIRE", k("exp"), "120"}, ":1", k("exp"), 120000},
		{"EXPIRE past max", [][]string{{"SET", k("exp2"), "v"}}, agent, []string{"EXPIRE", k("exp2"), "99999"}, ":1", k("exp2"), max},
		{"PEXPIREAT past max", [][]string{{"SET", k("pexpat"), "v"}}, agent, []string{"PEXPIREAT", k("pexpat"), farMs}, ":1", k("pexpat"), max},
		{"GETEX EX past max", [][]string{{"SET", k("getex"), "v"}}, agent, []string{"GETEX", k("getex"), "EX", "99999"}, "$1", k("getex"), max},
		{"GETEX PERSIST gets the default back", [][]string{{"SET", k("getexp"), "v", "EX", "60"}}, agent, []string{"GETEX", k("getexp"), "PERSIST"}, "$1", k("getexp"), hour},
		{"PERSIST gets the default back", [][]string{{"SET", k("persist"), "v", "EX", "60"}}, agent, []string{"PERSIST", k("persist")}, ":1", k("persist"), hour},
		{"RESTORE by an admin", nil, root, []string{"RESTORE", k("restored"), "0", dump("")}, "+OK", k("restored"), hour},
		{"RESTORE ttl past max", nil, root, []string{"RESTORE", k("restored2"), "99999999", dump("")}, "+OK", k("restored2"), max},
		{"DEL", [][]string{{"SET", k("del"), "v"}}, agent, []string{"DEL", k("del")}, ":1", k("del"), gone},
		// The pattern rule wins over the kind's, and requires a TTL.
		{"pattern SET", nil, agent, []string{"SET", k("req:a"), "v"}, "+OK", k("req:a"), reqDef},
		{"pattern SET EX past its max", nil, agent, []string{"SET", k("req:b"), "v", "EX", "99999"}, "+OK", k("req:b"), reqMax},
		{"pattern PERSIST refused", [][]string{{"SET", k("req:c"), "v", "EX", "60"}}, agent, []string{"PERSIST", k("req:c")}, "-NOPERM", k("req:c"), 60000},
		{"pattern GETEX PERSIST refused", [][]string{{"SET", k("req:d"), "v", "EX", "60"}}, agent, []string{"GETEX", k("req:d"), "PERSIST"}, "-NOPERM", k("req:d"), 60000},
		// Keys of kinds without rules keep Redis's behaviour.
		{"no rule: todo kind untouched", nil, root, []string{"SET", "deepagents:{w}:cache:x:y", "v"}, "+OK", "deepagents:{w}:cache:x:y", none},
		// A failed write adds nothing.
		{"WRONGTYPE", [][]string{{"RPUSH", k("wrong"), "a"}}, agent, []string{"SET", k("wrong"), "v", "XX", "GET"}, "-WRONGTYPE", k("wrong"), none},
	}
	for _, tc := range cases {
		for _, s := range tc.setup {
			direct.Do(s...)
		}
		got := tc.by.DoS(tc.cmd...)
		if !strings.HasPrefix(got, tc.reply) {
			t.Errorf("%s: %q → %q, want %s...", tc.name, tc.cmd, got, tc.reply)
			continue
		}
		ttl := pttl(t, direct, tc.key)
		ok := ttl == tc.want
		if tc.want > 0 {
			ok = ttl <= tc.want && ttl > tc.want-2000
		}
		t.Logf("%-38s PTTL %-10d (want %d)", tc.name, ttl, tc.want)
		if !ok {
			t.Errorf("%s: %q left PTTL %d, want %d", tc.name, tc.cmd, ttl, tc.want)
		}
	}
	// Inside MULTI the rules run with the transaction (EXEC's replies are
	// the client's only).
	agent.Do("MULTI")
	agent.Do("SET", k("tx1"), "v")
	agent.Do("HSET", k("tx2"), "f", "v", "g", "w")
	agent.Do("SET", k("tx3"), "v", "EX", "99999")
	if got := agent.DoS("EXEC"); got != "*3\r\n+OK\r\n:2\r\n+OK\r\n" {
		t.Fatalf("EXEC: %q", got)
	}
	for key, want := range map[string]int64{k("tx1"): hour, k("tx2"): hour, k("tx3"): max} {
		if ttl := pttl(t, direct, key); ttl > want || ttl < want-2000 {
			t.Errorf("in MULTI: %s PTTL %d, want %d", key, ttl, want)
		}
	}
	// Pipelined: hidden PEXPIRE replies never reach the client, and the
	// replies stay in order.
	for i := 0; i < 50; i++ {
		agent.Send("SET", k("p"+strconv.Itoa(i)), "v")
		agent.Send("GET", k("p"+strconv.Itoa(i)))
	}
	for i := 0; i < 50; i++ {
		if got := string(agent.Read()); got != "+OK\r\n" {
			t.Fatalf("pipelined SET %d: %q", i, got)
		}
		if got := string(agent.Read()); got != "$1\r\nv\r\n" {
			t.Fatalf("pipelined GET %d: %q", i, got)
		}
	}
	if got := agent.DoS("PING"); got != "+PONG\r\n" {
		t.Fatalf("after the pipeline: %q", got)
	}
}

func pttl(t *testing.T, c *testutil.Conn, key string) int64 {
	t.Helper()
	got := c.DoS("PTTL", key)
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(got, ":")), 10, 64)
	if err != nil {
		t.Fatalf("PTTL %s: %q", key, got)
	}
	return n
}
