package keyspace

import (
	"strings"
	"testing"
)

// TestDecisionsCoverTable: every command of the generated table has exactly
// one decision, and the decision table names no command Redis lacks, so a
// regenerated table from a newer Redis fails here until someone decides.
func TestDecisionsCoverTable(t *testing.T) {
	known := map[string]bool{}
	for _, s := range generated {
		known[s.Name] = true
		if decisionOf[s.Name] == nil {
			t.Errorf("%s has no decision in keyspace/decisions.go: decide what it can do to other clients", s.Name)
		}
	}
	for _, r := range rules {
		if r.why == "" {
			t.Errorf("rule %q has no reason", r.names)
		}
		for _, n := range strings.Fields(r.names) {
			if !known[n] {
				t.Errorf("decision for %q, which Redis %s does not have", n, RedisVersion)
			}
		}
	}
}

// TestDangerousNotForAgents: no command of Redis's @dangerous category nor
// any it flags admin is plainly allowed for agents; the two the proxy
// answers itself are named here.
func TestDangerousNotForAgents(t *testing.T) {
	answered := map[string]bool{"info": true, "client|list": true}
	for _, s := range generated {
		if s.ACL&ACLDangerous == 0 && s.Redis&RAdmin == 0 {
			continue
		}
		c := byName[s.Name]
		if parent, sub, ok := cut(s.Name); ok {
			c = byName[parent].subs[sub]
		}
		switch c.Agents {
		case AgentsAdmin, AgentsDangerous, AgentsNever:
		case AgentsProxy:
			if !answered[s.Name] {
				t.Errorf("%s is @dangerous/admin but answered by the proxy without being listed here", s.Name)
			}
		default:
			t.Errorf("%s is @dangerous/admin in Redis but %s for agents", s.Name, c.Agents)
		}
	}
}
