package keyspace_test

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/keyspace"
)

func problemName(p keyspace.Problem) string {
	return [...]string{"OK", "Outside", "BadKind"}[p]
}

func TestGrammarKey(t *testing.T) {
	g := keyspace.NewGrammar("deepagents", keyspace.DefaultKinds)
	cases := []struct {
		key  string
		ws   string
		want keyspace.Problem
	}{
		// good keys, every default kind
		{"deepagents:{a}:todos", "a", keyspace.OK},
		{"deepagents:{a}:todo:1", "a", keyspace.OK},
		{"deepagents:{a}:files:/src/main.go", "a", keyspace.OK},
		{"deepagents:{a}:cache:tool:sha", "a", keyspace.OK},
		{"deepagents:{a}:events", "a", keyspace.OK},
		{"deepagents:{a}:lock:res", "a", keyspace.OK},
		{"deepagents:{a}:fence:res", "a", keyspace.OK},
		{"deepagents:{a}:kv:", "a", keyspace.OK},
		{"deepagents:{a}:kv:x:{b}:y", "a", keyspace.OK},
		{"deepagents:{my-ws_1.2}:kv:x", "my-ws_1.2", keyspace.OK},
		// other workspace
		{"deepagents:{b}:kv:x", "a", keyspace.Outside},
		{"deepagents:{ab}:kv:x", "a", keyspace.Outside},
		{"deepagents:{a}:kv:x", "ab", keyspace.Outside},
		{"deepagents:{A}:kv:x", "a", keyspace.Outside},
		// no braces, wrong prefix, truncated
		{"deepagents:a:kv:x", "a", keyspace.Outside},
		{"deepagents:{a}kv:x", "a", keyspace.Outside},
		{"deepagents{a}:kv:x", "a", keyspace.Outside},
		{"deepagents:{a:kv:x", "a", keyspace.Outside},
		{"Deepagents:{a}:kv:x", "a", keyspace.Outside},
		{"other:{a}:kv:x", "a", keyspace.Outside},
		{"x:deepagents:{a}:kv:x", "a", keyspace.Outside},
		{"deepagents:{a}", "a", keyspace.Outside},
		{"deepagents:{a}:", "a", keyspace.BadKind},
		{"", "a", keyspace.Outside},
		{"todos", "a", keyspace.Outside},
		// unknown or empty kind
		{"deepagents:{a}:nope", "a", keyspace.BadKind},
		{"deepagents:{a}:nope:x", "a", keyspace.BadKind},
		{"deepagents:{a}::x", "a", keyspace.BadKind},
		{"deepagents:{a}:KV:x", "a", keyspace.BadKind},
		{"deepagents:{a}:kvx", "a", keyspace.BadKind},
		{"deepagents:{a}:kv\x00", "a", keyspace.BadKind},
		{"deepagents:{a}:notes:x", "a", keyspace.BadKind},
	}
	for _, tc := range cases {
		if got := g.Key([]byte(tc.key), tc.ws); got != tc.want {
			t.Errorf("Key(%q, %q) = %s, want %s", tc.key, tc.ws, problemName(got), problemName(tc.want))
		}
	}

	// Extra kinds from config; an empty kinds list knows none.
	extra := keyspace.NewGrammar("deepagents", append(append([]string{}, keyspace.DefaultKinds...), "notes", "plan"))
	for key, want := range map[string]keyspace.Problem{
		"deepagents:{a}:notes:x": keyspace.OK, "deepagents:{a}:plan": keyspace.OK,
		"deepagents:{a}:kv:x": keyspace.OK, "deepagents:{a}:other": keyspace.BadKind,
	} {
		if got := extra.Key([]byte(key), "a"); got != want {
			t.Errorf("extra kinds: Key(%q) = %s, want %s", key, problemName(got), problemName(want))
		}
	}
	if got := keyspace.NewGrammar("deepagents", nil).Key([]byte("deepagents:{a}:kv:x"), "a"); got != keyspace.BadKind {
		t.Errorf("no kinds: %s", problemName(got))
	}
	if want := "todos, todo, files, cache, events, lock, fence, kv, notes, plan"; extra.Kinds() != want {
		t.Errorf("Kinds() = %q, want %q", extra.Kinds(), want)
	}

	// Another prefix.
	p := keyspace.NewGrammar("app.v2", []string{"kv"})
	if p.Key([]byte("app.v2:{a}:kv:x"), "a") != keyspace.OK || p.Key([]byte("deepagents:{a}:kv:x"), "a") != keyspace.Outside {
		t.Error("prefix app.v2")
	}
	if p.WorkspacePrefix("w") != "app.v2:{w}:" {
		t.Errorf("WorkspacePrefix = %q", p.WorkspacePrefix("w"))
	}
}

func TestGrammarKindOf(t *testing.T) {
	g := keyspace.NewGrammar("deepagents", keyspace.DefaultKinds)
	for key, want := range map[string]string{
		"deepagents:{a}:todo:1": "todo", "deepagents:{a}:kv": "kv", "deepagents:{a}:nope:x": "nope",
		"deepagents:{a}:": "", "deepagents:{b}:kv:x": "", "kv": "",
	} {
		if got := g.KindOf([]byte(key), "a"); got != want {
			t.Errorf("KindOf(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestGrammarChannel(t *testing.T) {
	g := keyspace.NewGrammar("deepagents", keyspace.DefaultKinds)
	for ch, want := range map[string]keyspace.Problem{
		"deepagents:{a}:events":          keyspace.OK,
		"deepagents:{a}:events:todos":    keyspace.OK,
		"deepagents:{a}:events:":         keyspace.OK,
		"deepagents:{a}:eventsx":         keyspace.BadKind,
		"deepagents:{a}:event":           keyspace.BadKind,
		"deepagents:{a}:kv":              keyspace.BadKind,
		"deepagents:{a}:":                keyspace.BadKind,
		"deepagents:{b}:events":          keyspace.Outside,
		"events":                         keyspace.Outside,
		"deepagents:{a}events":           keyspace.Outside,
		"__redis__:invalidate":           keyspace.Outside,
		"deepagents:{a}:events\r\nfoo":   keyspace.BadKind,
		"deepagents:{a}:events:\xff\x00": keyspace.OK,
	} {
		if got := g.Channel([]byte(ch), "a"); got != want {
			t.Errorf("Channel(%q) = %s, want %s", ch, problemName(got), problemName(want))
		}
	}
}

// TestGrammarPattern: a pattern is inside the workspace only when its
// literal start is the workspace prefix: no wildcard, class or escape can
// stand in for any byte of it.
func TestGrammarPattern(t *testing.T) {
	g := keyspace.NewGrammar("deepagents", keyspace.DefaultKinds)
	for p, want := range map[string]keyspace.Problem{
		"deepagents:{a}:*":        keyspace.OK,
		"deepagents:{a}:kv:*":     keyspace.OK,
		"deepagents:{a}:":         keyspace.OK,
		"deepagents:{a}:[a-z]*":   keyspace.OK,
		"*":                       keyspace.Outside,
		"deepagents:*":            keyspace.Outside,
		"deepagents:{a*":          keyspace.Outside,
		"deepagents:{?}:*":        keyspace.Outside,
		"deepagents:{[ab]}:*":     keyspace.Outside,
		"deepagents:{a}*":         keyspace.Outside,
		"deepagents:{a}?*":        keyspace.Outside,
		"deepagents:\\{a}:*":      keyspace.Outside,
		"\\deepagents:{a}:*":      keyspace.Outside,
		"deepagents:{b}:*":        keyspace.Outside,
		"deepagents:{a}\\:*":      keyspace.Outside,
		"*deepagents:{a}:*":       keyspace.Outside,
		"deepagents:{ab}:*":       keyspace.Outside,
		"":                        keyspace.Outside,
		"deepagents:{a}:\\*":      keyspace.OK,
		"deepagents:{a}:kv:[^x]*": keyspace.OK,
	} {
		if got := g.Pattern([]byte(p), "a"); got != want {
			t.Errorf("Pattern(%q) = %s, want %s", p, problemName(got), problemName(want))
		}
	}
}

func TestGrammarParseKey(t *testing.T) {
	g := keyspace.NewGrammar("deepagents", keyspace.DefaultKinds)
	cases := []struct {
		key, ws, kind string
		ok            bool
	}{
		{"deepagents:{a}:kv:x", "a", "kv", true},
		{"deepagents:{team-1.x_y}:todos", "team-1.x_y", "todos", true},
		{"deepagents:{a}:nope:x", "a", "nope", false},
		{"deepagents:{a}:", "a", "", false},
		{"deepagents:{}:kv", "", "", false},
		{"deepagents:{a b}:kv", "", "", false},
		{"deepagents:{a}", "", "", false},
		{"deepagents:{a}kv", "", "", false},
		{"deepagents:{" + strings.Repeat("w", 65) + "}:kv", "", "", false},
		{"deepagents:a:kv", "", "", false},
		{"other:{a}:kv", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range cases {
		ws, kind, ok := g.ParseKey(tc.key)
		if ws != tc.ws || kind != tc.kind || ok != tc.ok {
			t.Errorf("ParseKey(%q) = %q, %q, %v; want %q, %q, %v", tc.key, ws, kind, ok, tc.ws, tc.kind, tc.ok)
		}
	}
}

func TestValidWorkspace(t *testing.T) {
	for ws, want := range map[string]bool{
		"a": true, "A-z_0.9": true, strings.Repeat("x", 64): true, strings.Repeat("x", 65): false,
		"": false, "a b": false, "a}": false, "a{": false, "a:b": false, "a*": false, "é": false, "a\x00": false,
	} {
		if got := keyspace.ValidWorkspace(ws); got != want {
			t.Errorf("ValidWorkspace(%q) = %v, want %v", ws, got, want)
		}
	}
}

// TestGrammarNoAlloc: checking a key allocates nothing.
func TestGrammarNoAlloc(t *testing.T) {
	g := keyspace.NewGrammar("deepagents", keyspace.DefaultKinds)
	key, ch := []byte("deepagents:{a}:todo:42"), []byte("deepagents:{a}:events:x")
	n := testing.AllocsPerRun(100, func() {
		if g.Key(key, "a") != keyspace.OK || g.Channel(ch, "a") != keyspace.OK || g.Pattern(ch, "a") != keyspace.OK {
			t.Fatal("not OK")
		}
	})
	if n != 0 {
		t.Errorf("%.1f allocations per check", n)
	}
}
