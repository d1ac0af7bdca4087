// Package keyspace knows Redis commands as data: what each command does to a
// connection (pins it, blocks, subscribes) and, as the table grows, where its
// keys are. The proxy, the policy layer and metrics read this one table
// instead of switching on command names.
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
)

// Command is one entry of the command table.
type Command struct {
	Name  string
	Flags Flag
}

// Has reports whether c has all flags in f.
func (c *Command) Has(f Flag) bool { return c != nil && c.Flags&f == f }

// table lists the commands the proxy treats specially; every other command
// is forwarded as it is.
var table = []Command{
	{"ping", Local}, {"echo", Local}, {"quit", Local}, {"hello", Local}, {"auth", Local},
	{"select", Local}, {"reset", Local}, {"client", Local}, {"command", Local},
	{"multi", Transaction}, {"watch", Transaction},
	{"blpop", Blocking}, {"brpop", Blocking}, {"brpoplpush", Blocking}, {"blmove", Blocking},
	{"blmpop", Blocking}, {"bzpopmin", Blocking}, {"bzpopmax", Blocking}, {"bzmpop", Blocking},
	{"wait", Blocking}, {"waitaof", Blocking},
	{"xread", BlockingIfArg}, {"xreadgroup", BlockingIfArg | Write},
	{"subscribe", PubSub}, {"psubscribe", PubSub}, {"ssubscribe", PubSub},
	{"monitor", Tunnel | Admin},
	{"sync", Unsupported | Admin}, {"psync", Unsupported | Admin},
}

var byName = func() map[string]*Command {
	m := make(map[string]*Command, len(table))
	for i := range table {
		m[table[i].Name] = &table[i]
	}
	return m
}()

// Lookup finds a command by name in any letter case without allocating. It
// returns nil for commands the table does not list.
func Lookup(name []byte) *Command {
	var lower [32]byte
	if len(name) > len(lower) {
		return nil
	}
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return byName[string(lower[:len(name)])]
}
