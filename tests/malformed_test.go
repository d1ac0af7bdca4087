package tests

import (
	"strconv"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/keyspace"
)

// malformedTrailer is what a numkeys command needs after its keys.
var malformedTrailer = map[string][]string{
	"lmpop": {"LEFT"}, "blmpop": {"LEFT"}, "zmpop": {"MIN"}, "bzmpop": {"MIN"},
}

// malformedForms builds, for a command whose keys are counted by a numkeys
// argument, its forms with numkeys 0, negative, not a number, with a
// leading zero, huge, and larger than the keys that follow.
func malformedForms(c *keyspace.Command) [][]string {
	var ks *keyspace.KeySpec
	for i := range c.Keys {
		if c.Keys[i].Find == keyspace.FindKeynum && c.Keys[i].Begin == keyspace.BeginIndex {
			ks = &c.Keys[i]
		}
	}
	if ks == nil {
		return nil
	}
	name := strings.Split(strings.ToUpper(c.Name), "|")
	idx := ks.Index + ks.KeyNumIdx
	key := func(i int) string { return "deepagents:{default}:kv:malformed" + strconv.Itoa(i) }
	prefix := append([]string{}, name...)
	for p := len(name); p < idx; p++ {
		switch {
		case p == 1 && strings.HasPrefix(c.Name, "eval"):
			prefix = append(prefix, "return 1")
		case p == 1 && strings.HasPrefix(c.Name, "fcall"):
			prefix = append(prefix, "nosuchfunction")
		case p == 1 && c.Name[0] == 'b': // BLMPOP, BZMPOP: the timeout
			prefix = append(prefix, "0.01")
		default:
			prefix = append(prefix, key(p)) // ZUNIONSTORE's destination
		}
	}
	var forms [][]string
	for _, f := range []struct {
		numkeys string
		keys    int
	}{{"0", 1}, {"-1", 1}, {"-7", 2}, {"x", 1}, {"01", 1}, {"99999999999", 1}, {"4", 2}, {"9", 1}, {"2", 0}, {" 9", 1}, {"+3", 1}, {"4294967297", 1}} {
		form := append(append([]string{}, prefix...), f.numkeys)
		for k := 0; k < f.keys; k++ {
			form = append(form, key(10+k))
		}
		forms = append(forms, append(form, malformedTrailer[c.Name]...))
	}
	return forms
}

// TestMalformedFormsAsRedis: every numkeys command of the command table,
// sent with a malformed numkeys, answers through the proxy exactly what
// Redis answers (the proxy forwards forms whose keys Redis cannot find
// either, and Redis's parser rejects them). Then a few forms the proxy
// answers itself.
func TestMalformedFormsAsRedis(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Keyspace.AllowScripts = true // so EVAL and FCALL reach the numkeys check
	a := testutil.StartProxy(t, cfg)
	proxy, direct := testutil.Dial(t, a.Addr()), testutil.Dial(t, r.Addr)
	commands := 0
	for _, n := range keyspace.Names() {
		var argv [][]byte
		for _, w := range strings.Split(n, "|") {
			argv = append(argv, []byte(w))
		}
		c := keyspace.Resolve(argv)
		forms := malformedForms(c)
		if len(forms) > 0 {
			commands++
		}
		for _, f := range forms {
			want, got := direct.DoS(f...), proxy.DoS(f...)
			if got != want {
				t.Errorf("%q: proxy %q, Redis %q", f, got, want)
			}
		}
	}
	if commands < 15 {
		t.Errorf("only %d numkeys commands in the table", commands)
	}
	t.Logf("%d numkeys commands, 12 malformed forms each, identical to Redis", commands)
	// Forms with keys outside the workspace that Redis rejects before
	// reading a key, and the proxy's own commands.
	for _, f := range [][]string{
		{"SINTERCARD", "2", "s"}, {"SINTERCARD", "a", "s"}, {"ZUNIONSTORE", "o", "3", "a", "b"},
		{"XREAD", "COUNT", "1", "STREAMS"}, {"XREAD", "STREAMS", "a"}, {"RESET", "x"}, {"AUTH", "a", "b", "c"},
		{"PING", "a", "b"}, {"ECHO"}, {"SELECT", "1", "2"}, {"CLIENT", "SETNAME"}, {"CLIENT", "ID", "x"},
	} {
		want, got := direct.DoS(f...), proxy.DoS(f...)
		if got != want {
			t.Errorf("%q: proxy %q, Redis %q", f, got, want)
		}
	}
	if got := direct.DoS("DBSIZE"); got != ":0\r\n" {
		t.Errorf("a malformed form wrote: DBSIZE %q", got)
	}
}
