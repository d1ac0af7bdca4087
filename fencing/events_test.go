package fencing

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/keyspace"
)

func TestWroteNothing(t *testing.T) {
	for _, tc := range []struct {
		cmd, reply string
		want       bool
	}{
		{"SET k v", "+OK\r\n", false},
		{"SET k v NX", "$-1\r\n", true},
		{"SET k v GET", "$-1\r\n", false}, // created the key
		{"SET k v nx get", "$-1\r\n", false},
		{"SET k v", "-OOM no\r\n", true},
		{"DEL k", ":0\r\n", true},
		{"UNLINK k", ":0\r\n", true},
		{"DEL k", ":1\r\n", false},
		{"HSET h f v", ":0\r\n", false}, // updated a field
		{"LPOP l", "$-1\r\n", true},
		{"LPOP l", "_\r\n", true},
		{"LMPOP 1 l LEFT", "*-1\r\n", true},
		{"SETNX k v", ":0\r\n", true},
		{"SETNX k v", ":1\r\n", false},
		{"MSETNX a 1 b 2", ":0\r\n", true},
		{"EXPIRE k 10", ":0\r\n", true},
		{"LPUSHX l v", ":0\r\n", true},
		{"LINSERT l BEFORE p v", ":-1\r\n", true},
		{"SADD s m", ":0\r\n", true},
		{"INCRBY n -1", ":0\r\n", false}, // wrote 0
		{"SINTERSTORE d a b", ":0\r\n", false},
	} {
		args := bytesFields(tc.cmd)
		if got := WroteNothing(strings.ToLower(string(args[0])), args, []byte(tc.reply)); got != tc.want {
			t.Errorf("%s → %q: %v, want %v", tc.cmd, tc.reply, got, tc.want)
		}
	}
}

func TestEventOf(t *testing.T) {
	g := keyspace.NewGrammar("deepagents", []string{"kv", "files"})
	w, ok := EventOf(g, "del", "alice", []byte("deepagents:{w1}:kv:doc:a"), 7)
	if !ok || w.WS != "w1" || w.Kind != "kv" || w.Resource != "kv:doc:a" || !w.Delete || w.Actor != "alice" || w.TS != 7 {
		t.Fatalf("%+v %v", w, ok)
	}
	if _, ok := EventOf(g, "set", "alice", []byte("outside"), 0); ok {
		t.Fatal("a key outside the grammar has no event")
	}
}

func bytesFields(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(s) {
		out = append(out, []byte(f))
	}
	return out
}
