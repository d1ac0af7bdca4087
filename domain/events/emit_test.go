package events

import (
	"encoding/json"
	"testing"
)

// appendJSONString writes what encoding/json writes for a string.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "kv:a", "a\"b\\c", "tab\there\nnl\r", "\x00\x1f\x7f", "<&>", "é✓\u2028\u2029", "\xff\xfe bad utf8 \xc3", "😀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

func TestEnvelope(t *testing.T) {
	e := NewEmitter(nil, "deepagents", 100, 0, nil)
	req := e.append(nil, Write{WS: "w", Actor: "alice", Cmd: "set", Kind: "kv", Resource: "kv:a\"b", TS: 42})
	var env map[string]any
	if err := json.Unmarshal(e.env, &env); err != nil {
		t.Fatalf("envelope %s: %v", e.env, err)
	}
	want := map[string]any{"v": 1.0, "type": "kv.write", "ws": "w", "resource": "kv:a\"b", "actor": "alice", "cmd": "set", "version": 0.0, "ts": 42.0}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s: %v, want %v (%s)", k, env[k], v, e.env)
		}
	}
	wantReq := "*3\r\n$7\r\nPUBLISH\r\n$21\r\ndeepagents:{w}:events\r\n"
	if string(req[:len(wantReq)]) != wantReq {
		t.Errorf("request %q", req)
	}
	e.append(nil, Write{WS: "w", Actor: "a", Cmd: "del", Kind: "kv", Resource: "kv:x", Delete: true, TS: 1})
	if err := json.Unmarshal(e.env, &env); err != nil || env["type"] != "kv.delete" {
		t.Errorf("delete envelope %s", e.env)
	}
	if n := testing.AllocsPerRun(100, func() {
		req = e.append(req[:0], Write{WS: "w", Actor: "alice", Cmd: "set", Kind: "kv", Resource: "kv:abc", TS: 42})
	}); n != 0 {
		t.Errorf("append allocates %v", n)
	}
}
