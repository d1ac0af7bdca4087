package lint_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lint"
)

func TestLintFindsPlantedKeys(t *testing.T) {
	r := testutil.StartRedis(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	good := []string{"deepagents:{acme}:kv:a", "deepagents:{acme}:todos", "deepagents:{beta}:files:/x.md",
		"deepagents:{beta}:files:/x.md:v7:chunk:0"}
	staged := "deepagents:{beta}:files:/x.md:v9:chunk:0" // an upload in progress: has a TTL
	bad := map[string]string{
		"todos":                                    lint.Outside,
		"deepagents:acme:kv:x":                     lint.Outside,
		"deepagents:{acme}kv:x":                    lint.Outside,
		"deepagents:{a b}:kv:x":                    lint.Outside,
		"deepagents:{acme}:nosuch":                 lint.UnknownKind,
		"deepagents:{acme}:":                       lint.UnknownKind,
		"deepagents:{ghost}:kv:x":                  lint.UnknownWS,
		"otherprefix:{acme}:kv:one":                lint.Outside,
		"deepagents:{beta}:files:/x.md:v6:chunk:0": lint.OrphanChunk, // an old generation left behind
	}
	for _, k := range good {
		rdb.Set(ctx, k, "v", 0)
	}
	rdb.Del(ctx, "deepagents:{beta}:files:/x.md")
	rdb.HSet(ctx, "deepagents:{beta}:files:/x.md", "gen", "7", "version", "3")
	rdb.Set(ctx, staged, "v", time.Hour)
	for k := range bad {
		rdb.Set(ctx, k, "v", 0)
	}
	// Enough keys that SCAN takes several rounds.
	for i := 0; i < 3000; i++ {
		rdb.Set(ctx, "deepagents:{acme}:kv:n"+strconv.Itoa(i), "v", 0)
	}
	var progress bytes.Buffer
	rep, err := lint.Run(ctx, rdb, lint.Options{
		Grammar:    keyspace.NewGrammar("deepagents", keyspace.DefaultKinds),
		Workspaces: []string{"acme", "beta"}, Count: 100, Progress: &progress, ProgressEvery: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, cat := range bad {
		want[cat]++
	}
	for cat, n := range want {
		if rep.Findings[cat] != n {
			t.Errorf("%s: %d findings, want %d (%v)", cat, rep.Findings[cat], n, rep.Examples[cat])
		}
	}
	for k, cat := range bad {
		found := false
		for _, ex := range rep.Examples[cat] {
			if ex == k || strings.HasPrefix(ex, k+" ") {
				found = true
			}
		}
		if !found {
			t.Errorf("%q not listed under %s: %v", k, cat, rep.Examples[cat])
		}
	}
	if rep.Scanned != len(good)+len(bad)+1+3000 {
		t.Errorf("scanned %d keys", rep.Scanned)
	}
	if !strings.Contains(progress.String(), "keys scanned") {
		t.Errorf("no progress lines: %q", progress.String())
	}
}

// TestLintExitCodes runs the real binary: exit 1 with findings (each
// planted key printed), exit 0 on a clean keyspace.
func TestLintExitCodes(t *testing.T) {
	r := testutil.StartRedis(t)
	bin := filepath.Join(t.TempDir(), "agentproxy")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/agentproxy/agentproxy/cmd/agentproxy").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	rdb.Set(ctx, "deepagents:{acme}:kv:ok", "v", 0)

	run := func() (string, int) {
		cmd := exec.Command(bin, "lint", "--upstream", r.URL(), "--quiet")
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run(); code != 0 {
		t.Fatalf("clean keyspace: exit %d\n%s", code, out)
	}
	planted := []string{"stray", "deepagents:{acme}:bogus:1"}
	for _, k := range planted {
		rdb.Set(ctx, k, "v", 0)
	}
	out, code := run()
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, k := range planted {
		if !strings.Contains(out, k) {
			t.Errorf("%q not in report:\n%s", k, out)
		}
	}
}
