package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestDefaultValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Upstream.URL != "embedded" || cfg.Listen.Addr != "127.0.0.1:6380" || cfg.Listen.MetricsAddr != "127.0.0.1:9121" ||
		cfg.Keyspace.Mode != "enforce" || cfg.Keyspace.DefaultWorkspace != "default" || cfg.Keyspace.Prefix != "deepagents" {
		t.Errorf("defaults differ from SPEC §12: %+v", cfg)
	}
}

func TestDefaultDataFile(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/var/state")
	if got := DefaultDataFile(); got != "/var/state/agentproxy/embedded.snapshot" {
		t.Errorf("with XDG_STATE_HOME: %q", got)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := DefaultDataFile(); got != "/home/u/.local/state/agentproxy/embedded.snapshot" {
		t.Errorf("with HOME: %q", got)
	}
}

func TestParse(t *testing.T) {
	cfg, err := Parse(Default(), `
[listen]
addr = "127.0.0.1:7000"
max_clients = 5
client_write_timeout = "1m30s"

[upstream]
url = "redis://:secret@10.0.0.5:6380/2"
read_timeout = "250ms"

[keyspace]
mode = "warn"
extra_kinds = ["notes"]
`, "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.Addr != "127.0.0.1:7000" || cfg.Listen.MaxClients != 5 || cfg.Listen.ClientWriteTimeout.Duration != 90*time.Second {
		t.Errorf("listen: %+v", cfg.Listen)
	}
	if cfg.Upstream.ReadTimeout.Duration != 250*time.Millisecond || cfg.Upstream.URL != "redis://:secret@10.0.0.5:6380/2" {
		t.Errorf("upstream: %+v", cfg.Upstream)
	}
	// Keys not in the file keep their defaults.
	if cfg.Upstream.WriteTimeout != Default().Upstream.WriteTimeout || cfg.Listen.MaxPipeline != Default().Listen.MaxPipeline {
		t.Errorf("defaults lost: %+v", cfg)
	}
	if cfg.Keyspace.Mode != "warn" || !reflect.DeepEqual(cfg.Keyspace.ExtraKinds, []string{"notes"}) {
		t.Errorf("keyspace: %+v", cfg.Keyspace)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid file: %v", err)
	}
}

func TestUnknownKeys(t *testing.T) {
	cases := []struct {
		name, text string
		keys       []string
	}{
		{"top-level", "lissten = 1\n", []string{"lissten"}},
		{"in a section", "[listen]\naddr = \"127.0.0.1:1\"\nmax_client = 5\n", []string{"listen.max_client"}},
		{"unknown section", "[upstreams]\nurl = \"x\"\n", []string{"upstreams"}},
		{"several", "[listen]\nadr = \"x\"\n[upstream]\ntimeout = \"1s\"\n[log]\nlevl = \"debug\"\n",
			[]string{"listen.adr", "upstream.timeout", "log.levl"}},
		{"in users", "[[users]]\nname = \"a\"\npassword = \"plain\"\n", []string{"users.password"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(Default(), tc.text, "bad.toml")
			if err == nil {
				t.Fatalf("unknown keys accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "bad.toml: ") {
				t.Errorf("error %q does not name the file", msg)
			}
			for _, k := range tc.keys {
				if !strings.Contains(msg, k) {
					t.Errorf("error %q does not name %q", msg, k)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"bad duration", "[upstream]\nread_timeout = \"5 seconds\"\n", []string{"read_timeout", "5 seconds", "not a duration"}},
		{"duration as a number", "[upstream]\nread_timeout = 5\n", []string{"read_timeout"}},
		{"string for an int", "[listen]\nmax_clients = \"many\"\n", []string{"max_clients"}},
		{"syntax", "[listen\naddr = 1\n", []string{"bad.toml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(Default(), tc.text, "bad.toml")
			if err == nil {
				t.Fatalf("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"500ms": 500 * time.Millisecond, "5s": 5 * time.Second, "1h30m": 90 * time.Minute, "0s": 0, "0": 0, "-1s": -time.Second,
	} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.Duration != want {
			t.Errorf("%q: %v %v, want %v", in, d.Duration, err, want)
		}
		b, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Errorf("%q does not round-trip through %q", in, b)
		}
	}
	for _, in := range []string{"", "5", "five seconds", "1d", "5 s"} {
		var d Duration
		err := d.UnmarshalText([]byte(in))
		if err == nil {
			t.Errorf("%q accepted as %v", in, d.Duration)
		} else if !strings.Contains(err.Error(), "e.g.") {
			t.Errorf("%q: error %q does not show an example", in, err)
		}
	}
}

func TestValidateReportsEverything(t *testing.T) {
	cfg := Default()
	cfg.Listen.Addr = "nonsense"
	cfg.Listen.MaxClients = 0
	cfg.Listen.MaxPipeline = -1
	cfg.Upstream.URL = "http://x"
	cfg.Upstream.ReadTimeout = D(-time.Second)
	cfg.Upstream.Conns = 0
	cfg.Keyspace.Mode = "strict"
	cfg.Keyspace.Prefix = "a:b"
	cfg.Keyspace.DefaultWorkspace = "no spaces"
	cfg.Keyspace.DefaultRole = "root"
	cfg.Log.Level = "verbose"
	cfg.Log.Format = "xml"
	cfg.Users = []User{
		{Name: "a", PasswordSHA256: "short", Role: "agent"},
		{Name: "a", PasswordSHA256: strings.Repeat("ab", 32), Role: "god", Workspaces: []string{"bad ws"}},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	msg := err.Error()
	keys := []string{
		"listen.addr", "listen.max_clients", "listen.max_pipeline", "upstream.url", "upstream.read_timeout",
		"upstream.conns", "keyspace.mode", "keyspace.prefix", "keyspace.default_workspace", "keyspace.default_role",
		"log.level", "log.format", "users[0].password_sha256", "users[0].workspaces", "users[1].name",
		"users[1].role", "users[1].workspaces[0]",
	}
	for _, k := range keys {
		if !strings.Contains(msg, k+": ") {
			t.Errorf("problem with %s not reported", k)
		}
	}
	// One problem per line, each starting with its key.
	lines := strings.Split(msg, "\n")
	if len(lines) < len(keys) {
		t.Errorf("%d lines for %d problems:\n%s", len(lines), len(keys), msg)
	}
	for _, l := range lines {
		if !strings.Contains(l, ": ") || strings.HasPrefix(l, " ") {
			t.Errorf("line %q does not start with a key", l)
		}
	}
}

func TestValidateCases(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		key  string // "" means valid
	}{
		{"redis url", func(c *Config) { c.Upstream.URL = "redis://localhost:6379/0" }, ""},
		{"cache to agents", func(c *Config) { c.Keyspace.Owners["cache"] = "agents" }, ""},
		{"extra kind owned", func(c *Config) {
			c.Keyspace.ExtraKinds = []string{"plans"}
			c.Keyspace.Owners["plans"] = "domain"
		}, ""},
		{"fence to agents", func(c *Config) { c.Keyspace.Owners["fence"] = "agents" }, "keyspace.owners.fence"},
		{"lock to agents", func(c *Config) { c.Keyspace.Owners["lock"] = "agents" }, "keyspace.owners.lock"},
		{"unknown kind owned", func(c *Config) { c.Keyspace.Owners["nope"] = "domain" }, "keyspace.owners.nope"},
		{"bad owner", func(c *Config) { c.Keyspace.Owners["kv"] = "me" }, "keyspace.owners.kv"},
		{"allow sort", func(c *Config) { c.Keyspace.AllowCommands = []string{"sort", "keys", "restore", "sort_ro"} }, ""},
		{"allow flushall", func(c *Config) { c.Keyspace.AllowCommands = []string{"flushall"} }, "keyspace.allow_commands[0]"},
		{"allow migrate", func(c *Config) { c.Keyspace.AllowCommands = []string{"sort", "migrate"} }, "keyspace.allow_commands[1]"},
		{"tiny budget", func(c *Config) { c.Listen.MemoryBudget = 1000 }, "listen.memory_budget"},
		{"rediss url", func(c *Config) { c.Upstream.URL = "rediss://u:p@redis.example:6380" }, ""},
		{"unix url", func(c *Config) { c.Upstream.URL = "unix:///tmp/redis.sock?db=1" }, ""},
		{"empty url", func(c *Config) { c.Upstream.URL = "" }, "upstream.url"},
		{"bad db", func(c *Config) { c.Upstream.URL = "redis://localhost:6379/x" }, "upstream.url"},
		{"metrics off", func(c *Config) { c.Listen.MetricsAddr = "" }, ""},
		{"bad metrics", func(c *Config) { c.Listen.MetricsAddr = "9121" }, "listen.metrics_addr"},
		{"huge request", func(c *Config) { c.Listen.MaxRequestBytes = 2 << 30 }, "listen.max_request_bytes"},
		{"zero timeouts", func(c *Config) { c.Listen.IdleTimeout = D(0); c.Embedded.SnapshotInterval = D(0) }, ""},
		{"negative snapshot interval", func(c *Config) { c.Embedded.SnapshotInterval = D(-time.Second) }, "embedded.snapshot_interval"},
		{"non-loopback without users", func(c *Config) { c.Listen.Addr = "0.0.0.0:6380" }, "listen.addr"},
		{"non-loopback with users", func(c *Config) {
			c.Listen.Addr = "0.0.0.0:6380"
			c.Users = []User{{Name: "a", PasswordSHA256: strings.Repeat("0", 64), Role: "agent", Workspaces: []string{"w"}}}
		}, ""},
		{"admin without workspaces", func(c *Config) {
			c.Users = []User{{Name: "root", PasswordSHA256: strings.Repeat("F", 64), Role: "admin"}}
		}, ""},
		{"any workspace", func(c *Config) {
			c.Users = []User{{Name: "a", PasswordSHA256: strings.Repeat("0", 64), Role: "readonly", Workspaces: []string{"*"}}}
		}, ""},
		{"extra kind with colon", func(c *Config) { c.Keyspace.ExtraKinds = []string{"ok", "a:b"} }, "keyspace.extra_kinds[1]"},
		{"auth failures", func(c *Config) { c.Auth.MaxFailures = 0 }, "auth.max_failures"},
		{"every mode", func(c *Config) { c.Keyspace.Mode = "off" }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tc.key == "" && err != nil:
				t.Errorf("valid config refused: %v", err)
			case tc.key != "" && err == nil:
				t.Errorf("invalid config accepted")
			case tc.key != "" && !strings.Contains(err.Error(), tc.key+": "):
				t.Errorf("error %q does not name %s", err, tc.key)
			}
		})
	}
}

func TestApplyEnv(t *testing.T) {
	cfg := Default()
	err := ApplyEnv(&cfg, []string{
		"AGENTPROXY_UPSTREAM_URL=redis://10.0.0.5:6379",
		"AGENTPROXY_LISTEN_MAX_CLIENTS=42",
		"AGENTPROXY_UPSTREAM_READ_TIMEOUT=750ms",
		"AGENTPROXY_LISTEN_REQUIRE_AUTH=true",
		"AGENTPROXY_LOG_LEVEL=debug",
		"AGENTPROXY_KEYSPACE_DEFAULT_WORKSPACE=acme",
		"AGENTPROXY_SOMETHING_ELSE=ignored", // other AGENTPROXY_ variables (flags, tests) are not config keys
		"PATH=/bin",
		"NOEQUALS",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Upstream.URL = "redis://10.0.0.5:6379"
	want.Listen.MaxClients = 42
	want.Upstream.ReadTimeout = D(750 * time.Millisecond)
	want.Listen.RequireAuth = true
	want.Log.Level = "debug"
	want.Keyspace.DefaultWorkspace = "acme"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("after ApplyEnv:\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestApplyEnvErrors(t *testing.T) {
	cfg := Default()
	err := ApplyEnv(&cfg, []string{
		"AGENTPROXY_LISTEN_MAX_CLIENTS=lots",
		"AGENTPROXY_UPSTREAM_READ_TIMEOUT=5",
		"AGENTPROXY_LISTEN_REQUIRE_AUTH=maybe",
		"AGENTPROXY_UPSTREAM_URL=redis://ok:1",
	})
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, v := range []string{"AGENTPROXY_LISTEN_MAX_CLIENTS", "AGENTPROXY_UPSTREAM_READ_TIMEOUT", "AGENTPROXY_LISTEN_REQUIRE_AUTH"} {
		if !strings.Contains(err.Error(), v+": ") {
			t.Errorf("error %q does not name %s", err, v)
		}
	}
	if !strings.Contains(err.Error(), `"lots"`) {
		t.Errorf("error %q does not show the bad value", err)
	}
}

// configKeys lists every key of the configuration as section.key, from the
// struct tags.
func configKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration{}) {
			out = append(out, configKeys(ft, prefix+name+".")...)
			continue
		}
		if ft.Kind() == reflect.Map {
			out = append(out, prefix+name+".*") // a table of its own
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

// TestExampleFile: config.example.toml, the documented reference, loads,
// validates, documents every key, and states the defaults.
func TestExampleFile(t *testing.T) {
	path := filepath.Join("..", "config.example.toml")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("config.example.toml is the documented reference and must exist at the repository root: %v", err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	// The example states the defaults (the data file in its documented
	// "~/" form).
	want := Default()
	want.Embedded.DataFile = cfg.Embedded.DataFile
	if len(cfg.Keyspace.ExtraKinds) == 0 {
		cfg.Keyspace.ExtraKinds = nil // "extra_kinds = []" states the default
	}
	if len(cfg.Keyspace.AllowCommands) == 0 {
		cfg.Keyspace.AllowCommands = nil
	}
	if len(cfg.Events.PlainWrites) == 0 {
		cfg.Events.PlainWrites = want.Events.PlainWrites
	}
	if len(cfg.TTL) == 0 {
		cfg.TTL = want.TTL
	}
	if len(cfg.Users) == 0 {
		cfg.Users = nil
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config.example.toml differs from the defaults:\n%+v\nwant\n%+v", cfg, want)
	}
	if !strings.HasSuffix(cfg.Embedded.DataFile, filepath.Join("agentproxy", "embedded.snapshot")) {
		t.Errorf("embedded.data_file %q is not the default place", cfg.Embedded.DataFile)
	}

	// Every key is present, set or in a commented-out example (users).
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tomlLine := regexp.MustCompile(`^(\[\[?[a-z_.]+\]\]?|[a-z_0-9]+ = .*)$`)
	var uncommented strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "# "); ok && tomlLine.MatchString(rest) {
			line = rest
		}
		uncommented.WriteString(line)
		uncommented.WriteByte('\n')
	}
	var all map[string]any
	if _, err := toml.Decode(uncommented.String(), &all); err != nil {
		t.Fatalf("config.example.toml with comments removed is not TOML (keep commented examples valid): %v", err)
	}
	present := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				walk(prefix+k+".", v)
			case []map[string]any:
				for _, e := range v {
					walk(prefix+k+".", e)
				}
			default:
				present[prefix+k] = true
			}
		}
	}
	walk("", all)
	var missing []string
	for _, k := range configKeys(reflect.TypeOf(Config{}), "") {
		if table, ok := strings.CutSuffix(k, ".*"); ok {
			found := false
			for p := range present {
				found = found || strings.HasPrefix(p, table+".")
			}
			if !found {
				missing = append(missing, table)
			}
			continue
		}
		if !present[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("config.example.toml does not document: %s", strings.Join(missing, ", "))
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzParse: any text either parses into a config or fails with an error;
// it never panics.
func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("..", "config.example.toml"))
	f.Add(string(b))
	f.Add("[listen]\naddr = \"x\"\n")
	f.Add("[[users]]\nname = 1\n")
	f.Add("[upstream]\nread_timeout = \"1h\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := Parse(Default(), text, "fuzz.toml")
		if err != nil {
			return
		}
		_ = cfg.Validate()
		env := []string{"AGENTPROXY_LISTEN_ADDR=" + text, "AGENTPROXY_UPSTREAM_CONNS=" + text}
		_ = ApplyEnv(&cfg, env)
	})
}

func TestLoadUsersFile(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/users.toml"
	os.WriteFile(good, []byte("[[users]]\nname = \"a\"\npassword_sha256 = \"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\"\nworkspaces = [\"w\"]\nrole = \"agent\"\n"), 0o600)
	c := Default()
	c.Users = []User{{Name: "b", PasswordSHA256: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", Workspaces: []string{"w"}, Role: "agent"}}
	if err := ApplyEnv(&c, []string{"AGENTPROXY_AUTH_USERS_FILE=" + good}); err != nil {
		t.Fatal(err)
	}
	if err := LoadUsersFile(&c); err != nil || len(c.Users) != 2 || c.Users[1].Name != "a" {
		t.Fatalf("users file: %v %+v", err, c.Users)
	}
	bad := dir + "/bad.toml"
	os.WriteFile(bad, []byte("[keyspace]\nmode = \"off\"\n"), 0o600)
	c = Default()
	c.Auth.UsersFile = bad
	if err := LoadUsersFile(&c); err == nil || !strings.Contains(err.Error(), "only [[users]]") {
		t.Errorf("a users file with other keys: %v", err)
	}
	c.Auth.UsersFile = dir + "/missing.toml"
	if err := LoadUsersFile(&c); err == nil {
		t.Error("a missing users file loaded")
	}
}
