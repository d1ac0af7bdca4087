package tests

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

// reloadConfig is a configuration file: the default workspace, the users
// (name:password:workspace) and the TTL rule of kind kv.
func reloadConfig(ws string, ttl string, users ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[keyspace]\ndefault_workspace = %q\n\n[[ttl]]\nkind = \"kv\"\ndefault = %q\n", ws, ttl)
	for _, u := range users {
		f := strings.Split(u, ":")
		fmt.Fprintf(&b, "\n[[users]]\nname = %q\npassword_sha256 = %q\nworkspaces = [%q]\nrole = \"agent\"\n", f[0], isoHash(f[1]), f[2])
	}
	return b.String()
}

func reloadMetric(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return strings.TrimPrefix(l, name+" ")
		}
	}
	return ""
}

// TestReloadOnSIGHUP: a changed TTL rule, a new user and a new default
// workspace apply after SIGHUP without a restart, and an open connection
// stays open; a broken file changes nothing, and the failure shows in the
// metrics and the log.
func TestReloadOnSIGHUP(t *testing.T) {
	r := testutil.StartRedis(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "agentproxy.toml")
	if err := os.WriteFile(file, []byte(reloadConfig("alpha", "100s", "u1:p1:alpha")), 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	p := testutil.StartProcess(t, nil, "--config", file, "--upstream", r.URL(), "--metrics", metrics)
	ttl := func(c *testutil.Conn, key string) int {
		t.Helper()
		if got := c.DoS("SET", key, "1"); got != "+OK\r\n" {
			t.Fatalf("SET %s: %q", key, got)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(testutil.Dial(t, r.Addr).DoS("TTL", key), ":")))
		return n
	}
	old := testutil.Dial(t, p.Addr)
	if got := old.DoS("WORKSPACE"); got != "$5\r\nalpha\r\n" {
		t.Fatalf("WORKSPACE before: %q", got)
	}
	if n := ttl(old, "deepagents:{alpha}:kv:a"); n < 99 || n > 100 {
		t.Fatalf("TTL before the reload: %d, want 100", n)
	}
	if got := testutil.Dial(t, p.Addr).DoS("AUTH", "u2", "p2"); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Fatalf("AUTH u2 before the reload: %q", got)
	}

	if err := os.WriteFile(file, []byte(reloadConfig("beta", "200s", "u1:p1:alpha", "u2:p2:beta")), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for reloadMetric(t, metrics, "agentproxy_config_reloads_total") != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("no reload 5 s after SIGHUP; log:\n%s", p.Log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := old.DoS("PING"); got != "+PONG\r\n" {
		t.Errorf("the connection opened before the reload: %q", got)
	}
	c := testutil.Dial(t, p.Addr)
	if got := c.DoS("WORKSPACE"); got != "$4\r\nbeta\r\n" {
		t.Errorf("default workspace after the reload: %q", got)
	}
	if n := ttl(c, "deepagents:{beta}:kv:b"); n < 199 || n > 200 {
		t.Errorf("TTL after the reload: %d, want 200", n)
	}
	if got := testutil.Dial(t, p.Addr).DoS("AUTH", "u2", "p2"); got != "+OK\r\n" {
		t.Errorf("AUTH of the new user: %q", got)
	}

	// A broken file: nothing changes, and it shows.
	if err := os.WriteFile(file, []byte("[keyspace\nmode = \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Cmd.Process.Signal(syscall.SIGHUP)
	for reloadMetric(t, metrics, "agentproxy_config_reload_failures_total") != "1" {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("no failed reload counted; log:\n%s", p.Log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := reloadMetric(t, metrics, "agentproxy_config_last_reload_successful"); got != "0" {
		t.Errorf("agentproxy_config_last_reload_successful after a broken file: %q", got)
	}
	if got := testutil.Dial(t, p.Addr).DoS("WORKSPACE"); got != "$4\r\nbeta\r\n" {
		t.Errorf("default workspace after a broken reload: %q", got)
	}
	if got := testutil.Dial(t, p.Addr).DoS("AUTH", "u2", "p2"); got != "+OK\r\n" {
		t.Errorf("AUTH after a broken reload: %q", got)
	}
	if n := ttl(c, "deepagents:{beta}:kv:c"); n < 199 || n > 200 {
		t.Errorf("TTL after a broken reload: %d, want 200", n)
	}
	if !strings.Contains(p.Log.String(), "configuration reload failed") {
		t.Errorf("the failed reload is not in the log:\n%s", p.Log)
	}
}
