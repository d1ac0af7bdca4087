// Package keyspace knows Redis commands as data: what each command does to a
// connection (pins it, blocks, subscribes), whether it reads, writes or
// administers, and where its keys and channels are. The proxy, the policy
// layer and metrics read this one table instead of switching on command
// names. The Redis part is generated from a live Redis (commands_gen.go);
// the proxy's own flags are an overlay declared here.
package keyspace

// Flag describes what a command needs from the proxy.
type Flag uint32

const (
	// Local commands are answered by the proxy itself.
	Local Flag = 1 << iota
	// Blocking commands may wait on the server; they run on a dedicated
	// connection for their duration so they never stall shared ones.
	Blocking
	// BlockingIfArg commands block only with a BLOCK argument (XREAD).
	BlockingIfArg
	// Transaction commands start connection state (MULTI, WATCH) that pins
	// the client to a dedicated connection until it ends.
	Transaction
	// PubSub commands put the connection in subscriber mode; the client
	// is tunnelled to a dedicated connection for the rest of its life.
	PubSub
	// Tunnel commands (MONITOR) stream out-of-band replies forever.
	Tunnel
	// Admin commands are for the admin role only.
	Admin
	// Write commands modify data.
	Write
	// Unsupported commands cannot work through a multiplexing proxy.
	Unsupported
	// Script commands run server-side code that may touch undeclared keys.
	Script
	// Proxy commands exist only in agentproxy (WORKSPACE, domain commands).
	Proxy
	// Bypass commands end what occupies Redis (SCRIPT KILL, CLIENT
	// UNPAUSE): they go on a connection of their own, never behind the
	// commands they are meant to release.
	Bypass
)

// Command is one entry of the command table: Redis's description plus the
// proxy's flags. Containers (CLIENT, CONFIG, ...) hold their subcommands.
type Command struct {
	Spec
	Flags Flag
	// Agents is the decision for users who are not admins, and Why its
	// reason (decisions.go).
	Agents Agents
	Why    string
	// Handler is set by the package that serves the command itself: the
	// proxy for the commands it answers, a domain family for its commands
	// (SetHandler, at init). Nil for commands forwarded to Redis.
	Handler any
	subs    map[string]*Command
	family  uint8
}

// SetHandler attaches h to the entry of name ("get", "client|info",
// "file.write"). It panics on a name the table does not have: a
// programming error, caught by any test.
func SetHandler(name string, h any) {
	parent, sub, _ := cut(name)
	c := byName[parent]
	if c != nil && sub != "" {
		c = c.subs[sub]
	}
	if c == nil {
		panic("keyspace: SetHandler of unknown command " + name)
	}
	c.Handler = h
}

// Has reports whether c has all flags in f.
func (c *Command) Has(f Flag) bool { return c != nil && c.Flags&f == f }

// proxyCommand is a command agentproxy adds to Redis's.
type proxyCommand struct {
	Spec
	flags  Flag
	agents Agents
	why    string
}

const domainWhy = "an agent domain command: it touches only the connection's workspace, through the domain's scripts"

// proxyCommands are the commands agentproxy adds to Redis's: its own, the
// agent domain's, and subcommands of Redis versions newer than the table's
// that clients send on connect.
var proxyCommands = []proxyCommand{
	{Spec: Spec{Name: "workspace", Arity: -1}, flags: Local, agents: AgentsProxy, why: "switches the connection among the user's workspaces"},
	// Inspection and control of the proxy itself (redis-cli PROXY INFO).
	{Spec: Spec{Name: "proxy", Arity: -2, Container: true}, flags: Local, agents: AgentsProxy, why: "inspects the proxy"},
	{Spec: Spec{Name: "proxy|info", Arity: 2}, flags: Local, agents: AgentsProxy, why: "describes the proxy and the connection"},
	{Spec: Spec{Name: "proxy|clients", Arity: 2}, flags: Local, agents: AgentsProxy, why: "lists the user's own connections (an admin's: all)"},
	{Spec: Spec{Name: "proxy|help", Arity: 2}, flags: Local, agents: AgentsProxy, why: "lists the PROXY subcommands"},
	{Spec: Spec{Name: "proxy|config", Arity: -3}, flags: Admin, agents: AgentsAdmin, why: "shows the proxy's configuration"},
	{Spec: Spec{Name: "proxy|reload", Arity: 2}, flags: Admin, agents: AgentsAdmin, why: "reloads the proxy's configuration"},
	// The agent domain (SPEC §5), served by the lua scripts.
	{Spec: Spec{Name: "lock.acquire", Arity: -3, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "lock.extend", Arity: 4, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "lock.release", Arity: 3, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "lock.info", Arity: 2}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "lock.use", Arity: 3}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "cache.get", Arity: 3}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "cache.set", Arity: -4, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "events.read", Arity: -1}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "ws.info", Arity: 1}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "todo.replace", Arity: -2, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "todo.list", Arity: 1}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "todo.add", Arity: -2, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "todo.update", Arity: -4, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "todo.claim", Arity: -3, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "todo.remove", Arity: -2, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.write", Arity: -3, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.append", Arity: -3, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.edit", Arity: -4, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.del", Arity: -2, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.begin", Arity: -2, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.chunk", Arity: 4, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.commit", Arity: -2, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.abort", Arity: 2, Redis: RWrite}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.read", Arity: -2}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.get", Arity: 2}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.getrange", Arity: 4}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.stat", Arity: 2}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.ls", Arity: -1}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.glob", Arity: -2}, agents: AgentsProxy, why: domainWhy},
	{Spec: Spec{Name: "file.grep", Arity: -2}, agents: AgentsProxy, why: domainWhy},
	// Redis 7.2: sent by client libraries on connect; answered +OK.
	{Spec: Spec{Name: "client|setinfo", Arity: 4}, agents: AgentsProxy, why: "names the client library; answered by the proxy"},
	// Redis 7.2: connection state, like NO-EVICT (the admin is pinned).
	{Spec: Spec{Name: "client|no-touch", Arity: 3}, agents: AgentsAdmin, flags: Admin, why: "changes the state of the connection it runs on"},
}

var byName = func() map[string]*Command {
	m := make(map[string]*Command, len(generated)+len(proxyCommands))
	for i := range generated {
		s := generated[i]
		c := &Command{Spec: s, Agents: AgentsNever, Why: "not in the decision table", Flags: Unsupported}
		if r := decisionOf[s.Name]; r != nil {
			c.Flags, c.Agents, c.Why = r.flags, r.agents, r.why
		}
		switch c.Agents {
		case AgentsAdmin:
			c.Flags |= Admin
		case AgentsScript:
			c.Flags |= Script
		case AgentsNever:
			c.Flags |= Unsupported
		}
		if s.Redis&RWrite != 0 {
			c.Flags |= Write
		}
		add(m, c)
	}
	for i := range proxyCommands {
		p := &proxyCommands[i]
		c := &Command{Spec: p.Spec, Flags: p.flags | Proxy, Agents: p.agents, Why: p.why}
		if c.Redis&RWrite != 0 {
			c.Flags |= Write
		}
		add(m, c)
	}
	return m
}()

// add puts c in the table, a subcommand under its family.
func add(m map[string]*Command, c *Command) {
	c.family = familyOf(c)
	parent, sub, ok := cut(c.Name)
	if !ok {
		m[c.Name] = c
		return
	}
	p := m[parent]
	if p.subs == nil {
		p.subs = map[string]*Command{}
	}
	p.subs[sub] = c
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '|' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// lower folds name into buf; false if it is too long for any command.
func lower(buf *[40]byte, name []byte) ([]byte, bool) {
	if len(name) > len(buf) {
		return nil, false
	}
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(name)], true
}

// Lookup finds a top-level command by name in any letter case without
// allocating. It returns nil for commands Redis does not have.
func Lookup(name []byte) *Command {
	var buf [40]byte
	n, ok := lower(&buf, name)
	if !ok {
		return nil
	}
	return byName[string(n)] // no allocation: the compiler reuses n
}

// Resolve finds the command an argument vector invokes, descending into
// subcommands (CLIENT KILL, CONFIG SET, ...). For a container called with an
// unknown or missing subcommand it returns the container itself.
func Resolve(args [][]byte) *Command { return Lookup(args[0]).Sub(args) }

// Sub is the subcommand of c that args invoke, or c itself (a command
// without subcommands, or a container called with an unknown or missing
// one). Nil-safe.
func (c *Command) Sub(args [][]byte) *Command {
	if c == nil || c.subs == nil || len(args) < 2 {
		return c
	}
	var buf [40]byte
	n, ok := lower(&buf, args[1])
	if !ok {
		return c
	}
	if sc := c.subs[string(n)]; sc != nil {
		return sc
	}
	return c
}

// Names returns every command and subcommand name in the table.
func Names() []string {
	out := make([]string, 0, len(generated))
	for _, s := range generated {
		out = append(out, s.Name)
	}
	return out
}
