package tests

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

// TestWSInfo counts a workspace's keys per kind, its locks and todos, and
// ignores other workspaces, on both backends.
func TestWSInfo(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		for _, cmd := range [][]string{
			{"SET", "deepagents:{default}:kv:a", "1"},
			{"SET", "deepagents:{default}:kv:b", "22"},
			{"LOCK.ACQUIRE", "res", "60000"},
			{"TODO.ADD", "write the note"},
			{"TODO.ADD", "ship it"},
		} {
			if r := c.DoS(cmd...); strings.HasPrefix(r, "-") {
				t.Fatalf("%v: %q", cmd, r)
			}
		}
		// A key of another workspace, written behind the proxy's back.
		if b.redis != nil {
			d := testutil.Dial(t, b.redis.Addr)
			d.Do("SET", "deepagents:{other}:kv:z", "x")
		} else {
			b.app.Store().Miniredis().Set("deepagents:{other}:kv:z", "x")
		}
		got := flatPairs(t, c.Do("WS.INFO"))
		want := map[string]string{"workspace": "default", "locks_held": "1", "todos": "2",
			"keys:kv": "2", "keys:lock": "1", "keys:fence": "1"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: WS.INFO %s = %q, want %q (all: %v)", b.name, k, got[k], v, got)
			}
		}
		if got["keys"] == "" || got["keys"] == "0" || got["bytes"] == "" || got["bytes"] == "0" {
			t.Errorf("%s: keys/bytes missing: %v", b.name, got)
		}
		if _, ok := got["keys:other"]; ok {
			t.Errorf("%s: counted another workspace: %v", b.name, got)
		}
		c.Do("HELLO", "3")
		if r := c.Do("WS.INFO"); r[0] != '%' {
			t.Errorf("%s: RESP3 WS.INFO is not a map: %q", b.name, r)
		}
	})
}

// flatPairs decodes a flat RESP2 array of bulk-string/integer pairs.
func flatPairs(t *testing.T, reply []byte) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(reply), "\r\n"), "\r\n")
	if len(lines) == 0 || lines[0][0] != '*' {
		t.Fatalf("not an array: %q", reply)
	}
	var vals []string
	for i := 1; i < len(lines); i++ {
		switch lines[i][0] {
		case '$':
			i++
			vals = append(vals, lines[i])
		case ':':
			vals = append(vals, lines[i][1:])
		default:
			t.Fatalf("unexpected line %q in %q", lines[i], reply)
		}
	}
	m := map[string]string{}
	for i := 0; i+1 < len(vals); i += 2 {
		m[vals[i]] = vals[i+1]
	}
	return m
}
