package tests

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// TestMetricsMove scrapes /metrics around traffic: the families exist,
// have help text, and the counters of what happened move.
func TestMetricsMove(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Users = []config.User{{Name: "u1", PasswordSHA256: isoHash("pw"), Workspaces: []string{"default"}, Role: "agent"}}
	cfg.Listen.MetricsAddr = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	a := testutil.StartProxy(t, cfg)
	scrape := func() map[string]float64 {
		t.Helper()
		resp, err := http.Get("http://" + cfg.Listen.MetricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := map[string]float64{}
		help := map[string]bool{}
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "# HELP ") {
				help[strings.Fields(l)[2]] = true
				continue
			}
			if l == "" || l[0] == '#' {
				continue
			}
			name, v, _ := strings.Cut(l, " ")
			f, _ := strconv.ParseFloat(v, 64)
			m[name] = f
			base, _, _ := strings.Cut(name, "{")
			for _, suffix := range []string{"_bucket", "_sum", "_count"} { // a histogram's series
				if b := strings.TrimSuffix(base, suffix); b != base && help[b] {
					base = b
				}
			}
			if strings.HasPrefix(base, "agentproxy_") && !help[base] {
				t.Errorf("%s has no help text", base)
			}
		}
		return m
	}
	before := scrape()
	// The same lint as promtool check metrics.
	resp, err := http.Get("http://" + cfg.Listen.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(resp.Body).Lint()
	resp.Body.Close()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	promtool := testutil.NeedBinary(t, "promtool", "prometheus")
	c := testutil.Dial(t, a.Addr())
	c.DoS("SET", "deepagents:{default}:kv:x", "1")
	c.DoS("GET", "deepagents:{other}:kv:x") // refused: another workspace
	c.DoS("AUTH", "nobody", "wrong")        // an auth failure
	c.DoS("CACHE.SET", "tool", "h", "v")
	c.DoS("CACHE.GET", "tool", "h")       // hit
	c.DoS("CACHE.GET", "tool", "missing") // miss
	c.DoS("LOCK.ACQUIRE", "res", "30000")
	c.DoS("LOCK.RELEASE", "res", "999") // refused by the domain's script: LOCKED
	c.DoS("HSET", "deepagents:{default}:kv:h", "f", "v")
	after := scrape()
	for _, name := range []string{"agentproxy_commands_total", `agentproxy_refused_total{code="NOPERM"}`, `agentproxy_refused_total{code="LOCKED"}`,
		"agentproxy_auth_failures_total", "agentproxy_cache_hits_total", "agentproxy_cache_misses_total", "agentproxy_connections_accepted_total",
		`agentproxy_family_commands_total{family="string"}`, `agentproxy_family_commands_total{family="hash"}`,
		`agentproxy_family_commands_total{family="cache"}`, `agentproxy_family_commands_total{family="lock"}`,
		`agentproxy_family_commands_total{family="connection"}`, "agentproxy_client_latency_seconds_count",
		`agentproxy_client_latency_seconds_bucket{le="+Inf"}`, "agentproxy_upstream_latency_seconds_count",
		"agentproxy_upstream_latency_seconds_sum"} {
		if after[name] <= before[name] {
			t.Errorf("%s did not move: %v -> %v", name, before[name], after[name])
		}
	}
	for _, name := range []string{"agentproxy_upstream_up", "agentproxy_budget_limit_bytes", "agentproxy_clients",
		`agentproxy_upstream_breaker_state{node="` + r.Addr + `"}`, "agentproxy_config_last_reload_successful", "agentproxy_warned_total"} {
		if _, ok := after[name]; !ok {
			t.Errorf("%s is not exported", name)
		}
	}
	// Every metric the Grafana dashboard plots exists.
	dash, err := os.ReadFile("../k8s/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	names := map[string]bool{}
	for n := range after {
		base, _, _ := strings.Cut(n, "{")
		names[base] = true
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range regexp.MustCompile(`agentproxy_[a-z_]+`).FindAllString(tg.Expr, -1) {
				if !names[m] {
					t.Errorf("dashboard panel %q plots %s, which is not exported", p.Title, m)
				}
			}
		}
	}
	// promtool itself (Debian's prometheus package), on a scrape after traffic.
	resp, err = http.Get("http://" + cfg.Listen.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if after["agentproxy_upstream_up"] != 1 {
		t.Errorf("agentproxy_upstream_up = %v", after["agentproxy_upstream_up"])
	}
}
