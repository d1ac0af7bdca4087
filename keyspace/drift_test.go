package keyspace_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/keyspace"
)

// TestCommandTableDrift regenerates the command table from a live
// redis-server and requires it to equal the checked-in commands_gen.go byte
// for byte, so a change of Redis (or of the generator) cannot slip by.
func TestCommandTableDrift(t *testing.T) {
	r := testutil.StartRedis(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to run keyspace/gen: %v", err)
	}
	gomod, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	out := filepath.Join(t.TempDir(), "commands_gen.go")

	gen := exec.Command(goBin, "run", "./keyspace/gen", "-addr", r.Addr, "-out", out)
	gen.Dir = root
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go run ./keyspace/gen: %v\n%s", err, b)
	}
	live, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	checkedIn, err := os.ReadFile(filepath.Join(root, "keyspace", "commands_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(live, checkedIn) {
		return
	}
	version := "unknown"
	if b, err := exec.Command("redis-server", "--version").Output(); err == nil {
		version = strings.TrimSpace(string(b))
	}
	t.Errorf("keyspace/commands_gen.go (from Redis %s) differs from the table generated from the live %s:\n%s\n"+
		"If the live Redis is the one to follow, regenerate from the module root with a redis-server running:\n"+
		"\tgo run ./keyspace/gen -addr 127.0.0.1:6379 -out keyspace/commands_gen.go",
		keyspace.RedisVersion, version, lineDiff(string(checkedIn), string(live)))
}

// lineDiff lists the lines only in a (-) and only in b (+), in order, at
// most 40 of them: enough to see which commands changed.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	inA, inB := map[string]int{}, map[string]int{}
	for _, l := range al {
		inA[l]++
	}
	for _, l := range bl {
		inB[l]++
	}
	var out []string
	for i, l := range al {
		if inB[l] == 0 {
			out = append(out, fmt.Sprintf("- %d: %s", i+1, l))
		}
	}
	for i, l := range bl {
		if inA[l] == 0 {
			out = append(out, fmt.Sprintf("+ %d: %s", i+1, l))
		}
	}
	if len(out) == 0 {
		out = append(out, "(same lines in a different order or with different line endings)")
	}
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("... and %d more", len(out)-40))
	}
	return strings.Join(out, "\n")
}

func TestLineDiff(t *testing.T) {
	got := lineDiff("a\nb\nc\n", "a\nx\nc\n")
	want := "- 2: b\n+ 2: x"
	if got != want {
		t.Fatalf("lineDiff = %q, want %q", got, want)
	}
	if got := lineDiff("a\nb", "b\na"); !strings.Contains(got, "different order") {
		t.Fatalf("lineDiff of reordered lines = %q", got)
	}
}
