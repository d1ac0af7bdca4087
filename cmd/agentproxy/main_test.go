package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
)

// runCLI calls run and returns the exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clearEnv unsets every AGENTPROXY_ variable for the test, so the
// environment the tests run in cannot change what they see.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AGENTPROXY_") {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
}

var serveFlagNames = []string{"config", "listen", "upstream", "metrics", "workspace", "keyspace-mode", "data", "log-level"}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		code, out, _ := runCLI(t, arg)
		if code != 0 || out != "agentproxy "+buildVersion()+"\n" || buildVersion() == "" {
			t.Errorf("%s: %d %q", arg, code, out)
		}
	}
}

// TestCheckConfigEnvAndHelp: check-config sees the file as serve would,
// environment overrides included, and --help is help, not a file name.
func TestCheckConfigEnvAndHelp(t *testing.T) {
	clearEnv(t)
	good := writeFile(t, "good.toml", "[keyspace]\nmode = \"warn\"\n")
	t.Setenv("AGENTPROXY_KEYSPACE_MODE", "bogus")
	if code, _, errOut := runCLI(t, "check-config", good); code != 1 || !strings.Contains(errOut, "keyspace.mode") {
		t.Errorf("check-config with a bad override: %d %q", code, errOut)
	}
	t.Setenv("AGENTPROXY_KEYSPACE_MODE", "off")
	if code, out, errOut := runCLI(t, "check-config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check-config with a good override: %d %q %q", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "check-config", "--help"); code != 0 || !strings.Contains(out, "usage: agentproxy check-config") {
		t.Errorf("check-config --help: %d %q", code, out)
	}
}

func TestCheckConfig(t *testing.T) {
	clearEnv(t)
	good := writeFile(t, "good.toml", `
[listen]
addr = "127.0.0.1:7777"
[upstream]
url = "redis://127.0.0.1:6379/1"
read_timeout = "2s"
[keyspace]
mode = "warn"
`)
	code, out, errOut := runCLI(t, "check-config", good)
	if code != 0 || out != good+": ok\n" || errOut != "" {
		t.Errorf("good config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	bad := writeFile(t, "bad.toml", `
[listen]
addr = "nowhere"
max_clients = 0
[upstream]
url = "http://x"
read_timeout = "-1s"
[keyspace]
mode = "strict"
[log]
level = "loud"
`)
	code, out, errOut = runCLI(t, "check-config", bad)
	if code != 1 || out != "" {
		t.Errorf("bad config: exit %d, stdout %q", code, out)
	}
	if !strings.HasPrefix(errOut, bad+": invalid\n") {
		t.Errorf("bad config: stderr does not start with the file: %q", errOut)
	}
	for _, key := range []string{"listen.addr", "listen.max_clients", "upstream.url", "upstream.read_timeout", "keyspace.mode", "log.level"} {
		if !strings.Contains(errOut, key+": ") {
			t.Errorf("bad config: %s not reported in\n%s", key, errOut)
		}
	}

	unknown := writeFile(t, "unknown.toml", "[listen]\naddress = \"127.0.0.1:1\"\n[upstrem]\nurl = \"embedded\"\n")
	code, _, errOut = runCLI(t, "check-config", unknown)
	if code != 1 || !strings.Contains(errOut, "listen.address") || !strings.Contains(errOut, "upstrem") {
		t.Errorf("unknown keys: exit %d\n%s", code, errOut)
	}

	missing := filepath.Join(t.TempDir(), "missing.toml")
	if code, _, errOut = runCLI(t, "check-config", missing); code != 1 || !strings.Contains(errOut, "missing.toml") {
		t.Errorf("missing file: exit %d %q", code, errOut)
	}
	if code, _, errOut = runCLI(t, "check-config"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("no file: exit %d %q", code, errOut)
	}
	if code, _, _ = runCLI(t, "check-config", good, bad); code != 2 {
		t.Errorf("two files: exit %d, want 2", code)
	}
}

func TestCheckConfigExample(t *testing.T) {
	clearEnv(t)
	path := filepath.Join("..", "..", "config.example.toml")
	if code, out, errOut := runCLI(t, "check-config", path); code != 0 {
		t.Errorf("check-config config.example.toml: exit %d\n%s%s", code, out, errOut)
	}
}

func TestUnknownCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "frobnicate")
	if code != 2 || out != "" {
		t.Errorf("unknown command: exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, `unknown command "frobnicate"`) || !strings.Contains(errOut, "Usage:") {
		t.Errorf("unknown command: stderr %q", errOut)
	}
}

func TestHelp(t *testing.T) {
	clearEnv(t)
	for _, args := range [][]string{{"serve", "--help"}, {"serve", "-h"}, {"--help"}, {"help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, args...)
			if code != 0 {
				t.Errorf("exit %d, want 0", code)
			}
			text := out + errOut
			for _, f := range serveFlagNames {
				if !strings.Contains(text, "-"+f+" ") && !strings.Contains(text, "-"+f+"\n") {
					t.Errorf("flag -%s not described:\n%s", f, text)
				}
			}
			for _, sub := range []string{"serve", "check-config", "version", "lint"} {
				if !strings.Contains(text, "agentproxy "+sub) {
					t.Errorf("command %s not in the usage:\n%s", sub, text)
				}
			}
			// The defaults are shown.
			if !strings.Contains(text, "127.0.0.1:6380") || !strings.Contains(text, "enforce") {
				t.Errorf("defaults not shown:\n%s", text)
			}
		})
	}
}

func TestServeBadArguments(t *testing.T) {
	clearEnv(t)
	code, _, errOut := runCLI(t, "serve", "--no-such-flag")
	if code != 2 || !strings.Contains(errOut, "no-such-flag") {
		t.Errorf("unknown flag: exit %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "serve", "--keyspace-mode", "strict", "--listen", "127.0.0.1:0", "--metrics", "")
	if code != 2 || !strings.Contains(errOut, "keyspace.mode") {
		t.Errorf("invalid flag value: exit %d %q", code, errOut)
	}
	t.Setenv("AGENTPROXY_LISTEN_MAX_CLIENTS", "plenty")
	code, _, errOut = runCLI(t, "serve", "--listen", "127.0.0.1:0")
	if code != 2 || !strings.Contains(errOut, "AGENTPROXY_LISTEN_MAX_CLIENTS") {
		t.Errorf("bad environment value: exit %d %q", code, errOut)
	}
}

// TestServeStartFailure: a snapshot that cannot be loaded stops the start
// with exit 1 and says why.
func TestServeStartFailure(t *testing.T) {
	clearEnv(t)
	data := writeFile(t, "snap", "not a snapshot")
	done := make(chan struct{})
	var code int
	var errOut string
	go func() {
		defer close(done)
		code, _, errOut = runCLI(t, "serve", "--listen", "127.0.0.1:0", "--metrics", "", "--data", data)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("serve with a corrupt snapshot did not exit")
	}
	if code != 1 || !strings.Contains(errOut, "not an agentproxy snapshot") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
}

// TestPrecedence: flags win over the environment, which wins over the file,
// which wins over the defaults.
func TestPrecedence(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "c.toml", `
[listen]
addr = "127.0.0.1:1001"
max_clients = 7
[upstream]
url = "redis://127.0.0.1:7001"
[keyspace]
default_workspace = "fromfile"
[log]
level = "warn"
`)
	load := func(args ...string) config.Config {
		t.Helper()
		cfg, err := loadConfig(args, io.Discard)
		if err != nil {
			t.Fatalf("loadConfig %v: %v", args, err)
		}
		return cfg
	}

	cfg := load()
	if d := config.Default(); cfg.Listen.Addr != d.Listen.Addr || cfg.Upstream.URL != "embedded" {
		t.Errorf("no file, env or flags: %+v", cfg.Listen)
	}

	cfg = load("--config", file)
	if cfg.Listen.Addr != "127.0.0.1:1001" || cfg.Listen.MaxClients != 7 || cfg.Keyspace.DefaultWorkspace != "fromfile" || cfg.Log.Level != "warn" {
		t.Errorf("file: %+v", cfg)
	}
	if cfg.Upstream.ReadTimeout != config.Default().Upstream.ReadTimeout {
		t.Errorf("a key absent from the file lost its default: %v", cfg.Upstream.ReadTimeout)
	}

	// The file can also be named in the environment.
	t.Setenv("AGENTPROXY_CONFIG", file)
	if cfg = load(); cfg.Listen.Addr != "127.0.0.1:1001" {
		t.Errorf("AGENTPROXY_CONFIG: %q", cfg.Listen.Addr)
	}

	// Environment over file: both the section form and the flag form.
	t.Setenv("AGENTPROXY_LISTEN_MAX_CLIENTS", "9")
	t.Setenv("AGENTPROXY_UPSTREAM_URL", "redis://127.0.0.1:7002")
	t.Setenv("AGENTPROXY_LISTEN", "127.0.0.1:2002")
	t.Setenv("AGENTPROXY_WORKSPACE", "fromenv")
	t.Setenv("AGENTPROXY_LOG_LEVEL", "debug")
	cfg = load()
	if cfg.Listen.MaxClients != 9 || cfg.Upstream.URL != "redis://127.0.0.1:7002" || cfg.Listen.Addr != "127.0.0.1:2002" ||
		cfg.Keyspace.DefaultWorkspace != "fromenv" || cfg.Log.Level != "debug" {
		t.Errorf("environment over file: %+v", cfg)
	}
	// The flag form of a variable is the more specific one.
	t.Setenv("AGENTPROXY_UPSTREAM", "redis://127.0.0.1:7003")
	if cfg = load(); cfg.Upstream.URL != "redis://127.0.0.1:7003" {
		t.Errorf("AGENTPROXY_UPSTREAM over AGENTPROXY_UPSTREAM_URL: %q", cfg.Upstream.URL)
	}

	// Flags over everything.
	cfg = load("--listen", "127.0.0.1:3003", "--upstream", "redis://127.0.0.1:7004", "--workspace", "fromflag", "--log-level", "error",
		"--keyspace-mode", "off", "--data", "/tmp/x.snap", "--metrics", "")
	if cfg.Listen.Addr != "127.0.0.1:3003" || cfg.Upstream.URL != "redis://127.0.0.1:7004" || cfg.Keyspace.DefaultWorkspace != "fromflag" ||
		cfg.Log.Level != "error" || cfg.Keyspace.Mode != "off" || cfg.Embedded.DataFile != "/tmp/x.snap" || cfg.Listen.MetricsAddr != "" {
		t.Errorf("flags: %+v", cfg)
	}
	if cfg.Listen.MaxClients != 9 {
		t.Errorf("a key with no flag keeps its environment value: %d", cfg.Listen.MaxClients)
	}

	// --config beats AGENTPROXY_CONFIG.
	other := writeFile(t, "other.toml", "[listen]\nmax_clients = 3\n")
	t.Setenv("AGENTPROXY_LISTEN_MAX_CLIENTS", "")
	os.Unsetenv("AGENTPROXY_LISTEN_MAX_CLIENTS")
	if cfg = load("--config", other); cfg.Listen.MaxClients != 3 {
		t.Errorf("--config over AGENTPROXY_CONFIG: max_clients %d", cfg.Listen.MaxClients)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	clearEnv(t)
	if _, err := loadConfig([]string{"--config", filepath.Join(t.TempDir(), "none.toml")}, io.Discard); err == nil {
		t.Error("missing config file accepted")
	}
	bad := writeFile(t, "bad.toml", "[listen]\nmax_clients = 0\nbogus = 1\n")
	if _, err := loadConfig([]string{"--config", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "listen.bogus") {
		t.Errorf("unknown key: %v", err)
	}
	_, err := loadConfig([]string{"--help"}, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if _, err := loadConfig([]string{"--keyspace-mode", "nope", "--workspace", "a b"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "keyspace.mode") || !strings.Contains(err.Error(), "keyspace.default_workspace") {
		t.Errorf("two invalid flags: %v", err)
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"listen": "LISTEN", "keyspace-mode": "KEYSPACE_MODE", "log-level": "LOG_LEVEL"} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLintArguments(t *testing.T) {
	clearEnv(t)
	if code, _, errOut := runCLI(t, "lint"); code != 2 || !strings.Contains(errOut, "--upstream") {
		t.Errorf("lint without --upstream: exit %d %q", code, errOut)
	}
	if code, _, _ := runCLI(t, "lint", "--help"); code != 0 {
		t.Errorf("lint --help: exit %d", code)
	}
}
