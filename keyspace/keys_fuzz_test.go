package keyspace_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
)

// fuzzWords are substituted for an argument written "@N": keys of the
// connection's workspace, of another one and of none, channels, patterns,
// and the option words that steer key extraction.
var fuzzWords = []string{
	"deepagents:{a}:kv:x", "deepagents:{b}:kv:x", "deepagents:{a}:bogus", "plain", "deepagents:{a}:events",
	"deepagents:{b}:events", "deepagents:{a}:*", "*", "", "1", "2", "0", "STREAMS", "STORE", "KEYS", "BY", "GET",
	"STOREDIST", "LIMIT", "AUTH", "deepagents:{a}", "deepagents:{ab}:kv", "#", "nosort", "3", "BCAST", "PREFIX",
	"AUTH2", "GROUP", "deepagents:{a}:events:x", "-1", "99999999999", "deepagents:{a}:todos", "NUMKEYS",
}

// fuzzArgs builds an argument vector: a real command (and subcommand)
// from the table chosen by cmd, then data's lines; "@N" lines become
// fuzzWords[N]. With rawName the first line replaces the command name.
func fuzzArgs(cmd uint16, rawName bool, data []byte) [][]byte {
	names := keyspace.Names()
	var args [][]byte
	if !rawName {
		for _, part := range strings.Split(names[int(cmd)%len(names)], "|") {
			args = append(args, []byte(strings.ToUpper(part)))
		}
	}
	if len(data) == 0 && len(args) > 0 {
		return args
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) > 1 && line[0] == '@' {
			n := 0
			for _, c := range line[1:] {
				if c < '0' || c > '9' || n > 1000 {
					n = -1
					break
				}
				n = n*10 + int(c-'0')
			}
			if n >= 0 {
				line = []byte(fuzzWords[n%len(fuzzWords)])
			}
		}
		args = append(args, line)
	}
	return args
}

func seedCommand(name string, lines ...string) (uint16, []byte) {
	i := slices.Index(keyspace.Names(), name)
	if i < 0 {
		panic("no command " + name)
	}
	return uint16(i), []byte(strings.Join(lines, "\n"))
}

func addSeeds(f *testing.F) {
	seeds := [][]string{
		{"get", "@0"}, {"get", "@1"}, {"mset", "@0", "v", "@1", "v"}, {"del", "@0", "@2", "@3"},
		{"eval", "s", "@10", "@0", "@1"}, {"eval", "s", "@30", "@0"}, {"eval", "s", "@31", "@0"},
		{"evalsha", "s", "@9", "@1"}, {"fcall", "f", "@11"}, {"fcall_ro", "f", "@9", "@2"},
		{"zunionstore", "@0", "@10", "@0", "@1"}, {"zinter", "@24", "@0", "@0", "@1"},
		{"zdiffstore", "@1", "@9", "@0"}, {"lmpop", "@10", "@0", "@1", "LEFT"}, {"blmpop", "0", "@9", "@1", "LEFT"},
		{"bzmpop", "0", "@10", "@0", "@21", "MIN"}, {"sintercard", "@10", "@0", "@1", "LIMIT", "1"},
		{"xread", "COUNT", "1", "@12", "@0", "@1", "0", "0"}, {"xread", "@12", "@12", "@1", "0"},
		{"xreadgroup", "@28", "g", "@12", "@12", "@1", ">"}, {"xreadgroup", "@28", "g", "c", "@12", "@0", ">"},
		{"georadius", "@0", "1", "2", "3", "km", "@13", "@1"}, {"georadius", "@0", "1", "2", "3", "km", "@17", "@1"},
		{"georadiusbymember", "@0", "m", "3", "km", "@13"}, {"geosearchstore", "@1", "@0", "FROMMEMBER", "m"},
		{"sort", "@0", "@15", "@7", "@16", "@22", "@13", "@1"}, {"sort", "@0", "@18", "@13", "@1", "@13", "@1"},
		{"sort", "@0", "@13", "@13", "@1"}, {"sort_ro", "@0", "@16", "@6"}, {"sort", "@0", "@15", "@23"},
		{"migrate", "h", "1", "@8", "0", "10", "@14", "@0", "@1"}, {"migrate", "h", "1", "@8", "0", "10"},
		{"migrate", "h", "1", "@8", "0", "10", "@19", "@14"}, {"migrate", "h", "1", "@1", "0", "10", "@14", "@0"},
		{"migrate", "h", "1", "@8", "0", "10", "@27", "u", "@14", "@14", "@1"},
		{"object|encoding", "@1"}, {"memory|usage", "@1", "SAMPLES", "5"}, {"xinfo|stream", "@1"},
		{"xgroup|create", "@1", "g", "$"}, {"bitop", "AND", "@0", "@0", "@1"},
		{"subscribe", "@4", "@5"}, {"ssubscribe", "@29"}, {"psubscribe", "@6", "@7"}, {"publish", "@5", "m"},
		{"spublish", "@4", "m"}, {"unsubscribe", "@5"}, {"punsubscribe", "@7"}, {"pubsub|channels"},
		{"pubsub|channels", "@7"}, {"pubsub|numsub", "@4", "@5"}, {"pubsub|shardchannels", "@6"},
		{"keys", "@7"}, {"keys", "@6"}, {"keys", "@20"}, {"client|tracking", "on", "@25"},
		{"client|tracking", "on", "@25", "@26", "@6", "@26", "@7"}, {"scan", "0"}, {"rename", "@0", "@1"},
		{"copy", "@0", "@1"}, {"blpop", "@0", "@1", "0"}, {"lmove", "@0", "@1", "LEFT", "RIGHT"},
		{"flushall"}, {"config|set", "x", "y"}, {"set", "@0", "v", "GET"}, {"bitfield", "@1", "GET", "u8", "0"},
		{"get", "deepagents:{a}:kv\x00\xff"}, {"get", "deepagents:{a}:kv\r\n"},
	}
	for _, s := range seeds {
		cmd, data := seedCommand(s[0], s[1:]...)
		f.Add(cmd, uint8(0), data)
		f.Add(cmd, uint8(1), data)
	}
	f.Add(uint16(0), uint8(0x80), []byte("GET\n@0"))
	f.Add(uint16(0), uint8(0x80), []byte("\xff\xfe\n@1"))
	f.Add(uint16(0), uint8(0x80), []byte(strings.Repeat("x", 50)+"\n@1"))
	f.Add(uint16(0), uint8(0x80), []byte(""))
}

// FuzzExtract: for any argument vector of a real command, Extract neither
// panics nor returns an index that is not an argument, never points into
// the command name, and agrees with Redis's own key-spec algorithm.
func FuzzExtract(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, cmd uint16, flags uint8, data []byte) {
		args := fuzzArgs(cmd, flags&0x80 != 0, data)
		if len(args) == 0 {
			return
		}
		c := keyspace.Resolve(args)
		if c == nil {
			return
		}
		nameLen := 1 + strings.Count(c.Name, "|")
		var acc keyspace.Access
		err := keyspace.Extract(c, args, &acc)
		if err != nil {
			if len(acc.Keys)+len(acc.Channels)+len(acc.Patterns) > 0 && !strings.Contains(err.Error(), "keys") {
				t.Fatalf("%q: error %v", args, err)
			}
			return
		}
		for _, list := range [][]int{acc.Keys, acc.Channels, acc.Patterns} {
			for _, i := range list {
				if i < nameLen || i >= len(args) {
					t.Fatalf("%q (%s): index %d outside [%d,%d): %+v", args, c.Name, i, nameLen, len(args), acc)
				}
			}
		}
		for _, list := range [][]int{acc.Keys, acc.Channels, acc.Patterns} {
			seen := map[int]bool{}
			for _, i := range list {
				if seen[i] {
					t.Fatalf("%q (%s): index %d twice: %+v", args, c.Name, i, acc)
				}
				seen[i] = true
			}
		}
		for _, i := range acc.Keys {
			if slices.Contains(acc.Patterns, i) || slices.Contains(acc.Channels, i) {
				t.Fatalf("%q: argument %d is a key and a pattern or channel", args, i)
			}
		}
		// Every key Redis would take (by its key specs, or for SORT and
		// MIGRATE by how the command parses its arguments) is found.
		if want, ok := redisKeys(c, args); ok {
			for _, i := range want {
				if !slices.Contains(acc.Keys, i) {
					t.Fatalf("%q (%s): Redis takes argument %d as a key; Extract found %v", args, c.Name, i, acc.Keys)
				}
			}
			if !special(c.Name) && !slices.Equal(want, acc.Keys) {
				t.Fatalf("%q (%s): Redis key specs give %v, Extract %v", args, c.Name, want, acc.Keys)
			}
		}
	})
}

// FuzzEnforce: whatever an agent of workspace "a" sends, a command the
// policy lets through touches only keys and channels of "a" and patterns
// that stay inside it, by Extract's account and by Redis's.
func FuzzEnforce(f *testing.F) {
	addSeeds(f)
	pols := map[bool]*policy.Policy{}
	for _, scripts := range []bool{false, true} {
		p, err := policy.New(policy.Config{Prefix: "deepagents", Kinds: keyspace.DefaultKinds, Mode: "enforce",
			AllowScripts: scripts, DefaultWS: "a"})
		if err != nil {
			f.Fatal(err)
		}
		pols[scripts] = p
	}
	f.Fuzz(func(t *testing.T, cmd uint16, flags uint8, data []byte) {
		args := fuzzArgs(cmd, flags&0x80 != 0, data)
		if len(args) == 0 {
			return
		}
		p := pols[flags&1 != 0]
		id := &policy.Identity{Role: policy.RoleAgent, Workspace: "a"}
		if flags&2 != 0 {
			id.Role = policy.RoleReadonly
		}
		// The proxy's order: unknown commands, local answers and wrong
		// arity never reach Check; neither do unfindable keys.
		c := keyspace.Resolve(args)
		if c == nil || c.Has(keyspace.Local) || !c.ArityOK(len(args)) {
			return
		}
		var acc keyspace.Access
		if keyspace.Extract(c, args, &acc) != nil {
			return
		}
		v, msg := p.Check(id, c, args, &acc)
		if v != policy.Allow {
			if msg == "" {
				t.Fatalf("%q: refused without a message", args)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("%q: message with a line break: %q", args, msg)
			}
			return
		}
		if id.Role == policy.RoleReadonly && (c.Has(keyspace.Write) || acc.Writes) {
			t.Fatalf("%q: read-only user allowed %s, which writes", args, c.Name)
		}
		if c.Has(keyspace.Admin) {
			t.Fatalf("%q: agent allowed admin command %s", args, c.Name)
		}
		if c.Has(keyspace.Script) && !p.AllowScripts {
			t.Fatalf("%q: script %s allowed", args, c.Name)
		}
		g := p.Grammar
		for _, i := range acc.Keys {
			if g.Key(args[i], "a") != keyspace.OK {
				t.Fatalf("%q: allowed with key %q", args, args[i])
			}
		}
		if c.Name != "unsubscribe" && c.Name != "sunsubscribe" {
			for _, i := range acc.Channels {
				if g.Channel(args[i], "a") != keyspace.OK {
					t.Fatalf("%q: allowed with channel %q", args, args[i])
				}
			}
		}
		if c.Name != "punsubscribe" {
			for _, i := range acc.Patterns {
				if !bytes.HasPrefix(args[i], []byte(g.WorkspacePrefix("a"))) {
					t.Fatalf("%q: allowed with pattern %q", args, args[i])
				}
			}
		}
		// Independently of Extract: what Redis would touch.
		if want, ok := redisKeys(c, args); ok {
			for _, i := range want {
				if g.Key(args[i], "a") != keyspace.OK {
					t.Fatalf("%q: allowed, but Redis takes %q as a key", args, args[i])
				}
			}
		}
		chans, pats, refuse := redisNames(c.Name, args)
		if refuse {
			t.Fatalf("%q: allowed %s, which reaches every workspace", args, c.Name)
		}
		for _, i := range chans {
			if g.Channel(args[i], "a") != keyspace.OK {
				t.Fatalf("%q: allowed, but Redis takes %q as a channel", args, args[i])
			}
		}
		for _, i := range pats {
			if !bytes.HasPrefix(args[i], []byte(g.WorkspacePrefix("a"))) {
				t.Fatalf("%q: allowed, but Redis matches with %q", args, args[i])
			}
		}
	})
}

// special commands are those whose keys Extract finds by their own
// parsing rather than by key specs.
func special(name string) bool {
	switch name {
	case "sort", "sort_ro", "migrate":
		return true
	}
	return false
}

// redisKeys is an independent account of the keys Redis takes: its
// getKeysUsingKeySpecs (db.c, Redis 7.0) for ordinary commands, and how
// sortCommand and migrateCommand parse their arguments. ok is false when
// Redis could not tell (it would fall back, or reject the command).
func redisKeys(c *keyspace.Command, args [][]byte) ([]int, bool) {
	switch c.Name {
	case "sort", "sort_ro":
		keys, _, ok := redisSort(args, c.Name == "sort_ro")
		return keys, ok
	case "migrate":
		return redisMigrate(args)
	}
	argc := len(args)
	keys := []int{}
	for _, ks := range c.Keys {
		if ks.Flags&keyspace.KNotKey != 0 {
			continue
		}
		first := 0
		switch ks.Begin {
		case keyspace.BeginIndex:
			first = ks.Index
		case keyspace.BeginKeyword:
			start, end := ks.StartFrom, argc-1
			if ks.StartFrom <= 0 {
				start, end = argc+ks.StartFrom, 1
			}
			for i := start; i != end; {
				if i >= argc || i < 1 {
					break
				}
				if strings.EqualFold(string(args[i]), ks.Keyword) {
					first = i + 1
					break
				}
				if start <= end {
					i++
				} else {
					i--
				}
			}
			if first == 0 {
				continue
			}
		default:
			return nil, false
		}
		var last, step int
		switch ks.Find {
		case keyspace.FindRange:
			step = ks.KeyStep
			switch {
			case ks.LastKey >= 0:
				last = first + ks.LastKey
			case ks.Limit == 0:
				last = argc + ks.LastKey
			default:
				last = first + ((argc-first)/ks.Limit + ks.LastKey)
			}
		case keyspace.FindKeynum:
			step = ks.KeyStep
			if ks.KeyNumIdx >= argc || first+ks.KeyNumIdx >= argc {
				return nil, false
			}
			n, ok := string2ll(args[first+ks.KeyNumIdx])
			if !ok || n < 0 {
				return nil, false
			}
			first += ks.FirstKey
			last = first + int(int32(n)) - 1 // C: (int)numkeys
		default:
			return nil, false
		}
		if last >= argc || last < first || first >= argc || step <= 0 {
			return nil, false
		}
		for i := first; i <= last; i += step {
			keys = append(keys, i)
		}
		if ks.Flags&keyspace.KIncomplete != 0 {
			return nil, false
		}
	}
	return keys, true
}

// string2ll accepts what Redis's string2ll does: an optional minus and
// decimal digits without leading zeros, within int64.
func string2ll(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// redisSort follows sortCommandGeneric's parsing: the sorted key, the
// (last) STORE key, and the BY and GET patterns it looks keys up with.
// ok is false for a syntax error (Redis runs nothing).
func redisSort(args [][]byte, readonly bool) (keys, patterns []int, ok bool) {
	if len(args) < 2 {
		return nil, nil, false
	}
	keys = []int{1}
	store := -1
	for j := 2; j < len(args); j++ {
		left := len(args) - j - 1
		a := strings.ToLower(string(args[j]))
		switch {
		case a == "asc" || a == "desc" || a == "alpha":
		case a == "limit" && left >= 2:
			j += 2
		case a == "store" && left >= 1 && !readonly:
			store = j + 1
			j++
		case (a == "by" || a == "get") && left >= 1:
			p := args[j+1]
			if a == "get" && !bytes.Equal(p, []byte("#")) || a == "by" && bytes.IndexByte(p, '*') >= 0 {
				patterns = append(patterns, j+1)
			}
			j++
		default:
			return nil, nil, false
		}
	}
	if store >= 0 {
		keys = append(keys, store)
	}
	return keys, patterns, true
}

// redisMigrate follows migrateCommand's parsing.
func redisMigrate(args [][]byte) ([]int, bool) {
	if len(args) < 6 {
		return nil, false
	}
	first, num := 3, 1
	for j := 6; j < len(args); j++ {
		more := len(args) - 1 - j
		switch strings.ToLower(string(args[j])) {
		case "copy", "replace":
		case "auth":
			if more < 1 {
				return nil, false
			}
			j++
		case "auth2":
			if more < 2 {
				return nil, false
			}
			j += 2
		case "keys":
			if len(args[3]) != 0 {
				return nil, false
			}
			first, num = j+1, len(args)-j-1
			j = len(args)
		default:
			return nil, false
		}
	}
	keys := []int{}
	for i := first; i < first+num; i++ {
		keys = append(keys, i)
	}
	return keys, true
}

// redisNames lists, independently of Extract, the channels and patterns a
// pub/sub or pattern command makes Redis use; refuse is set for the
// commands that reach every workspace when given no pattern.
func redisNames(name string, args [][]byte) (chans, pats []int, refuse bool) {
	span := func(from int) []int {
		var out []int
		for i := from; i < len(args); i++ {
			out = append(out, i)
		}
		return out
	}
	switch name {
	case "subscribe", "ssubscribe", "publish", "spublish":
		if name == "publish" || name == "spublish" {
			return []int{1}, nil, false
		}
		return span(1), nil, false
	case "psubscribe":
		return nil, span(1), false
	case "pubsub|numsub", "pubsub|shardnumsub":
		return span(2), nil, false
	case "pubsub|channels", "pubsub|shardchannels":
		if len(args) < 3 {
			return nil, nil, true
		}
		return nil, []int{2}, false
	case "keys":
		return nil, []int{1}, false
	case "sort", "sort_ro":
		_, pats, _ := redisSort(args, name == "sort_ro")
		return nil, pats, false
	case "client|tracking":
		bcast := false
		for i := 3; i < len(args); i++ { // CLIENT TRACKING on|off [options]
			switch strings.ToLower(string(args[i])) {
			case "bcast":
				bcast = true
			case "prefix":
				if i+1 < len(args) {
					pats = append(pats, i+1)
					i++
				}
			case "redirect":
				i++
			}
		}
		return nil, pats, bcast && len(pats) == 0
	}
	return nil, nil, false
}
