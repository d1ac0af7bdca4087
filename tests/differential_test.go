package tests

// Differential tests (SPEC §3: replies are forwarded byte for byte): the same
// command scripts run against a real redis-server directly and through the
// proxy, in RESP2 and in RESP3, one command at a time and as one pipelined
// write, and every raw reply must be identical.
//
// The helpers prefixed dt are shared by the transaction, pub/sub and
// blocking tests of this package.

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

const (
	// dtKV prefixes every key the scripts use: the workspace grammar of
	// SPEC §4 (kind kv, default workspace). Script tokens starting with '@'
	// expand to dtKV+rest.
	dtKV = "deepagents:{default}:kv:"
	// dtWS prefixes channels (kind events); tokens starting with '^'
	// expand to dtWS+rest.
	dtWS = "deepagents:{default}:"
)

// dtStart starts a redis-server and the proxy in front of it.
func dtStart(t *testing.T) (*testutil.Redis, *app.App) {
	t.Helper()
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, testutil.ProxyConfig(t, r.URL()))
	return r, a
}

// dtHello3 switches c to RESP3 and returns the HELLO reply.
func dtHello3(t *testing.T, c *testutil.Conn) []byte {
	t.Helper()
	b := c.Do("HELLO", "3")
	if len(b) == 0 || b[0] != '%' {
		t.Fatalf("HELLO 3: got %q, want a RESP3 map", b)
	}
	return b
}

// dtDial connects to addr speaking protocol proto (2 or 3).
func dtDial(t *testing.T, addr string, proto int) *testutil.Conn {
	t.Helper()
	c := testutil.Dial(t, addr)
	if proto == 3 {
		dtHello3(t, c)
	}
	return c
}

// dtReset empties the server behind admin (a direct connection): keys,
// cached scripts and function libraries.
func dtReset(t *testing.T, admin *testutil.Conn) {
	t.Helper()
	for _, cmd := range [][]string{{"FLUSHALL"}, {"SCRIPT", "FLUSH"}, {"FUNCTION", "FLUSH"}} {
		if got := admin.DoS(cmd...); got != "+OK\r\n" {
			t.Fatalf("%v: got %q", cmd, got)
		}
	}
}

// dtAwait polls cond until it holds or d elapses, then fails with what.
func dtAwait(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// dtInfoInt reads an integer field of INFO from a direct connection.
func dtInfoInt(t *testing.T, c *testutil.Conn, section, field string) int {
	t.Helper()
	b := c.Do("INFO", section)
	for _, line := range strings.Split(string(b), "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("INFO %s: %s=%q", section, field, v)
			}
			return n
		}
	}
	t.Fatalf("INFO %s has no %s: %q", section, field, b)
	return 0
}

// dtAwaitBlocked waits until Redis reports n clients blocked in a command.
func dtAwaitBlocked(t *testing.T, direct *testutil.Conn, n int) {
	t.Helper()
	dtAwait(t, 5*time.Second, fmt.Sprintf("%d blocked client(s) in redis", n), func() bool {
		return dtInfoInt(t, direct, "clients", "blocked_clients") == n
	})
}

// dtArgs splits one script line into arguments: words separated by spaces,
// "double quotes" for arguments with spaces (escapes \n \r \t \" \\ \xHH),
// '@name' for a kv key and '^name' for a workspace channel.
func dtArgs(line string) []string {
	var args []string
	i := 0
	for i < len(line) {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i >= len(line) {
			break
		}
		var w []byte
		if line[i] == '"' {
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] != '\\' || i+1 >= len(line) {
					w = append(w, line[i])
					continue
				}
				i++
				switch line[i] {
				case 'n':
					w = append(w, '\n')
				case 'r':
					w = append(w, '\r')
				case 't':
					w = append(w, '\t')
				case 'x':
					v, err := strconv.ParseUint(line[i+1:i+3], 16, 8)
					if err != nil {
						panic("bad \\x escape in " + line)
					}
					w = append(w, byte(v))
					i += 2
				default:
					w = append(w, line[i])
				}
			}
			i++ // closing quote
		} else {
			for ; i < len(line) && line[i] != ' '; i++ {
				w = append(w, line[i])
			}
			switch {
			case len(w) > 1 && w[0] == '@':
				w = append([]byte(dtKV), w[1:]...)
			case len(w) > 1 && w[0] == '^':
				w = append([]byte(dtWS), w[1:]...)
			}
		}
		args = append(args, string(w))
	}
	return args
}

// dtScript is a named list of commands run on one connection.
type dtScript struct {
	name string
	cmds [][]string
}

func dtLines(name string, lines ...string) dtScript {
	s := dtScript{name: name}
	for _, l := range lines {
		s.cmds = append(s.cmds, dtArgs(l))
	}
	return s
}

func dtSHA(body string) string {
	h := sha1.Sum([]byte(body))
	return hex.EncodeToString(h[:])
}

const (
	dtLua       = "return 'loaded:' .. (ARGV[1] or 'none')"
	dtLuaRO     = "return redis.call('GET', KEYS[1])"
	dtFunctions = `#!lua name=dtlib\nredis.register_function('dtget', function(keys, args) return redis.call('GET', keys[1]) end)\nredis.register_function{function_name='dtecho', callback=function(keys, args) return args[1] end, flags={'no-writes'}}`
)

// dtScripts is the differential corpus. Every reply must be deterministic
// for a fresh database: explicit stream ids, no clocks, no randomness
// except on one-element collections, at most four keys where the order of
// the keyspace shows (KEYS, SCAN), since Redis rehashes its main dictionary
// in the background.
func dtScripts() []dtScript {
	big := strings.Repeat("0123456789abcdef", 8192) // 128 KiB
	scripts := []dtScript{
		dtLines("strings",
			"SET @s hello",
			"GET @s",
			`APPEND @s " world"`,
			"STRLEN @s",
			"GETRANGE @s 0 4",
			"SUBSTR @s 6 -1",
			"SETRANGE @s 6 WORLD",
			"GET @s",
			"GETSET @s new",
			"GETDEL @s",
			"GET @s",
			"GETDEL @s",
			"SETNX @n 1",
			"SETNX @n 2",
			"SETEX @e 100 v",
			"TTL @e",
			"PSETEX @pe 100000 v",
			"GETEX @pe PERSIST",
			"TTL @pe",
			"GETEX @pe EX 50",
			"TTL @pe",
			"MSET @a 1 @b 2 @c 3",
			"MGET @a @b @c @missing",
			"MSETNX @a 9 @z 9",
			"MSETNX @y 8 @z 8",
			"INCR @a",
			"INCRBY @a 10",
			"DECR @a",
			"DECRBY @a 5",
			"INCRBYFLOAT @a 1.5",
			"INCRBYFLOAT @a 1e3",
			"SET @l1 ohmytext",
			"SET @l2 mynewtext",
			"LCS @l1 @l2",
			"LCS @l1 @l2 LEN",
			"LCS @l1 @l2 IDX MINMATCHLEN 2 WITHMATCHLEN",
			"SET @x v NX",
			"SET @x v2 XX GET",
			"SET @x v3 KEEPTTL GET",
			"SET @x 1 EX 0",
			"SET @x 1 EX abc",
			"SET @x 1 NX XX",
			"INCR @x",
			"INCRBYFLOAT @x 1",
			`SET @bin "a\r\nb\x00c\xff"`,
			"GET @bin",
			`SET @empty ""`,
			"GET @empty",
			"STRLEN @empty",
		),
		{name: "large-values", cmds: [][]string{
			{"SET", dtKV + "big", big},
			{"GET", dtKV + "big"},
			{"STRLEN", dtKV + "big"},
			{"GETRANGE", dtKV + "big", "65530", "65545"},
			{"APPEND", dtKV + "big", big},
			{"GETRANGE", dtKV + "big", "0", "-1"},
			{"RPUSH", dtKV + "bl", big, "x", big},
			{"LRANGE", dtKV + "bl", "0", "-1"},
			{"HSET", dtKV + "bh", "f", big},
			{"HGETALL", dtKV + "bh"},
		}},
		dtLines("keys",
			"SET @k1 v",
			"SET @k2 v",
			"RPUSH @l a",
			"EXISTS @k1 @k2 @nope @k1",
			"TYPE @k1",
			"TYPE @l",
			"TYPE @nope",
			"RENAME @k1 @k3",
			"RENAMENX @k2 @k3",
			"RENAMENX @k2 @k4",
			"RENAME @nope @x",
			"EXPIRE @k3 100",
			"TTL @k3",
			"EXPIRE @k3 200 NX",
			"EXPIRE @k3 200 GT",
			"TTL @k3",
			"PEXPIRE @k4 100000",
			"PERSIST @k4",
			"PERSIST @k4",
			"PTTL @k4",
			"PTTL @nope",
			"TTL @nope",
			"EXPIREAT @k4 4000000000",
			"EXPIRETIME @k4",
			"PEXPIREAT @k4 4000000000000",
			"PEXPIRETIME @k4",
			"EXPIRETIME @nope",
			"COPY @k3 @k5",
			"COPY @k3 @k5",
			"COPY @k3 @k5 REPLACE",
			"GET @k5",
			"TOUCH @k3 @k5 @nope",
			"OBJECT ENCODING @k3",
			"OBJECT ENCODING @l",
			"OBJECT REFCOUNT @k3",
			"OBJECT FREQ @k3",
			"OBJECT ENCODING @nope",
			"DUMP @k3",
			"DUMP @nope",
			"RESTORE @r 0 garbage",
			"DEL @k3 @k5 @nope",
			"UNLINK @k4",
			"EXISTS @k3",
			"DBSIZE",
			"WAIT 0 10",
		),
		dtLines("keyspace-iteration",
			"SET @a 1",
			"SET @b 2",
			"SADD @c x",
			"KEYS @*",
			"KEYS @nomatch*",
			"SCAN 0 MATCH @* COUNT 100",
			"SCAN 0 MATCH @* COUNT 100 TYPE set",
			"DBSIZE",
		),
		dtLines("lists",
			"RPUSH @l a b c",
			"LPUSH @l z",
			"LPUSHX @l y",
			"RPUSHX @l d",
			"LPUSHX @nol x",
			"LLEN @l",
			"LRANGE @l 0 -1",
			"LINDEX @l 2",
			"LINDEX @l 99",
			"LSET @l 0 Y",
			"LSET @l 99 x",
			"LINSERT @l BEFORE b bb",
			"LINSERT @l AFTER nope x",
			"LREM @l 1 bb",
			"LPOS @l c",
			"LPOS @l c RANK 1 COUNT 0",
			"LPOS @l nope",
			"LPOP @l",
			"RPOP @l",
			"LPOP @l 2",
			"RPOP @nol",
			"LPOP @nol 2",
			"RPUSH @l2 1 2 3 4 5",
			"LTRIM @l2 1 3",
			"LRANGE @l2 0 -1",
			"RPOPLPUSH @l2 @l3",
			"LMOVE @l2 @l3 LEFT RIGHT",
			"LRANGE @l3 0 -1",
			"LMPOP 2 @nol @l3 LEFT COUNT 5",
			"LMPOP 1 @nol LEFT",
			"RPUSH @l2 a b c d",
			"BLPOP @l2 1",
			"BRPOP @nol @l2 1",
			"BLPOP @nol 0.01",
			"BRPOPLPUSH @l2 @l4 1",
			"BLMOVE @l2 @l4 LEFT LEFT 1",
			"BLMPOP 1 1 @l4 RIGHT COUNT 2",
			"LRANGE @l4 0 -1",
			"RPUSH @sl 3 1 2",
			"SORT @sl",
			"SORT @sl DESC LIMIT 0 2",
			"SORT @sl ALPHA STORE @sd",
			"SORT_RO @sl DESC",
			"LRANGE @sd 0 -1",
			"LPUSH @l",
			"LRANGE @l a b",
		),
		dtLines("hashes",
			"HSET @h f1 v1 f2 v2",
			"HSETNX @h f1 x",
			"HSETNX @h f3 v3",
			"HMSET @h f4 4 f5 5.5",
			"HGET @h f1",
			"HGET @h nope",
			"HMGET @h f1 nope f2",
			"HGETALL @h",
			"HKEYS @h",
			"HVALS @h",
			"HLEN @h",
			"HEXISTS @h f1",
			"HEXISTS @h nope",
			"HSTRLEN @h f2",
			"HINCRBY @h f4 10",
			"HINCRBYFLOAT @h f5 0.5",
			"HINCRBY @h f1 1",
			"HDEL @h f1 nope",
			"HSCAN @h 0",
			"HSCAN @h 0 MATCH f* COUNT 100",
			"HSET @h1 only v",
			"HRANDFIELD @h1",
			"HRANDFIELD @h1 -2 WITHVALUES",
			"HGETALL @nope",
			"HSET @h",
			"OBJECT ENCODING @h",
		),
		dtLines("sets",
			"SADD @s1 a b c",
			"SADD @s2 b c d",
			"SADD @si 3 1 2",
			"SMEMBERS @si",
			"SCARD @s1",
			"SISMEMBER @s1 a",
			"SMISMEMBER @s1 a z",
			"SREM @s1 a z",
			"SMOVE @s1 @s2 b",
			"SMOVE @s1 @s2 nope",
			"SINTER @s1 @s2",
			"SINTERCARD 2 @s1 @s2",
			"SINTERCARD 2 @s1 @s2 LIMIT 1",
			"SINTERSTORE @s3 @s1 @s2",
			"SUNION @si @s1",
			"SUNIONSTORE @s4 @s1 @s2",
			"SDIFF @s2 @s1",
			"SDIFFSTORE @s5 @s2 @s1",
			"SMEMBERS @s2",
			"SMEMBERS @s5",
			"SSCAN @si 0",
			"SADD @one x",
			"SRANDMEMBER @one",
			"SRANDMEMBER @one -3",
			"SPOP @one",
			"SPOP @one",
			"SMEMBERS @nope",
			"SINTERCARD 0 @s1",
			"SADD @s1",
			"OBJECT ENCODING @si",
		),
		dtLines("sorted-sets",
			"ZADD @z 1 a 2 b 3 c",
			"ZADD @z NX 10 a 4 d",
			"ZADD @z XX CH 5 a",
			"ZADD @z GT 1 a",
			"ZADD @z INCR 2 b",
			"ZSCORE @z a",
			"ZSCORE @z nope",
			"ZMSCORE @z a nope",
			"ZINCRBY @z 1.5 c",
			"ZCARD @z",
			"ZCOUNT @z 2 5",
			"ZRANGE @z 0 -1 WITHSCORES",
			"ZRANGE @z (1 +inf BYSCORE LIMIT 0 2",
			"ZRANGE @z 0 -1 REV",
			"ZRANGEBYSCORE @z -inf +inf WITHSCORES",
			"ZREVRANGE @z 0 1 WITHSCORES",
			"ZREVRANGEBYSCORE @z +inf 3",
			"ZRANK @z c",
			"ZREVRANK @z c",
			"ZRANK @z nope",
			"ZADD @lex 0 a 0 b 0 c 0 d",
			"ZLEXCOUNT @lex [b +",
			"ZRANGEBYLEX @lex - (c",
			"ZREVRANGEBYLEX @lex + [b",
			"ZREMRANGEBYLEX @lex [a [a",
			"ZREM @z nope d",
			"ZREMRANGEBYRANK @lex 0 0",
			"ZREMRANGEBYSCORE @z 100 200",
			"ZPOPMIN @z",
			"ZPOPMAX @z 2",
			"ZADD @za 1 x 2 y",
			"ZADD @zb 3 y 4 z",
			"ZUNION 2 @za @zb WITHSCORES",
			"ZUNIONSTORE @zu 2 @za @zb WEIGHTS 1 2",
			"ZINTER 2 @za @zb AGGREGATE MAX WITHSCORES",
			"ZINTERSTORE @zi 2 @za @zb",
			"ZINTERCARD 2 @za @zb",
			"ZDIFF 2 @za @zb WITHSCORES",
			"ZDIFFSTORE @zd 2 @za @zb",
			"ZRANGESTORE @zr @zu 0 1",
			"ZRANGE @zr 0 -1 WITHSCORES",
			"ZMPOP 1 @zu MIN COUNT 2",
			"ZSCAN @za 0",
			"BZPOPMIN @za 1",
			"BZPOPMAX @zb 1",
			"BZMPOP 1 1 @zb MAX",
			"BZPOPMIN @nope 0.01",
			"ZADD @one 1.5 only",
			"ZRANDMEMBER @one",
			"ZRANDMEMBER @one -2 WITHSCORES",
			"ZADD @z nan x",
			"ZADD @z 1",
			"ZADD @z NX XX 1 a",
		),
		dtLines("streams",
			"XADD @x 1-1 f v",
			"XADD @x 1-2 f v2 g w",
			"XADD @x 1-1 f v",
			"XADD @x MAXLEN 10 2-1 f v3",
			"XLEN @x",
			"XRANGE @x - +",
			"XRANGE @x - + COUNT 1",
			"XREVRANGE @x + - COUNT 2",
			"XREAD COUNT 2 STREAMS @x 0-0",
			"XREAD STREAMS @x 9-9",
			"XREAD BLOCK 10 STREAMS @x 9-9",
			"XGROUP CREATE @x g 0",
			"XGROUP CREATE @x g 0",
			"XGROUP CREATECONSUMER @x g c1",
			"XREADGROUP GROUP g c1 COUNT 2 STREAMS @x >",
			"XREADGROUP GROUP g c1 BLOCK 10 STREAMS @x >",
			"XPENDING @x g",
			"XACK @x g 1-1",
			"XCLAIM @x g c2 0 1-2 JUSTID",
			"XAUTOCLAIM @x g c3 0 0-0 COUNT 10 JUSTID",
			"XINFO GROUPS @x",
			"XINFO STREAM @x",
			"XGROUP SETID @x g 0",
			"XGROUP DELCONSUMER @x g c1",
			"XDEL @x 1-1",
			"XTRIM @x MAXLEN 1",
			"XSETID @x 5-0",
			"XINFO STREAM @x",
			"XGROUP DESTROY @x g",
			"XADD @x2 NOMKSTREAM 1-1 f v",
			"XLEN @nope",
			"XADD @x",
		),
		dtLines("bitmaps",
			"SETBIT @b 7 1",
			"SETBIT @b 100 1",
			"GETBIT @b 7",
			"GETBIT @b 8",
			"BITCOUNT @b",
			"BITCOUNT @b 0 0",
			"BITCOUNT @b 0 7 BIT",
			"BITPOS @b 1",
			"BITPOS @b 0",
			"SET @b2 foobar",
			"BITOP AND @b3 @b @b2",
			"BITOP NOT @b4 @b2",
			"GET @b4",
			"GET @b",
			"BITFIELD @bf SET u8 0 255 GET u8 0 INCRBY u8 0 10 OVERFLOW SAT INCRBY u8 0 300",
			"BITFIELD_RO @bf GET u4 0",
			"SETBIT @b 7 2",
			"BITOP XOR @b5",
		),
		dtLines("hyperloglog",
			"PFADD @hll a b c",
			"PFADD @hll a",
			"PFCOUNT @hll",
			"PFADD @hll2 c d",
			"PFMERGE @hll3 @hll @hll2",
			"PFCOUNT @hll3",
			"PFCOUNT @hll @hll2",
			"GET @hll",
			"SET @str x",
			"PFADD @str a",
		),
		dtLines("geo",
			"GEOADD @g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
			"GEOADD @g NX 2.2 48.8 Paris",
			"GEODIST @g Palermo Catania",
			"GEODIST @g Palermo Catania km",
			"GEODIST @g Palermo nope",
			"GEOPOS @g Palermo nope",
			"GEOHASH @g Palermo Catania",
			"GEOSEARCH @g FROMLONLAT 15 37 BYRADIUS 200 km ASC",
			"GEOSEARCH @g FROMMEMBER Palermo BYBOX 400 400 km ASC WITHCOORD WITHDIST WITHHASH",
			"GEOSEARCHSTORE @g2 @g FROMLONLAT 15 37 BYRADIUS 200 km ASC COUNT 1 STOREDIST",
			"ZRANGE @g2 0 -1 WITHSCORES",
			"GEORADIUS @g 15 37 200 km WITHDIST ASC",
			"GEORADIUS_RO @g 15 37 200 km ASC",
			"GEORADIUSBYMEMBER @g Palermo 200 km ASC",
			"GEORADIUSBYMEMBER_RO @g Palermo 200 km WITHCOORD ASC",
			"GEOADD @g 200 100 bad",
		),
		dtLines("scripting",
			`EVAL "return 1" 0`,
			`EVAL "return {1,2,{3,'x'},redis.status_reply('FINE'),redis.error_reply('ERR boom')}" 0`,
			`EVAL "return redis.call('SET', KEYS[1], ARGV[1])" 1 @ev v`,
			`EVAL "return redis.call('GET', KEYS[1])" 1 @ev`,
			`EVAL "return 3.99" 0`,
			`EVAL "return nil" 0`,
			`EVAL "return true" 0`,
			`EVAL "return {double=3.5}" 0`,
			`EVAL "return {big_number='123456789012345678901234567890'}" 0`,
			`EVAL "redis.call('HSET', KEYS[1], 'a', '1'); redis.setresp(3); return redis.call('HGETALL', KEYS[1])" 1 @eh`,
			`EVAL "return redis.call('INCR', KEYS[1])" 1 @ev`,
			`EVAL "this is not lua" 0`,
			`EVAL "return 1"`,
			`SCRIPT LOAD "`+dtLua+`"`,
			"EVALSHA "+dtSHA(dtLua)+" 0 x",
			"SCRIPT EXISTS "+dtSHA(dtLua)+" ffffffffffffffffffffffffffffffffffffffff",
			"EVALSHA ffffffffffffffffffffffffffffffffffffffff 0",
			`EVAL_RO "`+dtLuaRO+`" 1 @ev`,
			"EVALSHA_RO "+dtSHA(dtLuaRO)+" 1 @ev",
			`EVAL_RO "return redis.call('SET', KEYS[1], 'x')" 1 @ev`,
			`FUNCTION LOAD "`+dtFunctions+`"`,
			"FCALL dtget 1 @ev",
			"FCALL_RO dtecho 0 hi",
			"FCALL_RO dtget 1 @ev",
			"FCALL nope 0",
			"FUNCTION LIST",
			`FUNCTION LOAD "`+dtFunctions+`"`,
			"FUNCTION DELETE dtlib",
			"FUNCTION DELETE dtlib",
		),
		dtLines("transactions",
			"MULTI",
			"SET @t 1",
			"INCR @t",
			"GET @t",
			"EXEC",
			"MULTI",
			"MULTI",
			"PING",
			"DISCARD",
			"EXEC",
			"DISCARD",
			"WATCH @t",
			"GET @t",
			"MULTI",
			"INCR @t",
			"EXEC",
			"WATCH @t",
			"UNWATCH",
			"MULTI",
			"SET @t x",
			"INCR @t",
			"GET @t",
			"EXEC",
			"MULTI",
			"SET @t",
			"GET @t",
			"EXEC",
			"MULTI",
			"WATCH @t",
			"EXEC",
			"MULTI",
			"BLPOP @nol 0",
			"NOSUCHCMD",
			"DISCARD",
			"MULTI",
			"HSET @th f v",
			"HGETALL @th",
			"ZADD @tz 1 a",
			"ZRANGE @tz 0 -1 WITHSCORES",
			"EXEC",
			"WATCH",
		),
		dtLines("pubsub-commands",
			"PUBLISH ^events hello",
			"SPUBLISH ^events:shard hello",
			"PUBSUB CHANNELS",
			"PUBSUB CHANNELS ^*",
			"PUBSUB NUMSUB ^events ^events:other",
			"PUBSUB NUMPAT",
			"PUBSUB SHARDCHANNELS",
			"PUBSUB SHARDNUMSUB ^events:shard",
			"PUBLISH ^events",
			"PUBSUB NOSUCH",
		),
		dtLines("errors",
			"NOSUCHCOMMAND a b",
			"nosuchcommand",
			"SET @s v",
			"LPUSH @s x",
			"HGET @s f",
			"SADD @s m",
			"ZSCORE @s m",
			"XLEN @s",
			"GET",
			"SET @s",
			"INCRBY @s notanumber",
			"EXPIRE @s abc",
			"ZADD @z x a",
			"SET @s v EX",
			"LRANGE @s a b",
			"OBJECT nosuch",
			"XGROUP nosuch",
			"SCRIPT nosuch",
			"CLIENT nosuch",
			"GETRANGE @s 0",
			"BITCOUNT @s 0",
			"RPUSH @s",
			"get @s",
			"gEt @s",
		),
		dtLines("connection",
			"PING",
			"PING hello",
			`ECHO "a\r\nb\x00c"`,
			"ECHO",
			"PING a b",
			"SELECT 0",
			"SELECT abc",
			"SELECT 99",
			"SELECT 1",
			"SET @db1 v",
			"GET @db1",
			"SELECT 0",
			"GET @db1",
			"CLIENT SETNAME dtname",
			"CLIENT GETNAME",
			`CLIENT SETNAME "bad name"`,
			"AUTH x",
			"AUTH foo bar",
			"AUTH default whatever",
			"HELLO 4",
			"HELLO abc",
			"HELLO",
			"COMMAND COUNT",
			"COMMAND INFO get",
			"COMMAND GETKEYS SET @a b",
			"COMMAND DOCS get",
			"MEMORY DOCTOR",
			"MEMORY USAGE @nope",
			"LATENCY DOCTOR",
			"TYPE @nope",
		),
	}
	return scripts
}
