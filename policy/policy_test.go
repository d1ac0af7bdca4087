package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
)

const (
	own     = "deepagents:{a}:kv:x"
	own2    = "deepagents:{a}:kv:y"
	domain  = "deepagents:{a}:todos"
	foreign = "deepagents:{b}:kv:x"
	badKind = "deepagents:{a}:nope:x"
	bare    = "todos"
	ownCh   = "deepagents:{a}:events"
)

func newPolicy(t *testing.T, mode string, allowScripts bool, allow ...string) *policy.Policy {
	t.Helper()
	p, err := policy.New(policy.Config{Prefix: "deepagents", Kinds: keyspace.DefaultKinds, Mode: mode,
		AllowScripts: allowScripts, DefaultWS: "a", DefaultRole: "agent", AllowCommands: allow})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	agent    = &policy.Identity{Role: policy.RoleAgent, Workspace: "a"}
	readonly = &policy.Identity{Role: policy.RoleReadonly, Workspace: "a"}
	admin    = &policy.Identity{Role: policy.RoleAdmin, Workspace: "a"}
)

func argv(line string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(line) {
		if f == "''" {
			f = ""
		}
		out = append(out, []byte(f))
	}
	return out
}

// check runs a command line through the table, Extract and Check as the
// proxy does.
func check(t *testing.T, p *policy.Policy, id *policy.Identity, line string) (policy.Verdict, string) {
	t.Helper()
	args := argv(line)
	c := keyspace.Resolve(args)
	if c == nil {
		t.Fatalf("%s: unknown command", line)
	}
	if !c.ArityOK(len(args)) {
		t.Fatalf("%s: wrong arity for %s", line, c.Name)
	}
	var acc keyspace.Access
	if err := keyspace.Extract(c, args, &acc); err != nil {
		t.Fatalf("%s: Extract: %v", line, err)
	}
	return p.Check(id, c, args, &acc)
}

func verdictName(v policy.Verdict) string {
	switch v {
	case policy.Allow:
		return "Allow"
	case policy.Refuse:
		return "Refuse"
	case policy.WarnOK:
		return "WarnOK"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

type checkCase struct {
	line string
	want policy.Verdict
	msg  string // exact message; "" means none expected (Allow) or not compared when prefixed by "~"
}

func runCases(t *testing.T, p *policy.Policy, id *policy.Identity, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.line, func(t *testing.T) {
			v, msg := check(t, p, id, tc.line)
			if v != tc.want {
				t.Fatalf("verdict %s (%q), want %s", verdictName(v), msg, verdictName(tc.want))
			}
			switch {
			case strings.HasPrefix(tc.msg, "~"):
				if !strings.HasPrefix(msg, tc.msg[1:]) {
					t.Fatalf("message %q, want it to start with %q", msg, tc.msg[1:])
				}
			case msg != tc.msg:
				t.Fatalf("message %q, want %q", msg, tc.msg)
			}
		})
	}
}

func TestCheckAgent(t *testing.T) {
	p := newPolicy(t, "enforce", false)
	runCases(t, p, agent, []checkCase{
		{"GET " + own, policy.Allow, ""},
		{"SET " + own2 + " v", policy.Allow, ""},
		{"MSET " + own + " 1 " + own2 + " 2", policy.Allow, ""},
		{"GET " + foreign, policy.Refuse, "NOPERM key 'deepagents:{b}:kv:x' is outside workspace 'a'; keys must start with deepagents:{a}:"},
		{"GET " + bare, policy.Refuse, "NOPERM key 'todos' is outside workspace 'a'; keys must start with deepagents:{a}:"},
		{"GET " + badKind, policy.Refuse, "BADKEY key 'deepagents:{a}:nope:x' does not follow the key grammar: use deepagents:{a}:<kind>[:<rest>] with kind one of todos, todo, files, cache, events, lock, fence, kv"},
		{"GET deepagents:{a}:", policy.Refuse, "~BADKEY key 'deepagents:{a}:' does not follow"},
		// One foreign key among many is enough.
		{"MGET " + own + " " + own2 + " " + foreign, policy.Refuse, "~NOPERM key 'deepagents:{b}:kv:x'"},
		{"MSET " + own + " " + foreign + " " + foreign + " v", policy.Refuse, "~NOPERM key 'deepagents:{b}:kv:x'"},
		{"RENAME " + own + " " + foreign, policy.Refuse, "~NOPERM"},
		{"COPY " + own + " " + foreign, policy.Refuse, "~NOPERM"},
		{"LMOVE " + own + " " + foreign + " LEFT RIGHT", policy.Refuse, "~NOPERM"},
		{"ZUNIONSTORE " + own + " 2 " + own2 + " " + foreign, policy.Refuse, "~NOPERM"},
		{"ZUNIONSTORE " + own + " 2 " + own2 + " " + own, policy.Allow, ""},
		{"BITOP AND " + own + " " + own2 + " " + foreign, policy.Refuse, "~NOPERM"},
		{"XREAD COUNT 1 STREAMS " + own + " " + foreign + " 0 0", policy.Refuse, "~NOPERM"},
		{"XREADGROUP GROUP g c STREAMS " + own + " >", policy.Allow, ""},
		{"GEORADIUS " + own + " 1 2 3 km STORE " + foreign, policy.Refuse, "~NOPERM"},
		{"GEOSEARCHSTORE " + foreign + " " + own + " FROMMEMBER m BYRADIUS 1 km", policy.Refuse, "~NOPERM"},
		{"LMPOP 2 " + own + " " + foreign + " LEFT", policy.Refuse, "~NOPERM"},
		{"BZMPOP 0 1 " + own + " MIN", policy.Allow, ""},
		{"OBJECT ENCODING " + foreign, policy.Refuse, "~NOPERM"},
		{"MEMORY USAGE " + foreign, policy.Refuse, "~NOPERM"},
		{"XINFO STREAM " + foreign, policy.Refuse, "~NOPERM"},
		{"XGROUP CREATE " + foreign + " g $", policy.Refuse, "~NOPERM"},
		{"MIGRATE h 1 '' 0 10 KEYS " + own + " " + foreign, policy.Refuse, "~NOPERM"},
		// @dangerous commands are refused unless keyspace.allow_commands.
		{"SORT " + own, policy.Refuse, "~NOPERM 'sort' is refused for agents: it reads keys built from element values"},
		{"KEYS deepagents:{a}:*", policy.Refuse, "~NOPERM 'keys' is refused for agents: it walks the whole keyspace"},
		{"RESTORE " + own + " 0 payload", policy.Refuse, "~NOPERM 'restore' is refused for agents"},
		// Kinds owned by the domain: raw writes refused, reads allowed,
		// except a lock's record and counter.
		{"SET " + domain + " v", policy.Refuse, "NOPERM key 'deepagents:{a}:todos' is written only by the domain commands (kind 'todos' is owned by the domain); use TODO.REPLACE, TODO.ADD, TODO.UPDATE, TODO.CLAIM or TODO.REMOVE"},
		{"GET " + domain, policy.Allow, ""},
		{"DEL deepagents:{a}:fence:r", policy.Refuse, "~NOPERM key 'deepagents:{a}:fence:r' is written only by the domain commands"},
		{"GET deepagents:{a}:fence:r", policy.Refuse, "~NOPERM key 'deepagents:{a}:fence:r' holds a lock's holder and token"},
		{"HGETALL deepagents:{a}:lock:r", policy.Refuse, "~NOPERM key 'deepagents:{a}:lock:r' holds a lock's"},
		{"HSET deepagents:{a}:files:/x size 999", policy.Refuse, "~NOPERM key 'deepagents:{a}:files:/x' is written only by the domain commands (kind 'files'"},
		{"XADD deepagents:{a}:events:log * event forged", policy.Refuse, "~NOPERM key 'deepagents:{a}:events:log' is written only"},
		{"COPY " + own + " deepagents:{a}:cache:t:h", policy.Refuse, "~NOPERM key 'deepagents:{a}:cache:t:h' is written only"},
		{"COPY deepagents:{a}:cache:t:h " + own, policy.Allow, ""},
		{"COPY " + own + " " + own2 + " DB 1", policy.Refuse, "~NOPERM COPY ... DB writes another database"},
		{"RENAME deepagents:{a}:files:/x " + own, policy.Refuse, "~NOPERM key 'deepagents:{a}:files:/x' is written only"},
		{"SUNIONSTORE " + own + " deepagents:{a}:todo:1 " + own2, policy.Allow, ""},
		{"PUBLISH " + ownCh + " forged", policy.Refuse, "~NOPERM channel 'deepagents:{a}:events' is the workspace's event feed"},
		{"CLIENT NOSUCH x", policy.Refuse, "ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP."},
		{"ASKING", policy.Refuse, "~ERR 'asking' is not supported through agentproxy"},
	})
	runCases(t, newPolicy(t, "enforce", false, "sort", "sort_ro", "keys"), agent, []checkCase{
		// SORT: the STORE destination is a key, BY and GET are patterns.
		{"SORT " + own + " STORE " + foreign, policy.Refuse, "~NOPERM key"},
		{"SORT " + own + " BY deepagents:{a}:kv:w_* GET deepagents:{a}:kv:o_* GET # STORE " + own2, policy.Allow, ""},
		{"SORT " + own + " BY w_*", policy.Refuse, "NOPERM pattern 'w_*' of 'sort' reaches outside workspace 'a'; patterns must start with deepagents:{a}:"},
		{"SORT " + own + " GET deepagents:{b}:kv:*", policy.Refuse, "~NOPERM pattern"},
		{"SORT " + own + " BY nosort", policy.Allow, ""},
		// A pattern's kind must be spelt out: the element replaces the *.
		{"SORT " + own + " GET deepagents:{a}:*", policy.Refuse, "~NOPERM pattern 'deepagents:{a}:*' of SORT may build keys of any kind"},
		{"SORT " + own + " GET deepagents:{a}:l*", policy.Refuse, "~NOPERM pattern 'deepagents:{a}:l*' of SORT"},
		{"SORT " + own + " GET deepagents:{a}:lock:*", policy.Refuse, "~NOPERM key 'deepagents:{a}:lock:*' holds a lock's"},
		{"SORT_RO " + own + " BY deepagents:{a}:kv:*->f", policy.Allow, ""},
		// KEYS is not admin: its pattern must stay in the workspace.
		{"KEYS deepagents:{a}:*", policy.Allow, ""},
		{"KEYS deepagents:{a}:kv:*", policy.Allow, ""},
		{"KEYS *", policy.Refuse, "NOPERM pattern '*' of 'keys' reaches outside workspace 'a'; patterns must start with deepagents:{a}:"},
		{"KEYS deepagents:{b}:*", policy.Refuse, "~NOPERM pattern"},
		{"KEYS deepagents:{a*", policy.Refuse, "~NOPERM pattern"},
		{"KEYS deepagents:?a}:*", policy.Refuse, "~NOPERM pattern"},
		{"KEYS deepagents:[{]a}:*", policy.Refuse, "~NOPERM pattern"},
		// Channels and channel patterns.
		{"SUBSCRIBE " + ownCh + " " + ownCh + ":sub", policy.Allow, ""},
		{"SUBSCRIBE " + ownCh + " deepagents:{b}:events", policy.Refuse, "NOPERM channel 'deepagents:{b}:events' is outside workspace 'a'; channels must start with deepagents:{a}:events"},
		{"SUBSCRIBE deepagents:{a}:kv", policy.Refuse, "BADKEY channel 'deepagents:{a}:kv' does not follow the grammar: use deepagents:{a}:events[:<rest>]"},
		{"SUBSCRIBE deepagents:{a}:eventsx", policy.Refuse, "~BADKEY channel"},
		{"SSUBSCRIBE deepagents:{b}:events", policy.Refuse, "~NOPERM channel"},
		{"PUBLISH " + ownCh + ":sub hi", policy.Allow, ""},
		{"PUBLISH deepagents:{b}:events hi", policy.Refuse, "~NOPERM channel"},
		{"SPUBLISH deepagents:{b}:events hi", policy.Refuse, "~NOPERM channel"},
		{"UNSUBSCRIBE deepagents:{b}:events", policy.Allow, ""},
		{"SUNSUBSCRIBE deepagents:{b}:events", policy.Allow, ""},
		{"PSUBSCRIBE deepagents:{a}:events*", policy.Allow, ""},
		{"PSUBSCRIBE *", policy.Refuse, "NOPERM pattern '*' of 'psubscribe' reaches outside workspace 'a'; patterns must start with deepagents:{a}:"},
		{"PUNSUBSCRIBE *", policy.Allow, ""},
		{"PUBSUB NUMSUB " + ownCh, policy.Allow, ""},
		{"PUBSUB NUMSUB deepagents:{b}:events", policy.Refuse, "~NOPERM channel"},
		{"PUBSUB CHANNELS deepagents:{a}:*", policy.Allow, ""},
		{"PUBSUB CHANNELS *", policy.Refuse, "~NOPERM pattern"},
		{"PUBSUB CHANNELS", policy.Refuse, "~NOPERM"},
		{"PUBSUB SHARDCHANNELS", policy.Refuse, "~NOPERM"},
		// CLIENT TRACKING BCAST reports keys under its prefixes.
		{"CLIENT TRACKING on BCAST PREFIX deepagents:{a}:", policy.Allow, ""},
		{"CLIENT TRACKING on BCAST PREFIX deepagents:{b}:", policy.Refuse, "~NOPERM"},
		{"CLIENT TRACKING on BCAST", policy.Refuse, "~NOPERM"},
		// Keyless commands that stay in the connection.
		{"PING", policy.Allow, ""},
		{"ECHO hi", policy.Allow, ""},
		{"SCAN 0", policy.Allow, ""},
		{"TIME", policy.Allow, ""},
	})
}

// TestCheckReadonlyRefusesEveryWrite walks the whole table: a read-only
// user is refused every command Redis flags as writing, whatever its keys.
func TestCheckReadonlyRefusesEveryWrite(t *testing.T) {
	for _, scripts := range []bool{false, true} {
		p := newPolicy(t, "enforce", scripts)
		writes := 0
		for _, name := range keyspace.Names() {
			args := argv(strings.ReplaceAll(name, "|", " "))
			c := keyspace.Resolve(args)
			if c == nil || c.Name != name {
				t.Fatalf("Resolve(%q) = %v", name, c)
			}
			var acc keyspace.Access
			v, msg := p.Check(readonly, c, args, &acc)
			if !c.Has(keyspace.Write) {
				continue
			}
			writes++
			if v != policy.Refuse {
				t.Errorf("readonly %s: %s, want Refuse", name, verdictName(v))
				continue
			}
			if c.Has(keyspace.Admin) || c.Has(keyspace.Unsupported) || c.Has(keyspace.Script) && !scripts {
				continue // refused for a stronger reason
			}
			want := "NOPERM user 'default' is read-only; '" + name + "' writes"
			if msg != want {
				t.Errorf("readonly %s: %q, want %q", name, msg, want)
			}
		}
		if writes < 100 {
			t.Fatalf("only %d write commands in the table", writes)
		}
	}
	runCases(t, newPolicy(t, "enforce", true, "sort_ro"), readonly, []checkCase{{"SORT_RO " + own, policy.Allow, ""}})
	p := newPolicy(t, "enforce", true)
	runCases(t, p, readonly, []checkCase{
		{"GET " + own, policy.Allow, ""},
		{"HGETALL " + own, policy.Allow, ""},
		{"XRANGE " + own + " - +", policy.Allow, ""},
		{"SUBSCRIBE " + ownCh, policy.Allow, ""},
		{"GET " + foreign, policy.Refuse, "~NOPERM key"},
		{"SET " + own + " v", policy.Refuse, "NOPERM user 'default' is read-only; 'set' writes"},
		{"SORT " + own, policy.Refuse, "NOPERM user 'default' is read-only; 'sort' writes"},
		{"PUBLISH " + ownCh + " hi", policy.Refuse, "NOPERM user 'default' is read-only; 'publish' writes"},
		{"SPUBLISH " + ownCh + " hi", policy.Refuse, "NOPERM user 'default' is read-only; 'spublish' writes"},
		{"EVAL_RO s 1 " + own, policy.Refuse, "NOPERM user 'default' is read-only; 'eval_ro' writes"},
		{"FLUSHALL", policy.Refuse, "NOPERM 'flushall' is for admin users only; user 'default' has role readonly"},
	})
}

// TestCheckAdminAllowedEverything: the admin role passes every command of
// the table, with keys of any workspace or of none.
func TestCheckAdminAllowedEverything(t *testing.T) {
	for _, mode := range []string{"enforce", "warn", "off"} {
		p := newPolicy(t, mode, false)
		for _, name := range keyspace.Names() {
			args := append(argv(strings.ReplaceAll(name, "|", " ")), []byte(foreign), []byte("*"))
			c := keyspace.Resolve(args)
			acc := keyspace.Access{Keys: []int{len(args) - 2}, Channels: []int{len(args) - 2}, Patterns: []int{len(args) - 1}, Writes: true}
			if v, msg := p.Check(admin, c, args, &acc); v != policy.Allow {
				t.Errorf("%s: admin %s %s (%q), want Allow", mode, name, verdictName(v), msg)
			}
		}
	}
}

// TestCheckAdminOnly: the commands SPEC §4 reserves to admins are refused
// for agents and read-only users with the admin message, and allowed for
// admins.
func TestCheckAdminOnly(t *testing.T) {
	lines := []string{
		"FLUSHALL", "FLUSHALL ASYNC", "FLUSHDB", "RANDOMKEY", "DBSIZE", "SWAPDB 0 1", "MOVE " + own + " 1",
		"CONFIG SET maxmemory 0", "CONFIG GET maxmemory", "CONFIG REWRITE", "CONFIG RESETSTAT",
		"DEBUG SLEEP 0", "SHUTDOWN NOSAVE", "ACL SETUSER u on", "ACL LIST", "ACL GETUSER default",
		"MODULE LOAD /x.so", "MODULE LIST", "MODULE UNLOAD m", "REPLICAOF no one", "SLAVEOF no one",
		"SCRIPT FLUSH", "SCRIPT KILL", "FUNCTION LOAD code", "FUNCTION DELETE lib", "FUNCTION FLUSH",
		"FUNCTION RESTORE payload", "FUNCTION KILL", "CLUSTER ADDSLOTS 1", "CLUSTER RESET", "CLUSTER MEET h 1",
		"CLUSTER FORGET id", "CLUSTER SETSLOT 1 STABLE", "CLUSTER FAILOVER", "CLUSTER GETKEYSINSLOT 1 10",
		"CLIENT KILL ID 1", "CLIENT PAUSE 10", "CLIENT UNPAUSE", "MONITOR", "SAVE", "BGSAVE",
		"BGREWRITEAOF", "SLOWLOG GET", "LATENCY RESET", "FAILOVER", "ACL WHOAMI", "ACL CAT", "CONFIG HELP",
	}
	for _, mode := range []string{"enforce", "warn", "off"} {
		p := newPolicy(t, mode, true)
		for _, line := range lines {
			args := argv(line)
			name := keyspace.Resolve(args).Name
			for _, id := range []*policy.Identity{agent, readonly} {
				v, msg := check(t, p, id, line)
				want := "NOPERM '" + name + "' is for admin users only; user 'default' has role " + id.Role.String()
				if v != policy.Refuse || msg != want {
					t.Errorf("%s: %s by %s: %s %q, want Refuse %q", mode, line, id.Role, verdictName(v), msg, want)
				}
			}
			if v, msg := check(t, p, admin, line); v != policy.Allow {
				t.Errorf("%s: %s by admin: %s %q", mode, line, verdictName(v), msg)
			}
		}
	}
	// The whole CONFIG, ACL and MODULE families are admin only (SPEC §4),
	// not only the subcommands Redis flags as admin.
	p := newPolicy(t, "enforce", false)
	for _, name := range keyspace.Names() {
		family, _, _ := strings.Cut(name, "|")
		switch family {
		case "config", "acl", "module", "debug", "shutdown", "flushall", "flushdb", "swapdb", "move",
			"randomkey", "dbsize", "replicaof", "slaveof", "monitor":
		default:
			continue
		}
		args := argv(strings.ReplaceAll(name, "|", " "))
		c := keyspace.Resolve(args)
		if !c.Has(keyspace.Admin) {
			t.Errorf("%s is not flagged Admin", name)
		}
		if v, _ := p.Check(agent, c, args, &keyspace.Access{}); v != policy.Refuse {
			t.Errorf("agent %s: %s, want Refuse", name, verdictName(v))
		}
	}
	// KEYS is pattern-checked, not admin.
	if keyspace.Lookup([]byte("keys")).Has(keyspace.Admin) {
		t.Error("KEYS is flagged Admin; it should be allowed with a pattern inside the workspace")
	}
}

// TestCheckScripts: raw scripts are refused for agents unless
// AllowScripts; allowed ones still have their declared keys checked.
func TestCheckScripts(t *testing.T) {
	off := newPolicy(t, "enforce", false)
	on := newPolicy(t, "enforce", true)
	scripts := 0
	for _, name := range keyspace.Names() {
		c := keyspace.Resolve(argv(strings.ReplaceAll(name, "|", " ")))
		if !c.Has(keyspace.Script) {
			continue
		}
		scripts++
		v, msg := off.Check(agent, c, nil, &keyspace.Access{})
		want := "NOPERM '" + name + "' is off for agents (a script can touch keys it did not declare); use the domain commands, or set keyspace.allow_scripts"
		if v != policy.Refuse || msg != want {
			t.Errorf("%s without allow_scripts: %s %q, want Refuse %q", name, verdictName(v), msg, want)
		}
	}
	for _, name := range []string{"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "script|load"} {
		if !keyspace.Resolve(argv(strings.ReplaceAll(name, "|", " "))).Has(keyspace.Script) {
			t.Errorf("%s is not flagged Script", name)
		}
	}
	if scripts < 7 {
		t.Errorf("only %d script commands", scripts)
	}
	runCases(t, on, agent, []checkCase{
		{"EVAL s 2 " + own + " " + own2 + " arg", policy.Allow, ""},
		{"EVAL s 0", policy.Allow, ""},
		{"EVAL s 2 " + own + " " + foreign, policy.Refuse, "~NOPERM key 'deepagents:{b}:kv:x'"},
		{"EVALSHA sha 1 " + badKind, policy.Refuse, "~BADKEY"},
		{"FCALL f 1 " + foreign, policy.Refuse, "~NOPERM"},
		{"FCALL_RO f 1 " + own, policy.Allow, ""},
		{"SCRIPT LOAD s", policy.Allow, ""},
		{"SCRIPT FLUSH", policy.Refuse, "~NOPERM 'script|flush' is for admin users only"},
	})
	runCases(t, off, agent, []checkCase{
		{"EVAL s 0", policy.Refuse, "~NOPERM 'eval' is off for agents"},
		{"SCRIPT LOAD s", policy.Refuse, "~NOPERM 'script|load' is off for agents"},
		{"SCRIPT EXISTS sha", policy.Allow, ""},
	})
	runCases(t, off, admin, []checkCase{{"EVAL s 1 " + foreign, policy.Allow, ""}})
}

func TestCheckModes(t *testing.T) {
	warn := newPolicy(t, "warn", false, "keys")
	runCases(t, warn, agent, []checkCase{
		{"GET " + own, policy.Allow, ""},
		{"GET " + foreign, policy.WarnOK, "~NOPERM key 'deepagents:{b}:kv:x' is outside workspace 'a'"},
		{"GET " + badKind, policy.WarnOK, "~BADKEY"},
		{"KEYS *", policy.WarnOK, "~NOPERM pattern"},
		{"SUBSCRIBE deepagents:{b}:events", policy.WarnOK, "~NOPERM channel"},
		// Roles are not a grammar question: warn mode still refuses.
		{"FLUSHALL", policy.Refuse, "~NOPERM 'flushall' is for admin users only"},
		{"EVAL s 0", policy.Refuse, "~NOPERM 'eval' is off"},
	})
	runCases(t, warn, readonly, []checkCase{{"SET " + own + " v", policy.Refuse, "~NOPERM user 'default' is read-only"}})
	off := newPolicy(t, "off", false)
	runCases(t, off, agent, []checkCase{
		{"GET " + foreign, policy.Allow, ""},
		{"KEYS *", policy.Refuse, "~NOPERM 'keys' is refused for agents"},
		{"SUBSCRIBE anything", policy.Allow, ""},
	})
	runCases(t, off, readonly, []checkCase{{"SET " + foreign + " v", policy.Refuse, "~NOPERM user 'default' is read-only"}})
}

// TestCheckOtherWorkspace: the same key is inside one connection's
// workspace and outside another's; user names appear in messages.
func TestCheckOtherWorkspace(t *testing.T) {
	p := newPolicy(t, "enforce", false)
	b := &policy.Identity{Role: policy.RoleAgent, Workspace: "b"}
	runCases(t, p, b, []checkCase{
		{"GET " + foreign, policy.Allow, ""},
		{"GET " + own, policy.Refuse, "NOPERM key 'deepagents:{a}:kv:x' is outside workspace 'b'; keys must start with deepagents:{b}:"},
	})
	u, ok := policy.NewUser("alice", strings.Repeat("0", 64), []string{"a"}, policy.RoleReadonly)
	if !ok {
		t.Fatal("NewUser")
	}
	id := &policy.Identity{User: u, Role: u.Role, Workspace: "a"}
	runCases(t, p, id, []checkCase{
		{"DEL " + own, policy.Refuse, "NOPERM user 'alice' is read-only; 'del' writes"},
		{"CONFIG GET x", policy.Refuse, "NOPERM 'config|get' is for admin users only; user 'alice' has role readonly"},
	})
	// Long or multi-line names are shortened and kept on one line.
	long := "deepagents:{b}:" + strings.Repeat("x", 300)
	v, msg := check(t, p, agent, "GET "+long)
	if v != policy.Refuse || !strings.Contains(msg, strings.Repeat("x", 100)+"...'") || len(msg) > 300 {
		t.Fatalf("long key: %s %q", verdictName(v), msg)
	}
	args := [][]byte{[]byte("GET"), []byte("a\r\nb")}
	var acc keyspace.Access
	c := keyspace.Resolve(args)
	if err := keyspace.Extract(c, args, &acc); err != nil {
		t.Fatal(err)
	}
	if _, msg := p.Check(agent, c, args, &acc); strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("message with a line break: %q", msg)
	}
}

func TestUsersAndParsing(t *testing.T) {
	sum := sha256.Sum256([]byte("s3cret"))
	hash := hex.EncodeToString(sum[:])
	p, err := policy.New(policy.Config{Prefix: "deepagents", Kinds: keyspace.DefaultKinds, Mode: "warn", DefaultWS: "dflt",
		DefaultRole: "readonly", Users: []policy.UserConfig{
			{Name: "alice", PasswordSHA256: hash, Role: "agent", Workspaces: []string{"*", "w1", "w2"}},
			{Name: "root", PasswordSHA256: hash, Role: "admin", Workspaces: []string{"*"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != policy.Warn || p.DefaultRole != policy.RoleReadonly || p.DefaultWS != "dflt" {
		t.Fatalf("policy %+v", p)
	}
	alice := p.Users["alice"]
	if alice == nil || alice.Role != policy.RoleAgent || !alice.Check([]byte("s3cret")) || alice.Check([]byte("s3cret ")) {
		t.Fatalf("alice: %+v", alice)
	}
	if !alice.Allows("anything") || p.FirstWorkspace(alice) != "w1" || p.FirstWorkspace(p.Users["root"]) != "dflt" {
		t.Fatal("workspaces of alice/root")
	}
	if u, _ := policy.NewUser("bob", hash, []string{"w1"}, policy.RoleAgent); u.Allows("w2") || !u.Allows("w1") {
		t.Fatal("bob workspaces")
	}
	if (&policy.Identity{}).Name() != "default" || (&policy.Identity{User: alice}).Name() != "alice" {
		t.Fatal("Identity.Name")
	}
	for _, bad := range []policy.Config{
		{Mode: "strict"},
		{Mode: "enforce", DefaultRole: "root"},
		{Mode: "enforce", Users: []policy.UserConfig{{Name: "x", PasswordSHA256: hash, Role: "god"}}},
		{Mode: "enforce", Users: []policy.UserConfig{{Name: "x", PasswordSHA256: "abc", Role: "agent"}}},
		{Mode: "enforce", Users: []policy.UserConfig{{Name: "x", PasswordSHA256: strings.Repeat("zz", 32), Role: "agent"}}},
	} {
		if _, err := policy.New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
	for s, want := range map[string]policy.Role{"agent": policy.RoleAgent, "readonly": policy.RoleReadonly, "admin": policy.RoleAdmin} {
		if r, ok := policy.ParseRole(s); !ok || r != want || r.String() != s {
			t.Errorf("ParseRole(%q) = %v, %v", s, r, ok)
		}
	}
	for s, want := range map[string]policy.Mode{"enforce": policy.Enforce, "warn": policy.Warn, "off": policy.Off} {
		if m, ok := policy.ParseMode(s); !ok || m != want {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, ok)
		}
	}
	if _, ok := policy.ParseRole("Admin"); ok {
		t.Error("ParseRole is case-sensitive")
	}
	if _, ok := policy.ParseMode(""); ok {
		t.Error("ParseMode(\"\") accepted")
	}
}

// TestUnknownCommandMatchesRedis: a command the table does not know is
// refused with exactly the bytes a real Redis 7 sends.
func TestUnknownCommandMatchesRedis(t *testing.T) {
	r := testutil.StartRedis(t)
	c := testutil.Dial(t, r.Addr)
	long := strings.Repeat("abcdefghij", 20)
	cases := [][]string{
		{"foo"},
		{"FOO", "bar", "baz"},
		{"nosuchcommand", ""},
		{"foo", "", "", ""},
		{long},
		{"foo", long},
		{"foo", long[:100], long[:100]},
		{"foo", long[:125], "xyz"},
		{"foo", long[:124], "xyz"},
		{"foo", long[:123], "xyz"},
		{"foo", strings.Repeat("ab ", 60)},
		{"foo", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t",
			"u", "v", "w", "x", "y", "z", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14"},
		{"foo", "line\r\nbreak", "cr\rlf\n"},
		{"foo\r\nbar", "x"},
		{"foo", "caf\xc3\xa9", "\xff\xfe\xfd"},
		{"f\xffoo", "\x80"},
		{"foo", "nul\x00inside", "after"},
		{"fo\x00o", "x"},
		{"foo", "'quoted'", "%s%d%%"},
		{"GETT", "k"},
		{"config|get", "x"},
	}
	for _, args := range cases {
		got := c.DoS(args...)
		bargs := make([][]byte, len(args))
		for i, a := range args {
			bargs[i] = []byte(a)
		}
		if keyspace.Resolve(bargs) != nil {
			t.Fatalf("%q is a known command", args[0])
		}
		want := "-" + policy.UnknownCommand(bargs) + "\r\n"
		if got != want {
			t.Errorf("UnknownCommand(%q):\n got %q\nredis %q", args, want, got)
		}
	}
}

// TestWrongArityMatchesRedis: for every command and subcommand whose
// arity can be broken, WrongArity of the resolved command's name is
// exactly what a real Redis 7 replies.
func TestWrongArityMatchesRedis(t *testing.T) {
	r := testutil.StartRedis(t)
	c := testutil.Dial(t, r.Addr)
	type inv struct {
		args []string
		want string
	}
	var invs []inv
	for _, name := range keyspace.Names() {
		base := strings.Split(name, "|")
		cmd := keyspace.Resolve(argv(strings.Join(base, " ")))
		var args []string
		switch {
		case cmd.Container && !cmd.ArityOK(1):
			args = base[:1] // CONFIG alone
		case cmd.Container:
			continue // COMMAND alone is fine
		case cmd.Arity > 0:
			args = append(base, make([]string, cmd.Arity+1-len(base))...) // one too many
		case -cmd.Arity-1 >= len(base):
			args = append(base, make([]string, -cmd.Arity-1-len(base))...) // one too few
		default:
			continue // -1, or a subcommand with no required argument
		}
		for i := len(base); i < len(args); i++ {
			args[i] = "x"
		}
		resolved := keyspace.Resolve(argv(strings.Join(args, " ")))
		if resolved.ArityOK(len(args)) {
			t.Fatalf("%q: ArityOK(%d) for arity %d", args, len(args), resolved.Arity)
		}
		invs = append(invs, inv{args, "-" + policy.WrongArity(resolved.Name) + "\r\n"})
	}
	for _, in := range invs {
		c.Send(in.args...)
	}
	for _, in := range invs {
		if got := string(c.Read()); got != in.want {
			t.Errorf("%q: WrongArity gives %q, redis %q", in.args, in.want, got)
		}
	}
	if len(invs) < 250 {
		t.Fatalf("only %d commands checked", len(invs))
	}
	t.Logf("checked the arity error of %d commands against Redis", len(invs))
	// Inside MULTI the texts are the same (EXEC's included).
	if got := c.DoS("MULTI"); got != "+OK\r\n" {
		t.Fatalf("MULTI: %q", got)
	}
	for _, args := range [][]string{{"GET"}, {"CONFIG", "GET"}, {"nosuch", "x"}, {"EXEC", "x"}} {
		bargs := argv(strings.Join(args, " "))
		want := "-" + policy.UnknownCommand(bargs) + "\r\n"
		if cmd := keyspace.Resolve(bargs); cmd != nil {
			want = "-" + policy.WrongArity(cmd.Name) + "\r\n"
		}
		if got := c.DoS(args...); got != want {
			t.Errorf("in MULTI %q: policy gives %q, redis %q", args, want, got)
		}
	}
	if got := c.DoS("EXEC"); got != "-ERR EXEC without MULTI\r\n" {
		t.Errorf("the EXEC with the wrong arity did not end MULTI: %q", got)
	}
	// The ones named in the brief, spelled out.
	for name, want := range map[string]string{
		"get":        "ERR wrong number of arguments for 'get' command",
		"config|get": "ERR wrong number of arguments for 'config|get' command",
		"config":     "ERR wrong number of arguments for 'config' command",
		"exec":       "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command",
	} {
		if got := policy.WrongArity(name); got != want {
			t.Errorf("WrongArity(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestSelectAndWorkspaceRefusals(t *testing.T) {
	p := newPolicy(t, "enforce", false)
	agent := policy.Identity{Role: policy.RoleAgent, Workspace: "a"}
	admin := policy.Identity{Role: policy.RoleAdmin, Workspace: "a"}
	sel := func(n string) [][]byte { return [][]byte{[]byte("SELECT"), []byte(n)} }
	if msg := p.SelectRefusal(&agent, sel("1"), 0); !strings.HasPrefix(msg, "NOPERM SELECT") {
		t.Errorf("agent SELECT 1: %q", msg)
	}
	for _, n := range []string{"0", "x"} { // its own database; not a number (Redis's error)
		if msg := p.SelectRefusal(&agent, sel(n), 0); msg != "" {
			t.Errorf("agent SELECT %s: %q", n, msg)
		}
	}
	if msg := p.SelectRefusal(&admin, sel("1"), 0); msg != "" {
		t.Errorf("admin SELECT 1: %q", msg)
	}
	if msg := p.WorkspaceRefusal(&agent, "bad name"); msg == "" {
		t.Error("invalid workspace name accepted")
	}
	if msg := p.WorkspaceRefusal(&admin, "anywhere"); msg != "" {
		t.Errorf("admin: %q", msg)
	}
}

func TestAuthBuckets(t *testing.T) {
	lo := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	far := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5000}
	if got := strings.Join(policy.AuthBuckets(nil, 7, lo), ","); got != "user?,conn:7" {
		t.Errorf("loopback, unknown user: %s", got)
	}
	if got := strings.Join(policy.AuthBuckets(&policy.User{Name: "bob"}, 7, far), ","); got != "user:bob,conn:7,addr:10.1.2.3" {
		t.Errorf("remote: %s", got)
	}
}
