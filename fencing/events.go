package fencing

import "github.com/agentproxy/agentproxy/keyspace"

// Written is a key written by an acknowledged plain write of an evented
// kind: what its event says.
type Written struct {
	WS, Actor, Cmd, Kind, Resource string
	Delete                         bool
	TS                             int64 // unix ms
}

// EventOf is the event of key, written by command name (lowercase) of
// actor, in the key's own workspace; false for a key outside the grammar.
func EventOf(g *keyspace.Grammar, name, actor string, key []byte, now int64) (Written, bool) {
	ws, kind, n := g.Split(key)
	if kind < 0 {
		return Written{}, false
	}
	del := name == "del" || name == "unlink" || name == "getdel"
	return Written{WS: string(ws), Actor: actor, Cmd: name, Kind: g.KindNames()[kind],
		Resource: string(key[n:]), Delete: del, TS: now}, true
}

// WroteNothing reports whether reply says that write name (lowercase) with
// args changed nothing: an error, a nil (SET NX that did not set, a pop
// from an empty list; but SET ... GET answers nil for a key it created), a
// zero from a command whose count says what it changed (zeroUnchanged).
// Its keys then get no event.
func WroteNothing(name string, args [][]byte, reply []byte) bool {
	if len(reply) == 0 || reply[0] == '-' {
		return true
	}
	switch string(reply) {
	case "$-1\r\n", "*-1\r\n", "_\r\n":
		return name != "set" || len(args) < 3 || !keyspace.HasArg(args[3:], "get")
	case ":0\r\n":
		return zeroUnchanged[name]
	case ":-1\r\n":
		return name == "linsert" // the pivot was not found
	}
	return false
}

// zeroUnchanged are the writes whose integer reply 0 means that nothing
// changed (no key deleted, set, moved or expired; no member added or
// removed). A 0 from the others (HSET updating fields, INCRBY to 0, a
// *STORE leaving an empty result) may still have written.
var zeroUnchanged = map[string]bool{
	"del": true, "unlink": true, "setnx": true, "hsetnx": true, "msetnx": true,
	"expire": true, "pexpire": true, "expireat": true, "pexpireat": true, "persist": true,
	"lpushx": true, "rpushx": true, "linsert": true, "renamenx": true, "copy": true, "move": true, "smove": true,
	"sadd": true, "srem": true, "hdel": true, "zrem": true, "lrem": true, "xdel": true, "xtrim": true,
	"zremrangebyscore": true, "zremrangebyrank": true, "zremrangebylex": true, "pfadd": true,
}
