package tests

import (
	"testing"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// TestFeatureFlags: a disabled family's commands answer its error and touch
// nothing; the others keep working. The flag also comes from the environment.
func TestFeatureFlags(t *testing.T) {
	cfg := testutil.EnforcingConfig(t, "embedded")
	cfg.Features.Cache = false
	if err := config.ApplyEnv(&cfg, []string{"AGENTPROXY_FEATURES_TODOS=false"}); err != nil {
		t.Fatal(err)
	}
	a := testutil.StartProxy(t, cfg)
	c := testutil.Dial(t, a.Addr())
	for cmd, want := range map[string][]string{
		"-ERR cache is disabled on this proxy (features.cache)\r\n": {"CACHE.SET", "t", "h", "v"},
		"-ERR todos is disabled on this proxy (features.todos)\r\n": {"TODO.LIST"},
	} {
		if got := c.DoS(want...); got != cmd {
			t.Errorf("%v: %q, want %q", want, got, cmd)
		}
	}
	if got := c.DoS("EXISTS", "deepagents:{default}:cache:t:h"); got != ":0\r\n" {
		t.Errorf("disabled CACHE.SET wrote: %q", got)
	}
	if got := c.DoS("LOCK.INFO", "r"); got[0] == '-' {
		t.Errorf("coord is on, LOCK.INFO: %q", got)
	}
}
