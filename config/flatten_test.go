package config

import (
	"strings"
	"testing"
	"time"
)

func TestFlatten(t *testing.T) {
	c := Default()
	c.Users = []User{{Name: "ops", PasswordSHA256: "abc", Role: "admin", Workspaces: []string{"a", "b"}}}
	c.TTL = []TTL{{Kind: "kv", Default: Duration{90 * time.Second}}}
	c.Keyspace.Owners = map[string]string{"todo": "agents", "file": "domain"}
	kv := Flatten(c)
	if len(kv)%2 != 0 {
		t.Fatalf("odd length %d", len(kv))
	}
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		if _, dup := m[kv[i]]; dup {
			t.Errorf("%s twice", kv[i])
		}
		m[kv[i]] = kv[i+1]
	}
	for k, want := range map[string]string{
		"listen.addr": c.Listen.Addr, "users.0.name": "ops", "users.0.workspaces": "a,b", "ttl.0.default": "1m30s",
		"keyspace.owners": "file=domain,todo=agents", "upstream.url": c.Upstream.URL, "users.0.password_sha256": "abc",
	} {
		if m[k] != want {
			t.Errorf("%s = %q, want %q", k, m[k], want)
		}
	}
	for k := range m {
		if k != strings.ToLower(k) {
			t.Errorf("%s is not lowercase (CONFIG GET patterns are)", k)
		}
	}
}
