package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// inspectStart runs a proxy over a real Redis with an admin and two agents.
func inspectStart(t *testing.T) (addr string, r *testutil.Redis) {
	t.Helper()
	r = testutil.StartRedis(t)
	if got := testutil.Dial(t, r.Addr).DoS("ACL", "SETUSER", "proxy", "on", ">sekrit", "~*", "&*", "+@all"); got != "+OK\r\n" {
		t.Fatalf("ACL SETUSER: %q", got)
	}
	cfg := testutil.EnforcingConfig(t, "redis://proxy:sekrit@"+r.Addr) // a password in the URL, to be masked
	cfg.Users = []config.User{
		{Name: "ops", PasswordSHA256: isoHash("ops-pw"), Role: "admin"},
		{Name: "u1", PasswordSHA256: isoHash("p1"), Workspaces: []string{"alpha"}, Role: "agent"},
		{Name: "u2", PasswordSHA256: isoHash("p2"), Workspaces: []string{"beta"}, Role: "agent"},
	}
	cfg.Listen.RequireAuth = true
	a := testutil.StartProxy(t, cfg)
	return a.Addr(), r
}

func inspectAs(t *testing.T, addr, user, pass string) *testutil.Conn {
	t.Helper()
	c := testutil.Dial(t, addr)
	if got := c.DoS("AUTH", user, pass); got != "+OK\r\n" {
		t.Fatalf("AUTH %s: %q", user, got)
	}
	return c
}

// TestProxyInspect: PROXY INFO describes the proxy and the caller, PROXY
// CLIENTS shows an agent its own connections only and an admin all of them,
// PROXY CONFIG GET masks secrets and is for admins, INFO has the section.
func TestProxyInspect(t *testing.T) {
	addr, _ := inspectStart(t)
	ops := inspectAs(t, addr, "ops", "ops-pw")
	u1a := inspectAs(t, addr, "u1", "p1")
	u1b := inspectAs(t, addr, "u1", "p1")
	u2 := inspectAs(t, addr, "u2", "p2")
	u1b.DoS("CLIENT", "SETNAME", "second")

	info := u1a.DoS("PROXY", "INFO")
	for _, want := range []string{"# Proxy\r\n", "user:u1\r\n", "role:agent\r\n", "workspace:alpha\r\n", "keyspace_mode:enforce\r\n",
		"upstream:standalone\r\n", "upstream_up:true\r\n", "connected_clients:4\r\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("PROXY INFO lacks %q:\n%s", want, info)
		}
	}
	if got := u1a.DoS("INFO", "proxy"); !strings.Contains(got, "# Proxy\r\n") || !strings.Contains(got, "user:u1\r\n") {
		t.Errorf("INFO proxy: %q", got)
	}
	if got := u2.DoS("INFO"); !strings.Contains(got, "# Proxy\r\n") || !strings.Contains(got, "# Server\r\n") {
		t.Errorf("an agent's INFO lacks the Server or Proxy section: %q", got)
	}

	lines := func(c *testutil.Conn) []string {
		t.Helper()
		body := string(c.Do("PROXY", "CLIENTS"))
		if !strings.HasPrefix(body, "$") {
			t.Fatalf("PROXY CLIENTS: %q", body)
		}
		_, text, _ := strings.Cut(body, "\r\n")
		return strings.Split(strings.TrimRight(text, "\r\n"), "\n")
	}
	got := lines(u1a)
	if len(got) != 2 {
		t.Fatalf("u1 sees %d connections, want its own 2:\n%s", len(got), strings.Join(got, "\n"))
	}
	for _, l := range got {
		if !strings.Contains(l, " user=u1 ") || !strings.Contains(l, " workspace=alpha ") {
			t.Errorf("u1 sees a connection not its own: %s", l)
		}
	}
	if !strings.Contains(got[1], " name=second ") {
		t.Errorf("the name set with CLIENT SETNAME does not show: %s", got[1])
	}
	if all := lines(ops); len(all) != 4 {
		t.Errorf("the admin sees %d connections, want 4:\n%s", len(all), strings.Join(all, "\n"))
	}

	// CONFIG GET: for admins; secrets masked.
	if got := u1a.DoS("PROXY", "CONFIG", "GET", "*"); !strings.HasPrefix(got, "-NOPERM ") {
		t.Errorf("an agent's PROXY CONFIG GET: %q", got)
	}
	if got := u1a.DoS("PROXY", "RELOAD"); !strings.HasPrefix(got, "-NOPERM ") {
		t.Errorf("an agent's PROXY RELOAD: %q", got)
	}
	all := ops.DoS("PROXY", "CONFIG", "GET", "*")
	for _, secret := range []string{"sekrit", isoHash("ops-pw"), isoHash("p1")} {
		if strings.Contains(all, secret) {
			t.Errorf("PROXY CONFIG GET * shows a secret %q:\n%s", secret, all)
		}
	}
	if got := ops.DoS("PROXY", "CONFIG", "GET", "keyspace.mode"); got != "*2\r\n$13\r\nkeyspace.mode\r\n$7\r\nenforce\r\n" {
		t.Errorf("PROXY CONFIG GET keyspace.mode: %q", got)
	}
	if got := ops.DoS("PROXY", "CONFIG", "GET", "users.1.*"); !strings.Contains(got, "$2\r\nu1\r\n") || !strings.Contains(got, "$3\r\n***\r\n") {
		t.Errorf("PROXY CONFIG GET users.1.*: %q", got)
	}
	ops.DoS("HELLO", "3")
	if got := ops.DoS("PROXY", "CONFIG", "GET", "listen.require_auth"); got != "%1\r\n$19\r\nlisten.require_auth\r\n$4\r\ntrue\r\n" {
		t.Errorf("PROXY CONFIG GET in RESP3: %q", got)
	}
	// Without a configuration source (started in-process), RELOAD says so.
	if got := ops.DoS("PROXY", "RELOAD"); !strings.HasPrefix(got, "-ERR reload failed") {
		t.Errorf("PROXY RELOAD without a source: %q", got)
	}
	for _, bad := range [][]string{{"PROXY"}, {"PROXY", "INFO", "x"}, {"PROXY", "NOPE"}, {"PROXY", "CONFIG", "SET", "a", "b"}} {
		if got := ops.DoS(bad...); !strings.HasPrefix(got, "-ERR ") {
			t.Errorf("%q: %q", bad, got)
		}
	}
	// Inside MULTI it is refused (it would reach Redis queued), and names
	// that would forge lines of PROXY CLIENTS are refused by HELLO too.
	ops.DoS("MULTI")
	if got := ops.DoS("PROXY", "INFO"); !strings.HasPrefix(got, "-ERR ") {
		t.Errorf("PROXY INFO in MULTI: %q", got)
	}
	ops.DoS("DISCARD")
	if got := u2.DoS("HELLO", "2", "SETNAME", "x id=1 user=ops role=admin"); !strings.HasPrefix(got, "-ERR Client names cannot contain spaces") {
		t.Errorf("HELLO SETNAME with spaces: %q", got)
	}
	if got := ops.DoS("PROXY", "HELP"); !strings.HasPrefix(got, "*") {
		t.Errorf("PROXY HELP: %q", got)
	}
}

// TestProxyReload: PROXY RELOAD from an admin applies the file as SIGHUP
// does (a new TTL rule for the next command, open connections kept), names
// the settings that need a restart, and reports a broken file as an error
// that changes nothing.
func TestProxyReload(t *testing.T) {
	r := testutil.StartRedis(t)
	file := filepath.Join(t.TempDir(), "agentproxy.toml")
	write := func(ttl string, maxClients int) {
		t.Helper()
		body := fmt.Sprintf("[listen]\nmax_clients = %d\n\n[[ttl]]\nkind = \"kv\"\ndefault = %q\n\n[[users]]\nname = \"ops\"\npassword_sha256 = %q\nrole = \"admin\"\n",
			maxClients, ttl, isoHash("ops-pw"))
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("100s", 100)
	p := testutil.StartProcess(t, nil, "--config", file, "--upstream", r.URL(), "--metrics", "")
	direct := testutil.Dial(t, r.Addr)
	agent := testutil.Dial(t, p.Addr)
	ops := testutil.Dial(t, p.Addr)
	ops.DoS("AUTH", "ops", "ops-pw")
	ttl := func(key string) string {
		t.Helper()
		agent.DoS("SET", key, "1")
		return direct.DoS("TTL", key)
	}
	if got := ttl("deepagents:{default}:kv:a"); got != ":100\r\n" {
		t.Fatalf("TTL before: %q", got)
	}
	write("200s", 100)
	if got := ops.DoS("PROXY", "RELOAD"); got != "+OK\r\n" {
		t.Fatalf("PROXY RELOAD: %q", got)
	}
	if got := ttl("deepagents:{default}:kv:b"); got != ":200\r\n" {
		t.Errorf("TTL after PROXY RELOAD on a connection opened before: %q", got)
	}
	// A setting that changes only on a restart: said so, the rest applied.
	write("300s", 50)
	if got := ops.DoS("PROXY", "RELOAD"); !strings.Contains(got, "restart") || !strings.Contains(got, "listen") {
		t.Errorf("PROXY RELOAD with a changed listen address: %q", got)
	}
	if got := ttl("deepagents:{default}:kv:c"); got != ":300\r\n" {
		t.Errorf("TTL after a reload that also changed listen: %q", got)
	}
	// A broken file: an error, nothing changes.
	if err := os.WriteFile(file, []byte("[[ttl]]\nkind = \"kv\"\ndefault = \"soon\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := ops.DoS("PROXY", "RELOAD"); !strings.HasPrefix(got, "-ERR reload failed, the previous configuration stays: ") {
		t.Errorf("PROXY RELOAD of a broken file: %q", got)
	}
	if got := ttl("deepagents:{default}:kv:d"); got != ":300\r\n" {
		t.Errorf("TTL after a broken reload: %q", got)
	}
	if got := ops.DoS("PING"); got != "+PONG\r\n" {
		t.Errorf("the admin's connection after the reloads: %q", got)
	}
}
