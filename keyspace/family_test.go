package keyspace

import (
	"strings"
	"testing"
)

func TestFamilies(t *testing.T) {
	if len(Families) > 32 {
		t.Fatalf("%d families: more than obs.VecLen counts", len(Families))
	}
	for args, want := range map[string]string{
		"get": "string", "hset": "hash", "lpush": "list", "sadd": "set", "zadd": "sortedset", "xadd": "stream",
		"setbit": "bitmap", "pfadd": "hyperloglog", "geoadd": "geo", "publish": "pubsub", "eval": "scripting",
		"multi": "transaction", "ping": "connection", "del": "keyspace", "flushdb": "keyspace", "config get": "server",
		"file.write": "file", "lock.acquire": "lock", "todo.add": "todo", "cache.get": "cache", "events.read": "events",
		"ws.info": "ws", "workspace": "proxy", "proxy info": "proxy", "proxy reload": "proxy", "client setinfo": "server",
	} {
		var argv [][]byte
		for _, a := range strings.Fields(args) {
			argv = append(argv, []byte(a))
		}
		c := Lookup(argv[0]).Sub(argv)
		if got := Families[c.Family()]; got != want {
			t.Errorf("%s: family %s, want %s", args, got, want)
		}
	}
	if Families[(*Command)(nil).Family()] != "unknown" {
		t.Error("a command not in the table is not 'unknown'")
	}
}
