package policy

import (
	"time"

	"github.com/agentproxy/agentproxy/keyspace"

	"github.com/tidwall/match"
)

// TTLRule is one compiled [[ttl]] rule.
type TTLRule struct {
	Pattern  string // a Redis-style glob over the whole key ("" for a kind rule)
	Default  time.Duration
	Max      time.Duration
	Require  bool
	kind     int
	patterns bool
}

// Writes is what a plain write may need beyond forwarding: a guard
// (fencing kinds), TTLs, events. Compiled once per policy; read without
// locks.
type Writes struct {
	// Any is false when no rule applies to any kind: writes skip planning.
	Any bool
	// OnlyFence: the only rules are fenced kinds (not strict): a write
	// that no lock can guard needs no plan at all.
	OnlyFence bool
	// checkTTL: some rule needs the write checked before it is sent (a
	// pattern rule, or one that requires a TTL).
	checkTTL bool
	// Fence and Evented are by kind index.
	Fence   []bool
	Strict  bool
	Evented []bool

	byKind   []*TTLRule
	patterns []TTLRule
}

// TTL is the rule for key (of kind index kind): the first pattern rule
// that matches, else the kind's, else nil.
func (w *Writes) TTL(kind int, key []byte) *TTLRule {
	for i := range w.patterns {
		if match.Match(string(key), w.patterns[i].Pattern) {
			return &w.patterns[i]
		}
	}
	if kind >= 0 && kind < len(w.byKind) {
		return w.byKind[kind]
	}
	return nil
}

// TTLConfig is one [[ttl]] entry of the configuration.
type TTLConfig struct {
	Kind, Pattern string
	Default, Max  time.Duration
	Require       bool
}

// compileWrites builds the write rules of c for the policy's kinds.
func (p *Policy) compileWrites(c Config) {
	names := p.Grammar.KindNames()
	w := &Writes{Fence: make([]bool, len(names)), Evented: make([]bool, len(names)),
		byKind: make([]*TTLRule, len(names)), Strict: c.FenceStrict}
	for _, k := range c.FenceKinds {
		if i := p.Grammar.KindIndex(k); i >= 0 {
			w.Fence[i], w.Any = true, true
		}
	}
	for _, k := range c.EventKinds {
		if i := p.Grammar.KindIndex(k); i >= 0 {
			w.Evented[i], w.Any = true, true
		}
	}
	for _, t := range c.TTL {
		r := TTLRule{Pattern: t.Pattern, Default: t.Default, Max: t.Max, Require: t.Require, kind: -1}
		w.Any = true
		if t.Pattern != "" {
			w.patterns = append(w.patterns, r)
			continue
		}
		if i := p.Grammar.KindIndex(t.Kind); i >= 0 && w.byKind[i] == nil {
			r.kind = i
			w.byKind[i] = &r
		}
	}
	w.OnlyFence = !w.Strict && len(c.EventKinds) == 0 && len(c.TTL) == 0
	w.checkTTL = len(w.patterns) > 0 || hasRequire(w)
	p.Writes = w
}

// hasRequire reports whether some rule requires a TTL.
func hasRequire(w *Writes) bool {
	for _, r := range w.byKind {
		if r != nil && r.Require {
			return true
		}
	}
	for _, r := range w.patterns {
		if r.Require {
			return true
		}
	}
	return false
}

// requiresTTL refuses what would leave a key of a kind that requires a TTL
// without one: PERSIST, GETEX ... PERSIST. (Other writes are followed by
// the rule's default or max, so the key keeps a TTL.)
func (p *Policy) requiresTTL(c *keyspace.Command, args [][]byte, acc *keyspace.Access, ws string) string {
	if c.Name != "persist" && !(c.Name == "getex" && hasArg(args, "persist")) {
		return ""
	}
	for _, i := range acc.Keys {
		_, kind := p.Grammar.KeyKind(args[i], ws)
		if r := p.Writes.TTL(kind, args[i]); r != nil && r.Require {
			return "NOPERM key '" + quote(args[i]) + "' must keep a TTL (a [[ttl]] rule requires one); '" + c.Name + "' would remove it"
		}
	}
	return ""
}
