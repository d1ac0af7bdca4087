package keyspace_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/keyspace"
)

// extract resolves and extracts a command line (two single quotes stand for an empty argument).
func extract(t *testing.T, line string) (*keyspace.Command, [][]byte, keyspace.Access, error) {
	t.Helper()
	args := toBytes(tokens(line))
	c := keyspace.Resolve(args)
	if c == nil {
		t.Fatalf("%s: unknown command", line)
	}
	var acc keyspace.Access
	err := keyspace.Extract(c, args, &acc)
	return c, args, acc, err
}

func TestExtract(t *testing.T) {
	cases := []struct {
		line              string
		keys, chans, pats []int
		writes            bool
	}{
		{line: "GET k", keys: []int{1}},
		{line: "get k", keys: []int{1}},
		{line: "SET k v", keys: []int{1}, writes: true},
		{line: "MSET a 1 b 2 c 3", keys: []int{1, 3, 5}, writes: true},
		{line: "MGET a b c", keys: []int{1, 2, 3}},
		{line: "DEL a b", keys: []int{1, 2}, writes: true},
		{line: "BLPOP a b 0", keys: []int{1, 2}, writes: true},
		{line: "BITOP AND d a b", keys: []int{2, 3, 4}, writes: true},
		{line: "RENAME a b", keys: []int{1, 2}, writes: true},
		{line: "PING", keys: nil},
		{line: "OBJECT ENCODING k", keys: []int{2}},
		{line: "object encoding k", keys: []int{2}},
		{line: "MEMORY USAGE k SAMPLES 5", keys: []int{2}},
		{line: "XINFO STREAM k FULL", keys: []int{2}},
		{line: "XGROUP CREATE k g $ MKSTREAM", keys: []int{2}, writes: true},
		{line: "XGROUP SETID k g $", keys: []int{2}, writes: true},
		// numkeys forms
		{line: "EVAL s 2 a b x y", keys: []int{3, 4}, writes: true},
		{line: "EVAL s 0 x", keys: nil},
		{line: "EVALSHA sha 1 a", keys: []int{3}, writes: true},
		{line: "EVAL_RO s 1 a x", keys: []int{3}},
		{line: "FCALL f 2 a b", keys: []int{3, 4}, writes: true},
		{line: "FCALL_RO f 1 a", keys: []int{3}},
		{line: "ZUNIONSTORE d 2 a b WEIGHTS 1 2", keys: []int{1, 3, 4}, writes: true},
		{line: "ZINTER 2 a b", keys: []int{2, 3}},
		{line: "ZDIFF 3 a b c WITHSCORES", keys: []int{2, 3, 4}},
		{line: "ZDIFFSTORE d 2 a b", keys: []int{1, 3, 4}, writes: true},
		{line: "SINTERCARD 2 a b LIMIT 1", keys: []int{2, 3}},
		{line: "LMPOP 2 a b LEFT COUNT 2", keys: []int{2, 3}, writes: true},
		{line: "BLMPOP 0 2 a b LEFT", keys: []int{3, 4}, writes: true},
		{line: "ZMPOP 1 a MIN", keys: []int{2}, writes: true},
		{line: "BZMPOP 0 3 a b c MAX", keys: []int{3, 4, 5}, writes: true},
		// keyword forms
		{line: "XREAD COUNT 1 STREAMS a b 0 0", keys: []int{4, 5}},
		{line: "xread streams a 0", keys: []int{2}},
		{line: "XREAD BLOCK 0 STREAMS a b c $ $ $", keys: []int{4, 5, 6}},
		// Redis's key spec of XREADGROUP says RO; the command is flagged Write.
		{line: "XREADGROUP GROUP g c STREAMS a b > >", keys: []int{5, 6}},
		// The consumer may be called STREAMS: the search starts after it.
		{line: "XREADGROUP GROUP g STREAMS STREAMS a >", keys: []int{5}},
		{line: "GEORADIUS k 1 2 3 km", keys: []int{1}},
		{line: "GEORADIUS k 1 2 3 km STORE d", keys: []int{1, 7}, writes: true},
		{line: "GEORADIUS k 1 2 3 km STOREDIST d", keys: []int{1, 7}, writes: true},
		{line: "GEORADIUSBYMEMBER k m 3 km STORE d", keys: []int{1, 6}, writes: true},
		{line: "GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km", keys: []int{1, 2}, writes: true},
		// SORT: STORE is a key (the last one wins), BY and GET are patterns.
		{line: "SORT k", keys: []int{1}},
		{line: "SORT k STORE d", keys: []int{1, 3}, writes: true},
		{line: "SORT k LIMIT 0 1 STORE d1", keys: []int{1, 6}, writes: true},
		{line: "SORT k BY w_* GET o_* GET # STORE d", keys: []int{1, 9}, pats: []int{3, 5}, writes: true},
		{line: "SORT k BY nosort", keys: []int{1}},
		{line: "sort k by NOSORT get #", keys: []int{1}},
		{line: "SORT k LIMIT 0 10 GET o_*", keys: []int{1}, pats: []int{6}},
		// LIMIT's arguments are not options even when they look like one.
		{line: "SORT k LIMIT STORE x", keys: []int{1}},
		{line: "SORT_RO k BY w_* GET o_*", keys: []int{1}, pats: []int{3, 5}},
		// MIGRATE: one key, or the KEYS list with an empty key argument.
		{line: "MIGRATE h 1 k 0 10", keys: []int{3}, writes: true},
		{line: "MIGRATE h 1 k 0 10 COPY REPLACE", keys: []int{3}, writes: true},
		{line: "MIGRATE h 1 '' 0 10 KEYS a b", keys: []int{7, 8}, writes: true},
		{line: "MIGRATE h 1 '' 0 10 AUTH keys KEYS a", keys: []int{9}, writes: true},
		{line: "MIGRATE h 1 '' 0 10 AUTH2 keys keys KEYS a b", keys: []int{10, 11}, writes: true},
		// Without KEYS the empty name is the key Redis migrates (and
		// deletes): it is in no workspace.
		{line: "MIGRATE h 1 '' 0 10", keys: []int{3}, writes: true},
		{line: "MIGRATE h 1 '' 0 10 AUTH KEYS", keys: []int{3}, writes: true},
		// pub/sub
		{line: "PUBLISH ch m", chans: []int{1}},
		{line: "SPUBLISH ch m", chans: []int{1}},
		{line: "SUBSCRIBE a b", chans: []int{1, 2}},
		{line: "SSUBSCRIBE a", chans: []int{1}},
		{line: "UNSUBSCRIBE", chans: nil},
		{line: "UNSUBSCRIBE a", chans: []int{1}},
		{line: "PSUBSCRIBE p* q*", pats: []int{1, 2}},
		{line: "PUNSUBSCRIBE p*", pats: []int{1}},
		{line: "PUBSUB CHANNELS p*", pats: []int{2}},
		{line: "PUBSUB CHANNELS"},
		{line: "PUBSUB SHARDCHANNELS p*", pats: []int{2}},
		{line: "PUBSUB NUMSUB a b", chans: []int{2, 3}},
		{line: "PUBSUB SHARDNUMSUB a", chans: []int{2}},
		{line: "PUBSUB NUMPAT"},
		{line: "KEYS p*", pats: []int{1}},
		{line: "CLIENT TRACKING on BCAST PREFIX a PREFIX b", pats: []int{5, 7}},
		{line: "CLIENT TRACKING on"},
	}
	for _, tc := range cases {
		t.Run(tc.line, func(t *testing.T) {
			_, _, acc, err := extract(t, tc.line)
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if !slices.Equal(acc.Keys, tc.keys) || !slices.Equal(acc.Channels, tc.chans) || !slices.Equal(acc.Patterns, tc.pats) {
				t.Fatalf("keys %v channels %v patterns %v, want %v %v %v", acc.Keys, acc.Channels, acc.Patterns, tc.keys, tc.chans, tc.pats)
			}
			if acc.Writes != tc.writes {
				t.Fatalf("writes %v, want %v", acc.Writes, tc.writes)
			}
		})
	}
}

// TestExtractBadNumkeys: arguments that do not let the keys be found are
// an error, never a guess and never a panic.
func TestExtractBadNumkeys(t *testing.T) {
	// A keyword that introduces keys, given twice: Redis's key spec and the
	// command's own parser disagree about which one counts.
	for _, line := range []string{
		"GEORADIUS k 15 37 500 km STORE own STORE foreign", "GEORADIUS k 15 37 500 km store a STORE b",
		"GEORADIUSBYMEMBER k m 5 km STOREDIST a STOREDIST b", "XREAD STREAMS a STREAMS b 0 0",
		"XREADGROUP GROUP g c STREAMS a streams 0 0", "SORT k STORE d1 STORE d2", "SORT k STORE store d",
		// SORT's parser skips STORE's argument, sortGetKeys does not: it
		// sees LIMIT (skipping the second STORE), SORT writes d.
		"SORT k STORE limit STORE d", "SORT k STORE BY STORE d", "SORT k STORE get GET p:*",
	} {
		if _, _, _, err := extract(t, line); !errors.Is(err, keyspace.ErrAmbiguous) {
			t.Errorf("%s: err %v, want ErrAmbiguous", line, err)
		}
	}
	for _, line := range []string{
		"EVAL s 3 a b", "EVAL s x a", "EVAL s -1 a", "EVAL s '' a", "EVAL s 99999999999999999999 a",
		"ZUNIONSTORE d 5 a b", "ZINTER 3 a b", "LMPOP 4 a b LEFT", "BLMPOP 0 9 a LEFT",
		"FCALL f 2 a", "SINTERCARD 4 a b", "SORT", "MIGRATE h 1 k 0",
		// Forms Redis's key specs cannot resolve: numkeys 0 where keys are
		// mandatory, a keyword-less XREAD.
		"ZUNIONSTORE d 0 a", "LMPOP 0 a LEFT", "SINTERCARD 0 a", "XREAD COUNT 1", "XREAD STREAMS",
	} {
		_, _, _, err := extract(t, line)
		if !errors.Is(err, keyspace.ErrKeys) {
			t.Errorf("%s: err %v, want ErrKeys", line, err)
		}
	}
}

func TestResolveAndLookup(t *testing.T) {
	cases := []struct{ line, want string }{
		{"GET k", "get"}, {"gEt k", "get"}, {"CONFIG GET x", "config|get"}, {"config Get x", "config|get"},
		{"CONFIG", "config"}, {"CONFIG NOSUCH", "config"}, {"OBJECT ENCODING k", "object|encoding"},
		{"XINFO STREAM k", "xinfo|stream"}, {"CLIENT KILL ID 1", "client|kill"}, {"WORKSPACE w", "workspace"},
		{"CONFIG " + strings.Repeat("x", 100), "config"},
	}
	for _, tc := range cases {
		c := keyspace.Resolve(toBytes(tokens(tc.line)))
		if c == nil || c.Name != tc.want {
			t.Errorf("Resolve(%s) = %v, want %s", tc.line, c, tc.want)
		}
	}
	for _, name := range []string{"nosuch", "", strings.Repeat("g", 41), "config|get", "GET\x00"} {
		if c := keyspace.Lookup([]byte(name)); c != nil {
			t.Errorf("Lookup(%q) = %s, want nil", name, c.Name)
		}
		if c := keyspace.Resolve([][]byte{[]byte(name), []byte("x")}); c != nil {
			t.Errorf("Resolve(%q x) = %s, want nil", name, c.Name)
		}
	}
	// Flags of the overlay and from Redis.
	flags := []struct {
		name string
		f    keyspace.Flag
		want bool
	}{
		{"blpop", keyspace.Blocking, true}, {"xread", keyspace.BlockingIfArg, true}, {"multi", keyspace.Transaction, true},
		{"subscribe", keyspace.PubSub, true}, {"monitor", keyspace.Tunnel, true}, {"flushall", keyspace.Admin, true},
		{"set", keyspace.Write, true}, {"get", keyspace.Write, false}, {"eval", keyspace.Script, true},
		{"ping", keyspace.Local, true}, {"workspace", keyspace.Proxy, true}, {"sync", keyspace.Unsupported, true},
		{"keys", keyspace.Admin, false}, {"config", keyspace.Admin, true},
	}
	for _, f := range flags {
		if got := keyspace.Lookup([]byte(f.name)).Has(f.f); got != f.want {
			t.Errorf("%s.Has(%d) = %v, want %v", f.name, f.f, got, f.want)
		}
	}
	// Decisions: a family is decided by its subcommands.
	for line, want := range map[string]keyspace.Agents{
		"CONFIG GET x": keyspace.AgentsAdmin, "KEYS x": keyspace.AgentsDangerous, "RESTORE k 0 p": keyspace.AgentsDangerous,
		"CLIENT NO-EVICT on": keyspace.AgentsAdmin, "ASKING": keyspace.AgentsNever, "GET k": keyspace.AgentsKeys,
		"EVAL s 0": keyspace.AgentsScript, "INFO": keyspace.AgentsProxy, "SCRIPT DEBUG yes": keyspace.AgentsNever,
	} {
		if got := keyspace.Resolve(toBytes(tokens(line))).Agents; got != want {
			t.Errorf("%s: decision %s, want %s", line, got, want)
		}
	}
	var nilCmd *keyspace.Command
	if nilCmd.Has(keyspace.Write) {
		t.Error("nil command has flags")
	}
}

func TestArityOK(t *testing.T) {
	get, mset := keyspace.Lookup([]byte("get")), keyspace.Lookup([]byte("mset"))
	for n, want := range map[int]bool{1: false, 2: true, 3: false} {
		if get.ArityOK(n) != want {
			t.Errorf("get.ArityOK(%d) != %v", n, want)
		}
	}
	for n, want := range map[int]bool{2: false, 3: true, 5: true} {
		if mset.ArityOK(n) != want {
			t.Errorf("mset.ArityOK(%d) != %v", n, want)
		}
	}
}

// TestNames: the table lists every command once, in order, with the
// subcommands of each container reachable through Resolve.
func TestNames(t *testing.T) {
	names := keyspace.Names()
	if len(names) < 300 || !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Fatalf("Names: %d names, sorted %v", len(names), slices.IsSorted(names))
	}
	for _, name := range names {
		c := keyspace.Resolve(toBytes(strings.Split(name, "|")))
		if c == nil || c.Name != name {
			t.Errorf("Resolve(%s) = %v", name, c)
		}
		for _, ks := range c.Keys {
			if ks.Begin == keyspace.BeginIndex && ks.Index < strings.Count(name, "|")+1 {
				t.Errorf("%s: key spec starts at %d, inside the command name", name, ks.Index)
			}
		}
	}
	if keyspace.RedisVersion == "" {
		t.Error("no RedisVersion")
	}
}

// TestExtractNoAlloc: the hot path reuses an Access and does not allocate.
func TestExtractNoAlloc(t *testing.T) {
	lines := []string{"GET deepagents:{a}:kv:x", "MSET a 1 b 2", "XREAD COUNT 1 STREAMS a b 0 0",
		"EVAL s 2 a b", "SORT k BY w_* STORE d", "config get maxmemory", "SUBSCRIBE a b"}
	var acc keyspace.Access
	for _, line := range lines {
		args := toBytes(tokens(line))
		_ = keyspace.Extract(keyspace.Resolve(args), args, &acc) // warm the slices
		n := testing.AllocsPerRun(100, func() {
			c := keyspace.Resolve(args)
			if err := keyspace.Extract(c, args, &acc); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("%s: %.1f allocations per Resolve+Extract", line, n)
		}
	}
}
