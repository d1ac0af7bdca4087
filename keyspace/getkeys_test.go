package keyspace_test

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

// getkeysInvocations are representative, valid invocations of Redis 7.0
// commands. Each is sent to a real redis-server as COMMAND GETKEYS and the
// key names Redis reports are compared with what Extract finds. Tokens are
// separated by spaces; two single quotes stand for an empty argument.
//
// Commands of arity 1 (DBSIZE, MULTI, ...) cannot be asked about: COMMAND
// GETKEYS needs the target command to have at least one argument.
var getkeysInvocations = []string{
	// ACL (keyless)
	"ACL CAT", "ACL DELUSER u1", "ACL DRYRUN default GET k", "ACL GENPASS 64", "ACL GETUSER default",
	"ACL HELP", "ACL LIST", "ACL LOAD", "ACL LOG 10", "ACL SAVE", "ACL SETUSER u1 on", "ACL USERS", "ACL WHOAMI",
	// strings
	"APPEND k v", "DECR k", "DECRBY k 2", "GET k", "GETDEL k", "GETEX k PERSIST", "GETEX k EX 10",
	"GETRANGE k 0 1", "GETSET k v", "INCR k", "INCRBY k 1", "INCRBYFLOAT k 1.5", "LCS k1 k2 LEN",
	"MGET k1 k2 k3", "MSET k1 v1 k2 v2 k3 v3", "MSETNX k1 v1 k2 v2", "PSETEX k 100 v", "SET k v",
	"SET k v NX GET EX 10", "SETEX k 10 v", "SETNX k v", "SETRANGE k 0 v", "STRLEN k", "SUBSTR k 0 1",
	// bitmaps
	"BITCOUNT k 0 -1 BIT", "BITFIELD k GET u8 0 SET u8 0 1", "BITFIELD_RO k GET u8 0",
	"BITOP AND dst k1 k2 k3", "BITOP NOT dst k1", "BITPOS k 1 0", "GETBIT k 0", "SETBIT k 0 1",
	// generic keyspace
	"COPY src dst", "COPY src dst DB 1 REPLACE", "DEL k1 k2 k3", "DUMP k", "EXISTS k1 k2 k1",
	"EXPIRE k 10 NX", "EXPIREAT k 10", "EXPIRETIME k", "MOVE k 1", "PERSIST k", "PEXPIRE k 100",
	"PEXPIREAT k 100", "PEXPIRETIME k", "PTTL k", "RENAME k1 k2", "RENAMENX k1 k2",
	"RESTORE k 0 payload REPLACE", "RESTORE-ASKING k 0 payload", "TOUCH k1 k2", "TTL k", "TYPE k",
	"UNLINK k1 k2", "KEYS pat*", "SCAN 0 MATCH pat* COUNT 10", "WAIT 0 0", "WATCH k1 k2",
	"OBJECT ENCODING k", "OBJECT FREQ k", "OBJECT HELP", "OBJECT IDLETIME k", "OBJECT REFCOUNT k",
	"MEMORY DOCTOR", "MEMORY HELP", "MEMORY MALLOC-STATS", "MEMORY PURGE", "MEMORY STATS",
	"MEMORY USAGE k", "MEMORY USAGE k SAMPLES 5",
	"MIGRATE 127.0.0.1 6379 k 0 5000", "MIGRATE 127.0.0.1 6379 k 0 5000 COPY REPLACE",
	"MIGRATE 127.0.0.1 6379 '' 0 5000 KEYS k1 k2 k3",
	"MIGRATE 127.0.0.1 6379 '' 0 5000 COPY REPLACE AUTH pw KEYS k1 k2",
	"MIGRATE 127.0.0.1 6379 '' 0 5000 AUTH2 user pw KEYS k1",
	"MIGRATE 127.0.0.1 6379 '' 0 5000", "MIGRATE 127.0.0.1 6379 '' 0 5000 AUTH KEYS",
	"SORT k", "SORT k LIMIT 0 10 ALPHA DESC", "SORT k STORE dst", "SORT k BY w_* GET o_* GET # STORE dst",
	"SORT k BY nosort GET # LIMIT 0 5", "SORT_RO k", "SORT_RO k BY w_* GET o_* ALPHA",
	// lists
	"BLMOVE src dst LEFT RIGHT 0", "BLMPOP 0 2 k1 k2 LEFT COUNT 2", "BLMPOP 1.5 1 k1 RIGHT",
	"BLPOP k1 k2 0", "BRPOP k1 0", "BRPOPLPUSH src dst 0", "LINDEX k 0", "LINSERT k BEFORE p v", "LLEN k",
	"LMOVE src dst LEFT RIGHT", "LMPOP 2 k1 k2 LEFT", "LMPOP 1 k1 RIGHT COUNT 3", "LPOP k 2", "LPOS k e RANK 1",
	"LPUSH k a b", "LPUSHX k a", "LRANGE k 0 -1", "LREM k 0 v", "LSET k 0 v", "LTRIM k 0 1", "RPOP k",
	"RPOPLPUSH src dst", "RPUSH k a b", "RPUSHX k a",
	// hashes
	"HDEL k f1 f2", "HEXISTS k f", "HGET k f", "HGETALL k", "HINCRBY k f 1", "HINCRBYFLOAT k f 1.5",
	"HKEYS k", "HLEN k", "HMGET k f1 f2", "HMSET k f v", "HRANDFIELD k 2 WITHVALUES", "HSCAN k 0 MATCH f*",
	"HSET k f1 v1 f2 v2", "HSETNX k f v", "HSTRLEN k f", "HVALS k",
	// sets
	"SADD k a b", "SCARD k", "SDIFF k1 k2 k3", "SDIFFSTORE dst k1 k2", "SINTER k1 k2",
	"SINTERCARD 2 k1 k2 LIMIT 1", "SINTERSTORE dst k1 k2", "SISMEMBER k m", "SMEMBERS k",
	"SMISMEMBER k a b", "SMOVE src dst m", "SPOP k 1", "SRANDMEMBER k 2", "SREM k a", "SSCAN k 0",
	"SUNION k1 k2", "SUNIONSTORE dst k1 k2",
	// sorted sets
	"BZMPOP 0 2 k1 k2 MIN", "BZMPOP 0 1 k1 MAX COUNT 2", "BZPOPMAX k1 k2 0", "BZPOPMIN k1 0",
	"ZADD k NX 1 a 2 b", "ZCARD k", "ZCOUNT k 0 1", "ZDIFF 2 k1 k2 WITHSCORES", "ZDIFFSTORE dst 2 k1 k2",
	"ZINCRBY k 1 a", "ZINTER 2 k1 k2", "ZINTER 3 k1 k2 k3 WEIGHTS 1 2 3 AGGREGATE SUM WITHSCORES",
	"ZINTERCARD 2 k1 k2 LIMIT 5", "ZINTERSTORE dst 2 k1 k2 WEIGHTS 1 2", "ZLEXCOUNT k - +",
	"ZMPOP 2 k1 k2 MIN COUNT 1", "ZMPOP 1 k1 MAX", "ZMSCORE k a b", "ZPOPMAX k", "ZPOPMIN k 2",
	"ZRANDMEMBER k 2 WITHSCORES", "ZRANGE k 0 -1", "ZRANGE k (1 5 BYSCORE REV LIMIT 0 1", "ZRANGEBYLEX k - +",
	"ZRANGEBYSCORE k 0 1 WITHSCORES", "ZRANGESTORE dst src 0 -1", "ZRANK k a", "ZREM k a b",
	"ZREMRANGEBYLEX k - +", "ZREMRANGEBYRANK k 0 1", "ZREMRANGEBYSCORE k 0 1", "ZREVRANGE k 0 1",
	"ZREVRANGEBYLEX k + -", "ZREVRANGEBYSCORE k 1 0", "ZREVRANK k a", "ZSCAN k 0", "ZSCORE k a",
	"ZUNION 3 k1 k2 k3 AGGREGATE MAX", "ZUNIONSTORE dst 2 k1 k2", "ZUNIONSTORE dst 1 k1 WEIGHTS 2",
	// hyperloglog
	"PFADD k a b", "PFCOUNT k1 k2", "PFDEBUG GETREG k", "PFMERGE dst k1 k2",
	// geo
	"GEOADD k 13.3 38.1 m", "GEODIST k m1 m2 km", "GEOHASH k m1 m2", "GEOPOS k m",
	"GEORADIUS k 15 37 200 km", "GEORADIUS k 15 37 200 km WITHDIST ASC COUNT 5 STORE dst",
	"GEORADIUS k 15 37 200 km STOREDIST dst", "GEORADIUS k 15 37 200 km STORE d1 STOREDIST d2",
	"GEORADIUS_RO k 15 37 200 km WITHCOORD", "GEORADIUSBYMEMBER k m 100 km STORE dst",
	"GEORADIUSBYMEMBER k m 100 km", "GEORADIUSBYMEMBER_RO k m 100 km",
	"GEOSEARCH k FROMMEMBER m BYRADIUS 10 km ASC", "GEOSEARCHSTORE dst src FROMLONLAT 1 2 BYBOX 1 1 km STOREDIST",
	"GEOSEARCHSTORE dst src FROMMEMBER m BYRADIUS 1 km",
	// streams
	"XACK k g 1-1 2-2", "XADD k MAXLEN ~ 10 * f v", "XADD k NOMKSTREAM 1-1 f v",
	"XAUTOCLAIM k g c 0 0-0 COUNT 1", "XCLAIM k g c 0 1-1 JUSTID", "XDEL k 1-1",
	"XGROUP CREATE k g $ MKSTREAM", "XGROUP CREATECONSUMER k g c", "XGROUP DELCONSUMER k g c",
	"XGROUP DESTROY k g", "XGROUP HELP", "XGROUP SETID k g $",
	"XINFO CONSUMERS k g", "XINFO GROUPS k", "XINFO HELP", "XINFO STREAM k", "XINFO STREAM k FULL COUNT 5",
	"XLEN k", "XPENDING k g - + 10", "XRANGE k - +", "XREAD STREAMS k1 0", "XREAD COUNT 2 STREAMS k1 k2 0 0",
	"XREAD BLOCK 0 STREAMS k1 k2 k3 $ $ $", "xread count 1 streams k1 0",
	"XREADGROUP GROUP g c COUNT 1 STREAMS k1 k2 > >", "XREADGROUP GROUP g c BLOCK 0 NOACK STREAMS k1 >",
	"XREVRANGE k + -", "XSETID k 1-1", "XTRIM k MAXLEN 10",
	// scripting and functions
	"EVAL s 2 k1 k2 a1", "EVAL s 0 a1", "EVAL_RO s 1 k1 a1", "EVALSHA sha 2 k1 k2", "EVALSHA sha 0",
	"EVALSHA_RO sha 1 k1", "FCALL f 2 k1 k2 a", "FCALL f 0", "FCALL_RO f 1 k1",
	"SCRIPT DEBUG NO", "SCRIPT EXISTS sha", "SCRIPT FLUSH ASYNC", "SCRIPT HELP", "SCRIPT KILL", "SCRIPT LOAD s",
	"FUNCTION DELETE lib", "FUNCTION DUMP", "FUNCTION FLUSH", "FUNCTION HELP", "FUNCTION KILL",
	"FUNCTION LIST LIBRARYNAME l", "FUNCTION LOAD code", "FUNCTION RESTORE payload", "FUNCTION STATS",
	// pub/sub: channels are not keys
	"PUBLISH ch m", "SPUBLISH ch m", "SUBSCRIBE ch1 ch2", "SSUBSCRIBE ch", "PSUBSCRIBE p*",
	"UNSUBSCRIBE ch", "SUNSUBSCRIBE ch", "PUNSUBSCRIBE p*",
	"PUBSUB CHANNELS p*", "PUBSUB HELP", "PUBSUB NUMPAT", "PUBSUB NUMSUB ch", "PUBSUB SHARDCHANNELS p*",
	"PUBSUB SHARDNUMSUB ch",
	// connection and server (keyless)
	"AUTH pw", "ECHO m", "HELLO 3", "PING hi", "SELECT 1", "INFO server", "LOLWUT VERSION 5",
	"BGSAVE SCHEDULE", "FLUSHALL ASYNC", "FLUSHDB ASYNC", "SWAPDB 0 1", "SHUTDOWN NOSAVE",
	"REPLICAOF no one", "SLAVEOF no one", "FAILOVER ABORT", "DEBUG SLEEP 0", "PSYNC id 0",
	"REPLCONF listening-port 1",
	"CLIENT CACHING yes", "CLIENT GETNAME", "CLIENT GETREDIR", "CLIENT HELP", "CLIENT ID", "CLIENT INFO",
	"CLIENT KILL ID 1", "CLIENT LIST", "CLIENT NO-EVICT on", "CLIENT PAUSE 100", "CLIENT REPLY ON",
	"CLIENT SETNAME n", "CLIENT TRACKING on", "CLIENT TRACKINGINFO", "CLIENT UNBLOCK 1", "CLIENT UNPAUSE",
	"CLUSTER ADDSLOTS 1", "CLUSTER ADDSLOTSRANGE 1 2", "CLUSTER BUMPEPOCH", "CLUSTER COUNT-FAILURE-REPORTS id",
	"CLUSTER COUNTKEYSINSLOT 1", "CLUSTER DELSLOTS 1", "CLUSTER DELSLOTSRANGE 1 2", "CLUSTER FAILOVER",
	"CLUSTER FLUSHSLOTS", "CLUSTER FORGET id", "CLUSTER GETKEYSINSLOT 1 10", "CLUSTER HELP", "CLUSTER INFO",
	"CLUSTER KEYSLOT k", "CLUSTER LINKS", "CLUSTER MEET 127.0.0.1 7000", "CLUSTER MYID", "CLUSTER NODES",
	"CLUSTER REPLICAS id", "CLUSTER REPLICATE id", "CLUSTER RESET", "CLUSTER SAVECONFIG",
	"CLUSTER SET-CONFIG-EPOCH 1", "CLUSTER SETSLOT 1 STABLE", "CLUSTER SHARDS", "CLUSTER SLAVES id",
	"CLUSTER SLOTS",
	"COMMAND COUNT", "COMMAND DOCS get", "COMMAND GETKEYS GET k", "COMMAND GETKEYSANDFLAGS GET k",
	"COMMAND HELP", "COMMAND INFO get", "COMMAND LIST",
	"CONFIG GET maxmemory", "CONFIG HELP", "CONFIG RESETSTAT", "CONFIG REWRITE", "CONFIG SET maxmemory 0",
	"LATENCY DOCTOR", "LATENCY GRAPH command", "LATENCY HELP", "LATENCY HISTOGRAM get",
	"LATENCY HISTORY command", "LATENCY LATEST", "LATENCY RESET",
	"MODULE HELP", "MODULE LIST", "MODULE LOAD /nonexistent.so", "MODULE LOADEX /nonexistent.so",
	"MODULE UNLOAD m",
	"SLOWLOG GET 10", "SLOWLOG HELP", "SLOWLOG LEN", "SLOWLOG RESET",
}

// namesChannels are the commands whose invocations above name channels or
// patterns.
var namesChannels = map[string]bool{
	"publish": true, "spublish": true, "subscribe": true, "ssubscribe": true, "psubscribe": true,
	"unsubscribe": true, "sunsubscribe": true, "punsubscribe": true, "pubsub|channels": true,
	"pubsub|numsub": true, "pubsub|shardchannels": true, "pubsub|shardnumsub": true, "keys": true,
}

// tokens splits an invocation; two single quotes stand for an empty argument.
func tokens(s string) []string {
	f := strings.Fields(s)
	for i, t := range f {
		if t == "''" {
			f[i] = ""
		}
	}
	return f
}

// getkeysReply reads Redis's reply to COMMAND GETKEYS: the keys, or none
// when Redis says the command has no key arguments (or, for commands whose
// keys are optional, an empty array). Any other error is returned.
func getkeysReply(b []byte) ([]string, error) {
	if len(b) > 0 && b[0] == '-' {
		msg := strings.TrimSuffix(string(b[1:]), "\r\n")
		if msg == "ERR The command has no key arguments" {
			return nil, nil
		}
		return nil, fmt.Errorf("%s", msg)
	}
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok || len(line) < 2 || line[0] != '*' {
		return nil, fmt.Errorf("unexpected reply %q", b)
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil {
		return nil, fmt.Errorf("unexpected reply %q", b)
	}
	keys := []string{}
	for i := 0; i < n; i++ {
		line, rest, ok = bytes.Cut(rest, []byte("\r\n"))
		if !ok || len(line) < 2 || line[0] != '$' {
			return nil, fmt.Errorf("unexpected reply %q", b)
		}
		l, err := strconv.Atoi(string(line[1:]))
		if err != nil || l < 0 || len(rest) < l+2 {
			return nil, fmt.Errorf("unexpected reply %q", b)
		}
		keys = append(keys, string(rest[:l]))
		rest = rest[l+2:]
	}
	return keys, nil
}

func toBytes(args []string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

// TestExtractMatchesGetkeys compares Extract with a real Redis's COMMAND
// GETKEYS over representative invocations of at least 200 distinct
// commands and subcommands.
func TestExtractMatchesGetkeys(t *testing.T) {
	r := testutil.StartRedis(t)
	c := testutil.Dial(t, r.Addr)

	// Pipeline every question, then read every answer.
	var batch []byte
	for _, inv := range getkeysInvocations {
		batch = upstream.AppendCommand(batch, append([]string{"COMMAND", "GETKEYS"}, tokens(inv)...)...)
	}
	c.Write(batch)

	distinct := map[string]bool{}
	withKeys := 0 // invocations where Redis reported keys
	var acc keyspace.Access
	for _, inv := range getkeysInvocations {
		reply := c.Read()
		args := tokens(inv)
		t.Run(inv, func(t *testing.T) {
			want, err := getkeysReply(reply)
			if err != nil {
				t.Fatalf("COMMAND GETKEYS %s: %v (fix the invocation)", inv, err)
			}
			cmd := keyspace.Resolve(toBytes(args))
			if cmd == nil {
				t.Fatalf("%s: not in the command table", args[0])
			}
			if !cmd.ArityOK(len(args)) {
				t.Fatalf("%s: the table says arity %d, the invocation has %d arguments", cmd.Name, cmd.Arity, len(args))
			}
			distinct[cmd.Name] = true
			bargs := toBytes(args)
			if err := keyspace.Extract(cmd, bargs, &acc); err != nil {
				t.Fatalf("Extract(%s): %v; Redis says keys %q", inv, err, want)
			}
			got := []string{}
			for _, i := range acc.Keys {
				got = append(got, args[i])
			}
			if want == nil {
				want = []string{}
			}
			if len(want) > 0 {
				withKeys++
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: Extract keys %q (indexes %v), Redis COMMAND GETKEYS %q", inv, got, acc.Keys, want)
			}
			// Channels and patterns are not keys to Redis, but the
			// proxy must still see them.
			if namesChannels[cmd.Name] && len(acc.Channels)+len(acc.Patterns) == 0 {
				t.Errorf("%s: no channel or pattern found", inv)
			}
		})
	}
	t.Logf("compared %d invocations of %d distinct commands with COMMAND GETKEYS of Redis (%d with keys)",
		len(getkeysInvocations), len(distinct), withKeys)
	if withKeys < 150 {
		t.Errorf("only %d invocations have keys according to Redis; the comparison is too weak", withKeys)
	}
	if len(distinct) < 200 {
		t.Fatalf("only %d distinct commands compared with COMMAND GETKEYS; want at least 200", len(distinct))
	}
}

// TestGetkeysCoverage makes sure every command Redis describes is either
// compared with COMMAND GETKEYS above or cannot be (arity 1, containers),
// so a command added to the table is not silently left out.
func TestGetkeysCoverage(t *testing.T) {
	covered := map[string]bool{}
	for _, inv := range getkeysInvocations {
		if c := keyspace.Resolve(toBytes(tokens(inv))); c != nil {
			covered[c.Name] = true
		}
	}
	// Redis 7.0 commands that exist but take no argument worth asking
	// about beyond the ones listed.
	skip := map[string]string{
		"quit": "closes the connection; keyless", "unwatch": "arity 1",
	}
	for _, name := range keyspace.Names() {
		c := keyspace.Resolve(toBytes(strings.Split(name, "|")))
		switch {
		case covered[name], c.Container, c.Arity == 1, skip[name] != "":
			continue
		}
		t.Errorf("%s (arity %d) has no invocation compared with COMMAND GETKEYS", name, c.Arity)
	}
}
