package keyspace

import "strings"

// Agents is what the proxy lets a user who is not an admin (roles agent and
// readonly) do with a command. Every command of the generated table has one,
// recorded below with the reason; TestDecisionsCoverTable fails when Redis
// gains a command nobody has decided about.
type Agents uint8

const (
	// AgentsKeys: allowed; every key, channel and pattern it names is
	// checked against the workspace (and the owner of its kind).
	AgentsKeys Agents = iota
	// AgentsProxy: answered or routed by the proxy itself, never forwarded
	// as sent (connection commands, INFO, the unsubscribe family).
	AgentsProxy
	// AgentsAdmin: admin users only. It reaches beyond one workspace, or
	// changes or reveals state every client shares.
	AgentsAdmin
	// AgentsDangerous: Redis's @dangerous commands that can be confined to
	// a workspace; refused unless keyspace.allow_commands names them.
	AgentsDangerous
	// AgentsScript: server-side code that may touch keys it did not
	// declare; refused unless keyspace.allow_scripts.
	AgentsScript
	// AgentsNever: refused for every user, admins too: it cannot work
	// through a multiplexing proxy, or it would change a connection other
	// clients share.
	AgentsNever
)

func (a Agents) String() string {
	switch a {
	case AgentsProxy:
		return "proxy"
	case AgentsAdmin:
		return "admin"
	case AgentsDangerous:
		return "dangerous"
	case AgentsScript:
		return "script"
	case AgentsNever:
		return "never"
	}
	return "keys"
}

// rule is one line of the decision table: commands (space separated, in
// Redis's lowercase "parent|sub" names), the proxy's routing flags, the
// decision for agents and why.
type rule struct {
	names  string
	flags  Flag
	agents Agents
	why    string
}

// rules is the decision table. Each command appears exactly once.
var rules = []rule{
	// Data commands: they touch only the keys they name.
	{names: "append decr decrby get getdel getex getrange getset incr incrby incrbyfloat lcs mget mset msetnx " +
		"psetex set setex setnx setrange strlen substr " +
		"bitcount bitfield bitfield_ro bitop bitpos getbit setbit " +
		"del dump exists expire expireat expiretime persist pexpire pexpireat pexpiretime pttl rename renamenx " +
		"touch ttl type unlink object|encoding object|freq object|idletime object|refcount memory|usage " +
		"hdel hexists hget hgetall hincrby hincrbyfloat hkeys hlen hmget hmset hrandfield hscan hset hsetnx " +
		"hstrlen hvals " +
		"lindex linsert llen lmove lmpop lpop lpos lpush lpushx lrange lrem lset ltrim rpop rpoplpush rpush rpushx " +
		"sadd scard sdiff sdiffstore sinter sintercard sinterstore sismember smembers smismember smove spop " +
		"srandmember srem sscan sunion sunionstore " +
		"zadd zcard zcount zdiff zdiffstore zincrby zinter zintercard zinterstore zlexcount zmpop zmscore zpopmax " +
		"zpopmin zrandmember zrange zrangebylex zrangebyscore zrangestore zrank zrem zremrangebylex " +
		"zremrangebyrank zremrangebyscore zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion " +
		"zunionstore pfadd pfcount pfmerge " +
		"geoadd geodist geohash geopos georadius georadius_ro georadiusbymember georadiusbymember_ro geosearch " +
		"geosearchstore " +
		"xack xadd xautoclaim xclaim xdel xgroup|create xgroup|createconsumer xgroup|delconsumer xgroup|destroy " +
		"xgroup|setid xinfo|consumers xinfo|groups xinfo|stream xlen xpending xrange xrevrange xsetid xtrim",
		agents: AgentsKeys, why: "reads or writes only the keys it names"},
	// COPY ... DB n writes another database: the policy refuses the DB
	// option for agents (see Policy.Check).
	{names: "copy", agents: AgentsKeys, why: "copies between keys it names, in the connection's database"},
	{names: "blmove blmpop blpop brpop brpoplpush bzmpop bzpopmax bzpopmin", flags: Blocking, agents: AgentsKeys,
		why: "waits on the keys it names, on a connection of its own"},
	{names: "wait", flags: Blocking, agents: AgentsKeys, why: "waits for replicas, on a connection of its own"},
	{names: "xread xreadgroup", flags: BlockingIfArg, agents: AgentsKeys,
		why: "reads the streams it names; with BLOCK on a connection of its own"},
	{names: "scan", agents: AgentsKeys,
		why: "its MATCH is confined to the workspace and its COUNT bounded, so it lists and costs only what the workspace may see"},
	{names: "publish spublish", agents: AgentsKeys,
		why: "publishes on a channel of the workspace; the domain's event channel is refused (events come from writes)"},
	{names: "pubsub|channels pubsub|shardchannels", agents: AgentsKeys,
		why: "lists channels matching a pattern that must stay inside the workspace"},
	{names: "pubsub|numsub pubsub|shardnumsub", agents: AgentsKeys, why: "counts subscribers of channels of the workspace"},
	{names: "subscribe psubscribe ssubscribe", flags: PubSub, agents: AgentsKeys,
		why: "subscribes to channels of the workspace, on a connection of its own for the rest of the session"},
	{names: "multi watch", flags: Transaction, agents: AgentsKeys,
		why: "starts connection state: the client is pinned to a connection of its own until it ends"},
	{names: "exec discard unwatch", agents: AgentsKeys, why: "ends a transaction on the client's pinned connection"},

	// Harmless keyless commands.
	{names: "command", flags: Local, agents: AgentsKeys,
		why: "describes the server's commands; COMMAND DOCS is answered by the proxy on the embedded store"},
	{names: "time lolwut command|count command|docs command|getkeys command|getkeysandflags command|help " +
		"command|info command|list", agents: AgentsKeys, why: "describes the server or its commands, touches no data"},
	{names: "cluster|help cluster|info cluster|keyslot cluster|links cluster|myid cluster|nodes cluster|shards " +
		"cluster|slots", agents: AgentsKeys, why: "describes the cluster's topology, no keys"},
	{names: "client|help function|help latency|help memory|help object|help pubsub|help " +
		"script|help slowlog|help xgroup|help xinfo|help", agents: AgentsKeys, why: "prints help"},
	{names: "script|exists", agents: AgentsKeys, why: "tells whether scripts are cached, changes nothing"},

	// Containers called without a subcommand (arity error) or with one the
	// table does not know: for agents the latter is refused with Redis's
	// own "unknown subcommand" (a newer Redis may know it and do anything).
	{names: "acl config module", agents: AgentsAdmin,
		why: "Redis's users, configuration and modules are for admins, down to HELP"},
	{names: "config|help module|help", agents: AgentsAdmin, why: "help of an admin-only family"},
	{names: "cluster function latency memory object pubsub script slowlog xgroup xinfo",
		agents: AgentsKeys, why: "a command family; its subcommands decide"},
	{names: "client", flags: Local, agents: AgentsKeys,
		why: "a command family; the proxy answers the subcommands about the client's own connection"},

	// Answered or routed by the proxy.
	{names: "ping echo quit hello auth reset select", flags: Local, agents: AgentsProxy,
		why: "connection commands the proxy answers for its client (SELECT of another db pins)"},
	{names: "info", flags: Local, agents: AgentsProxy,
		why: "answered by the proxy: agents see only server-wide fields that reveal no other workspace, plus the proxy's own"},
	{names: "unsubscribe punsubscribe sunsubscribe", flags: Local, agents: AgentsProxy,
		why: "answers once per channel: outside subscriptions the proxy answers, inside them it goes down the client's own connection"},
	{names: "client|setname client|getname client|id client|info client|list", agents: AgentsProxy,
		why: "describes the client's own connection, answered by the proxy (CLIENT LIST: agents see their own connection only)"},
	{names: "client|caching client|getredir client|trackinginfo", agents: AgentsProxy,
		why: "about client-side caching, which lives on the client's own tunnelled connection"},
	{names: "client|tracking", agents: AgentsProxy,
		why: "turns client-side caching on, on a connection of its own; REDIRECT to another connection is refused"},
	{names: "monitor", flags: Tunnel, agents: AgentsAdmin, why: "shows every client's commands, all workspaces"},

	// Admin only: beyond one workspace, or state every client shares.
	{names: "acl|cat acl|deluser acl|dryrun acl|genpass acl|getuser acl|help acl|list acl|load acl|log acl|save " +
		"acl|setuser acl|users acl|whoami", agents: AgentsAdmin, why: "manages Redis's own users"},
	{names: "config|get config|resetstat config|rewrite config|set", agents: AgentsAdmin,
		why: "reads or changes the server's configuration (paths, limits, passwords)"},
	{names: "client|kill client|unblock", agents: AgentsAdmin, why: "acts on another client's connection"},
	{names: "client|pause", agents: AgentsAdmin, why: "stops every client"},
	{names: "client|unpause", flags: Bypass, agents: AgentsAdmin,
		why: "resumes every client; sent on a connection of its own so a paused command cannot hold it back"},
	{names: "client|no-evict", agents: AgentsAdmin,
		why: "changes the state of the connection it runs on: the admin is pinned to a connection of its own"},
	{names: "cluster|addslots cluster|addslotsrange cluster|bumpepoch cluster|count-failure-reports cluster|delslots " +
		"cluster|delslotsrange cluster|failover cluster|flushslots cluster|forget cluster|meet cluster|replicas " +
		"cluster|replicate cluster|reset cluster|saveconfig cluster|set-config-epoch cluster|setslot cluster|slaves",
		agents: AgentsAdmin, why: "administers the cluster"},
	{names: "cluster|countkeysinslot cluster|getkeysinslot", agents: AgentsAdmin,
		why: "counts or lists the keys of a slot, whatever their workspace"},
	{names: "dbsize randomkey", agents: AgentsAdmin, why: "sees keys of every workspace"},
	{names: "flushall flushdb swapdb move", agents: AgentsAdmin, why: "reaches keys of every workspace or another database"},
	{names: "migrate", agents: AgentsAdmin, why: "moves keys to another server (and deletes them here)"},
	{names: "debug pfdebug pfselftest", agents: AgentsAdmin, why: "internal commands that can crash or stall the server"},
	{names: "bgrewriteaof bgsave save lastsave shutdown failover replicaof slaveof role", agents: AgentsAdmin,
		why: "persistence, replication or the server's life"},
	{names: "latency|doctor latency|graph latency|histogram latency|history latency|latest latency|reset " +
		"slowlog|get slowlog|len slowlog|reset memory|doctor memory|malloc-stats memory|stats memory|purge",
		agents: AgentsAdmin, why: "server-wide statistics that show other clients' commands or every workspace's sizes"},
	{names: "module|list module|load module|loadex module|unload", agents: AgentsAdmin, why: "loads code into the server"},
	{names: "function|delete function|dump function|flush function|list function|load function|restore function|stats",
		agents: AgentsAdmin, why: "the server-wide function library, shared by every client"},
	{names: "function|kill script|kill", flags: Bypass, agents: AgentsAdmin,
		why: "stops a running script; sent on a connection of its own so the busy script cannot hold it back"},
	{names: "script|flush", agents: AgentsAdmin, why: "empties the script cache every client shares"},
	{names: "pubsub|numpat", agents: AgentsAdmin, why: "counts pattern subscriptions of every workspace"},

	// @dangerous, confinable: off unless keyspace.allow_commands names them.
	{names: "keys", agents: AgentsDangerous,
		why: "walks the whole keyspace in one call and stalls the server for everyone; use SCAN"},
	{names: "sort sort_ro", agents: AgentsDangerous,
		why: "reads keys built from element values (BY, GET); once allowed, its patterns must name a kind of the workspace before the first *"},
	{names: "restore", agents: AgentsDangerous,
		why: "loads a serialized value; a crafted payload can crash the server for everyone"},

	// Scripts.
	{names: "eval eval_ro evalsha evalsha_ro fcall fcall_ro", agents: AgentsScript,
		why: "server-side code can touch keys it did not declare"},
	{names: "script|load", agents: AgentsScript, why: "adds to the script cache every client shares"},

	// Never, for anyone.
	{names: "sync psync replconf", flags: Unsupported, agents: AgentsNever, why: "speaks the replication protocol"},
	{names: "restore-asking", flags: Unsupported, agents: AgentsNever,
		why: "is cluster-internal (slot migration) and restores a serialized value"},
	{names: "asking readonly readwrite", flags: Unsupported, agents: AgentsNever,
		why: "sets state on the connection it runs on, which other clients share; the proxy handles cluster redirections itself"},
	{names: "script|debug", flags: Unsupported, agents: AgentsNever,
		why: "puts the connection into a debugging session that other clients' commands would enter"},
	{names: "client|reply", flags: Unsupported, agents: AgentsNever,
		why: "would silence replies, and every command gets its reply through the multiplexer in order"},
}

// Confinable reports whether name (a command or "parent|sub") is one of the
// @dangerous commands keyspace.allow_commands may hand to agents.
func Confinable(name string) bool {
	r := decisionOf[name]
	return r != nil && r.agents == AgentsDangerous
}

// ConfinableNames lists them.
func ConfinableNames() []string {
	var out []string
	for _, r := range rules {
		if r.agents == AgentsDangerous {
			out = append(out, strings.Fields(r.names)...)
		}
	}
	return out
}

// decisionOf maps every command name to its rule.
var decisionOf = func() map[string]*rule {
	m := map[string]*rule{}
	for i := range rules {
		for _, n := range strings.Fields(rules[i].names) {
			if m[n] != nil {
				panic("keyspace: command " + n + " decided twice")
			}
			m[n] = &rules[i]
		}
	}
	return m
}()
