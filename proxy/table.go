package proxy

import "github.com/agentproxy/agentproxy/keyspace"

// The table entries the session's state machine follows (MULTI, WATCH,
// SELECT, ...), looked up once: the batch path compares entries, never
// names.
var (
	cmdMulti     = entry("multi")
	cmdExec      = entry("exec")
	cmdDiscard   = entry("discard")
	cmdWatch     = entry("watch")
	cmdUnwatch   = entry("unwatch")
	cmdSelect    = entry("select")
	cmdClient    = entry("client")
	cmdHello     = entry("hello")
	cmdAuth      = entry("auth")
	cmdQuit      = entry("quit")
	cmdReset     = entry("reset")
	cmdWorkspace = entry("workspace")
	cmdScan      = entry("scan")
	cmdWait      = entry("wait")
	// CLIENT NO-EVICT / NO-TOUCH leave state on the connection they run on.
	cmdNoEvict = keyspace.Resolve([][]byte{[]byte("client"), []byte("no-evict")})
	cmdNoTouch = keyspace.Resolve([][]byte{[]byte("client"), []byte("no-touch")})
)

func entry(name string) *keyspace.Command {
	c := keyspace.Lookup([]byte(name))
	if c == nil {
		panic("proxy: no table entry for " + name)
	}
	return c
}

// isTxEnd reports whether c ends a transaction (EXEC, DISCARD).
func isTxEnd(c *keyspace.Command) bool { return c == cmdExec || c == cmdDiscard }

// connChanging reports whether c, queued inside MULTI, changes the
// connection when EXEC runs it (SELECT, CLIENT ..., HELLO, AUTH): the
// pinned connection can then never be reused.
func connChanging(c *keyspace.Command) bool {
	return c == cmdSelect || c == cmdClient || c == cmdHello || c == cmdAuth
}
