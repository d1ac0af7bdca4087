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

// ProxyCommands are the commands agentproxy adds to Redis's.
var proxyCommands = []Spec{
	{Name: "workspace", Arity: -1},
	// The agent domain (SPEC §5), served by the lua scripts.
	{Name: "lock.acquire", Arity: -3, Redis: RWrite},
	{Name: "lock.extend", Arity: 4, Redis: RWrite},
	{Name: "lock.release", Arity: 3, Redis: RWrite},
	{Name: "lock.info", Arity: 2},
	{Name: "lock.use", Arity: 3},
	{Name: "cache.get", Arity: 3},
	{Name: "cache.set", Arity: -4, Redis: RWrite},
	{Name: "events.read", Arity: -1},
	{Name: "ws.info", Arity: 1},
	{Name: "todo.replace", Arity: -2, Redis: RWrite},
	{Name: "todo.list", Arity: 1},
	{Name: "todo.add", Arity: -2, Redis: RWrite},
	{Name: "todo.update", Arity: -4, Redis: RWrite},
	{Name: "todo.claim", Arity: -3, Redis: RWrite},
	{Name: "todo.remove", Arity: -2, Redis: RWrite},
	{Name: "file.write", Arity: -3, Redis: RWrite},
	{Name: "file.append", Arity: -3, Redis: RWrite},
	{Name: "file.edit", Arity: -4, Redis: RWrite},
	{Name: "file.del", Arity: -2, Redis: RWrite},
	{Name: "file.begin", Arity: -2, Redis: RWrite},
	{Name: "file.chunk", Arity: 4, Redis: RWrite},
	{Name: "file.commit", Arity: -2, Redis: RWrite},
	{Name: "file.abort", Arity: 2, Redis: RWrite},
	{Name: "file.read", Arity: -2},
	{Name: "file.get", Arity: 2},
	{Name: "file.getrange", Arity: 4},
	{Name: "file.stat", Arity: 2},
	{Name: "file.ls", Arity: -1},
	{Name: "file.glob", Arity: -2},
	{Name: "file.grep", Arity: -2},
}

var byName = func() map[string]*Command {
	m := make(map[string]*Command, len(generated)+len(proxyCommands))
	for i := range proxyCommands {
		c := &Command{Spec: proxyCommands[i], Flags: Proxy, Agents: AgentsProxy, Why: "an agentproxy command"}
		if c.Name == "workspace" {
			c.Flags |= Local
		}
		if c.Redis&RWrite != 0 {
			c.Flags |= Write
		}
		m[c.Name] = c
	}
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
		if parent, sub, ok := cut(s.Name); ok {
			p := m[parent]
			if p.subs == nil {
				p.subs = map[string]*Command{}
			}
			p.subs[sub] = c
			continue
		}
		m[s.Name] = c
	}
	return m
}()

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
func Resolve(args [][]byte) *Command {
	c := Lookup(args[0])
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
