package tests

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/keyspace"
)

// offModeSkip are the admin commands this test does not send: they stop
// the server, turn the connection into a replication or monitor stream, or
// are answered by the proxy for its own reasons (documented in the README).
var offModeSkip = map[string]bool{
	"shutdown": true, "sync": true, "psync": true, "monitor": true, "debug": true, "replicaof": true, "slaveof": true,
	"failover": true, "client|pause": true, "client|kill": true, "client|list": true, "client|info": true,
	"client|id": true, "client|no-evict": true, "client|no-touch": true, "client|tracking": true, "client|caching": true,
	"client|getredir": true, "client|trackinginfo": true, "client|setname": true, "client|getname": true,
	"client|setinfo": true, "client|reply": true, "client|unpause": true, "client|unblock": true,
	"save": true, "bgsave": true, "bgrewriteaof": true, "module|load": true, "module|loadex": true,
}

// TestOffModeAdminCommandsAsDirect: with keyspace.mode = "off" and no
// users, every admin, dangerous and script command of the table (generated
// from the table, with placeholder arguments) answers through the proxy as
// it does on Redis directly: the proxy is a pure proxy, not an agent's
// gatekeeper. Replies that are errors must be the same error; others the
// same type of reply.
func TestOffModeAdminCommandsAsDirect(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, testutil.ProxyConfig(t, r.URL()))
	proxy, direct := testutil.Dial(t, a.Addr()), testutil.Dial(t, r.Addr)
	sent := 0
	for _, name := range keyspace.Names() {
		var argv [][]byte
		for _, w := range strings.Split(name, "|") {
			argv = append(argv, []byte(w))
		}
		c := keyspace.Resolve(argv)
		if c == nil || c.Container || offModeSkip[name] || offModeSkip[strings.Split(name, "|")[0]] || c.Has(keyspace.Unsupported) ||
			c.Agents != keyspace.AgentsAdmin && c.Agents != keyspace.AgentsDangerous && c.Agents != keyspace.AgentsScript {
			continue
		}
		words := strings.Split(strings.ToUpper(name), "|")
		for len(words) < max(c.Arity, -c.Arity) {
			words = append(words, "deepagents:{default}:kv:x")
		}
		want, got := direct.DoS(words...), proxy.DoS(words...)
		sent++
		switch {
		case strings.HasPrefix(got, "-NOPERM") && !strings.HasPrefix(want, "-NOPERM"):
			t.Errorf("%q refused by the proxy in off mode: %q (Redis: %q)", words, got, want)
		case want[0] == '-' || got[0] == '-':
			if got != want {
				t.Errorf("%q: proxy %q, Redis %q", words, got, want)
			}
		case got[0] != want[0]:
			t.Errorf("%q: proxy %q, Redis %q (another type of reply)", words, got, want)
		}
	}
	if sent < 60 {
		t.Errorf("only %d admin commands sent", sent)
	}
	t.Logf("%d admin, dangerous and script commands answered as on Redis", sent)
}
