// Command gen writes keyspace/commands_gen.go from a live Redis's own
// command metadata (COMMAND INFO: arity, flags, ACL categories, key specs,
// subcommands), so the proxy's command table matches the server exactly.
//
//	go generate ./keyspace     (starts nothing: needs -addr of a running Redis 7)
//	go run ./keyspace/gen -addr 127.0.0.1:6379 -out keyspace/commands_gen.go
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "address of a running Redis 7")
	out := flag.String("out", "commands_gen.go", "file to write")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: *addr, Protocol: 2})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		log.Fatalf("redis at %s: %v", *addr, err)
	}
	version := field(info, "redis_version")
	raw, err := rdb.Do(ctx, "COMMAND", "INFO").Slice()
	if err != nil {
		log.Fatalf("COMMAND INFO: %v", err)
	}
	var cmds []command
	for _, r := range raw {
		if r == nil {
			continue
		}
		c := parse(r.([]any))
		cmds = append(cmds, c)
		cmds = append(cmds, c.subs...)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	src, err := render(version, cmds)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s: %d commands from Redis %s\n", *out, len(cmds), version)
}

func field(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return "unknown"
}

type command struct {
	name  string
	arity int64
	flags []string
	acl   []string
	keys  []keySpec
	subs  []command
}

type keySpec struct {
	flags      []string
	begin      string
	index      int64
	keyword    string
	startFrom  int64
	find       string
	lastKey    int64
	keyStep    int64
	limit      int64
	keyNumIdx  int64
	firstKey   int64
	keyNumStep int64
}

// parse reads one COMMAND INFO entry (RESP2 shape):
// name, arity, flags, first, last, step, acl, tips, key specs, subcommands.
func parse(e []any) command {
	c := command{name: strings.ToLower(e[0].(string)), arity: e[1].(int64)}
	for _, f := range e[2].([]any) {
		c.flags = append(c.flags, f.(string))
	}
	if len(e) > 6 {
		for _, a := range e[6].([]any) {
			c.acl = append(c.acl, strings.TrimPrefix(a.(string), "@"))
		}
	}
	if len(e) > 8 {
		for _, ks := range e[8].([]any) {
			c.keys = append(c.keys, parseKeySpec(pairs(ks)))
		}
	}
	if len(e) > 9 {
		for _, s := range e[9].([]any) {
			c.subs = append(c.subs, parse(s.([]any)))
		}
	}
	return c
}

func pairs(v any) map[string]any {
	m := map[string]any{}
	l := v.([]any)
	for i := 0; i+1 < len(l); i += 2 {
		m[l[i].(string)] = l[i+1]
	}
	return m
}

func parseKeySpec(m map[string]any) keySpec {
	var k keySpec
	for _, f := range m["flags"].([]any) {
		k.flags = append(k.flags, f.(string))
	}
	b := pairs(m["begin_search"])
	k.begin = b["type"].(string)
	if k.begin == "index" {
		k.index = pairs(b["spec"])["index"].(int64)
	} else if k.begin == "keyword" {
		s := pairs(b["spec"])
		k.keyword = strings.ToLower(s["keyword"].(string))
		k.startFrom = s["startfrom"].(int64)
	}
	f := pairs(m["find_keys"])
	k.find = f["type"].(string)
	if k.find == "range" {
		s := pairs(f["spec"])
		k.lastKey, k.keyStep, k.limit = s["lastkey"].(int64), s["keystep"].(int64), s["limit"].(int64)
	} else if k.find == "keynum" {
		s := pairs(f["spec"])
		k.keyNumIdx, k.firstKey, k.keyNumStep = s["keynumidx"].(int64), s["firstkey"].(int64), s["keystep"].(int64)
	}
	return k
}

func goFlags(prefix string, names []string, known map[string]bool) string {
	var parts []string
	for _, n := range names {
		id := prefix + camel(n)
		if known != nil && !known[n] {
			continue
		}
		parts = append(parts, id)
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "|")
}

func camel(s string) string {
	var b strings.Builder
	up := true
	for _, r := range s {
		if r == '_' || r == '-' || r == '@' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}

// The flags the keyspace package declares constants for.
var (
	cmdFlags = map[string]bool{"write": true, "readonly": true, "denyoom": true, "admin": true, "pubsub": true,
		"noscript": true, "blocking": true, "loading": true, "stale": true, "skip_monitor": true, "skip_slowlog": true,
		"asking": true, "fast": true, "no_auth": true, "may_replicate": true, "sentinel": true, "only_sentinel": true,
		"no_mandatory_keys": true, "no_async_loading": true, "no_multi": true, "movablekeys": true, "allow_busy": true, "module": true}
	aclCats = map[string]bool{"keyspace": true, "read": true, "write": true, "set": true, "sortedset": true, "list": true,
		"hash": true, "string": true, "bitmap": true, "hyperloglog": true, "geo": true, "stream": true, "pubsub": true,
		"admin": true, "fast": true, "slow": true, "blocking": true, "dangerous": true, "connection": true,
		"transaction": true, "scripting": true}
	keyFlags = map[string]bool{"RW": true, "RO": true, "OW": true, "RM": true, "access": true, "update": true,
		"insert": true, "delete": true, "not_key": true, "incomplete": true, "variable_flags": true}
)

func render(version string, cmds []command) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by go run ./keyspace/gen from Redis %s; DO NOT EDIT.\n\n", version)
	fmt.Fprintf(&b, "package keyspace\n\n")
	fmt.Fprintf(&b, "// RedisVersion is the Redis whose COMMAND INFO generated this table.\nconst RedisVersion = %q\n\n", version)
	fmt.Fprintf(&b, "var generated = []Spec{\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "\t{Name: %q, Arity: %d, Redis: %s, ACL: %s", c.name, c.arity,
			goFlags("R", c.flags, cmdFlags), goFlags("ACL", c.acl, aclCats))
		if len(c.keys) > 0 {
			fmt.Fprintf(&b, ", Keys: []KeySpec{")
			for _, k := range c.keys {
				fmt.Fprintf(&b, "{Flags: %s", goFlags("K", k.flags, keyFlags))
				switch k.begin {
				case "index":
					fmt.Fprintf(&b, ", Begin: BeginIndex, Index: %d", k.index)
				case "keyword":
					fmt.Fprintf(&b, ", Begin: BeginKeyword, Keyword: %q, StartFrom: %d", k.keyword, k.startFrom)
				default:
					fmt.Fprintf(&b, ", Begin: BeginUnknown")
				}
				switch k.find {
				case "range":
					fmt.Fprintf(&b, ", Find: FindRange, LastKey: %d, KeyStep: %d, Limit: %d", k.lastKey, k.keyStep, k.limit)
				case "keynum":
					fmt.Fprintf(&b, ", Find: FindKeynum, KeyNumIdx: %d, FirstKey: %d, KeyStep: %d", k.keyNumIdx, k.firstKey, k.keyNumStep)
				default:
					fmt.Fprintf(&b, ", Find: FindUnknown")
				}
				fmt.Fprintf(&b, "},")
			}
			fmt.Fprintf(&b, "}")
		}
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, ", Container: true")
		}
		fmt.Fprintf(&b, "},\n")
	}
	fmt.Fprintf(&b, "}\n")
	return format.Source(b.Bytes())
}
