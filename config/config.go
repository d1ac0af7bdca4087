// Package config is agentproxy's configuration: a TOML file decoded into
// Config over the defaults, environment overrides (AGENTPROXY_<SECTION>_<KEY>),
// and Validate, which reports every problem with its key at once.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

// Config is the whole configuration. Every key is documented, with its
// default, in config.example.toml.
type Config struct {
	Listen   Listen   `toml:"listen"`
	Upstream Upstream `toml:"upstream"`
	Breaker  Breaker  `toml:"breaker"`
	Embedded Embedded `toml:"embedded"`
	Keyspace Keyspace `toml:"keyspace"`
	Auth     Auth     `toml:"auth"`
	Features Features `toml:"features"`
	Fencing  Fencing  `toml:"fencing"`
	TTL      []TTL    `toml:"ttl"`
	Events   Events   `toml:"events"`
	Limits   Limits   `toml:"ratelimit"`
	Files    Files    `toml:"files"`
	Users    []User   `toml:"users"`
	Log      Log      `toml:"log"`
}

// User is one [[users]] entry.
type User struct {
	Name string `toml:"name"`
	// PasswordSHA256 is the hex SHA-256 of the password; plain passwords
	// never appear in config.
	PasswordSHA256 string   `toml:"password_sha256"`
	Workspaces     []string `toml:"workspaces"`
	Role           string   `toml:"role"`
}

// Fencing guards plain writes with the domain's locks (SPEC §6): a write
// to a key of these kinds is checked, atomically with it, against the lock
// on any resource that guards the key.
type Fencing struct {
	// Kinds whose plain writes are guarded. The domain's own kinds are
	// written only by domain commands, which fence themselves.
	Kinds []string `toml:"kinds"`
	// Strict checks every guarded write in Redis, not only those the
	// proxy knows may be locked: exact when several proxies share a Redis
	// (see docs), at the cost of a script per guarded write.
	Strict bool `toml:"strict"`
}

// TTL is one [[ttl]] rule: for the keys of a kind (or matching a pattern),
// the TTL a write that leaves a key without one gets, the longest allowed,
// and whether a TTL is required (PERSIST refused).
type TTL struct {
	Kind    string   `toml:"kind"`
	Pattern string   `toml:"pattern"`
	Default Duration `toml:"default"`
	Max     Duration `toml:"max"`
	Require bool     `toml:"require"`
}

// Events configures events on writes (SPEC §8).
type Events struct {
	// StreamMaxLen trims each workspace's event log (approximately).
	StreamMaxLen int `toml:"stream_maxlen"`
	// PlainWrites lists the kinds whose plain writes (SET, HSET, DEL, ...)
	// emit an event per written key after Redis acknowledges them. The
	// domain commands always emit, inside their scripts.
	PlainWrites []string `toml:"plain_writes"`
	// Coalesce, when positive, sends at most one event per written key
	// within this window (the last).
	Coalesce Duration `toml:"coalesce"`
}

// Limits are rate limits per user and per workspace (0: none). Past a
// limit commands answer TRYAGAIN with the wait.
type Limits struct {
	UserCommands      int `toml:"user_commands"`
	UserBytes         int `toml:"user_bytes"`
	WorkspaceCommands int `toml:"workspace_commands"`
	WorkspaceBytes    int `toml:"workspace_bytes"`
	// Burst is how much above the rate a bucket holds, in time at the
	// rate (a burst of 1s at 100 commands/s allows 100 at once).
	Burst Duration `toml:"burst"`
}

// Features switch the agent domain's command families on and off (the
// blueprint's rollout flags). A disabled family's commands answer
// "-ERR <feature> is disabled on this proxy (features.<name>)".
type Features struct {
	Cache bool `toml:"cache"` // CACHE.*
	Todos bool `toml:"todos"` // TODO.*
	Files bool `toml:"files"` // FILE.*
	Coord bool `toml:"coord"` // LOCK.*, EVENTS.*
}

// Files configures the agent file store (FILE.*, docs/FILES.md).
type Files struct {
	// ChunkSize is the size of the string keys a file's content is cut
	// into; reads and greps stream a few chunks at a time.
	ChunkSize int `toml:"chunk_size"`
	// MaxFileBytes bounds one file.
	MaxFileBytes int64 `toml:"max_file_bytes"`
	// UploadTTL is how long an unfinished FILE.BEGIN upload (and its staged
	// chunks in Redis) lives.
	UploadTTL Duration `toml:"upload_ttl"`
}

// Auth bounds password guessing.
type Auth struct {
	MaxFailures   int      `toml:"max_failures"`
	FailureWindow Duration `toml:"failure_window"`
	// UsersFile is a TOML file of more [[users]] (a mounted Kubernetes
	// Secret, say), read by LoadUsersFile.
	UsersFile string `toml:"users_file"`
}

// Listen is the client side.
type Listen struct {
	Addr        string `toml:"addr"`
	MetricsAddr string `toml:"metrics_addr"`
	// Pprof serves /debug/pprof/ on the metrics address.
	Pprof              bool     `toml:"pprof"`
	MaxClients         int      `toml:"max_clients"`
	MaxRequestBytes    int      `toml:"max_request_bytes"`
	MaxPipeline        int      `toml:"max_pipeline"`
	MaxOutputBytes     int      `toml:"max_output_bytes"`
	ClientWriteTimeout Duration `toml:"client_write_timeout"`
	IdleTimeout        Duration `toml:"idle_timeout"`
	ShutdownTimeout    Duration `toml:"shutdown_timeout"`
	// RequireAuth makes loopback clients authenticate too.
	RequireAuth bool `toml:"require_auth"`
	// MemoryBudget bounds the bytes the proxy holds for incomplete requests
	// and undelivered replies, across all clients; 0 sizes it to the
	// machine (a quarter of the memory limit, from 64 MiB to 4 GiB).
	MemoryBudget int64 `toml:"memory_budget"`
}

// Upstream is the Redis side.
type Upstream struct {
	URL              string   `toml:"url"`
	Conns            int      `toml:"conns"`
	DialTimeout      Duration `toml:"dial_timeout"`
	ReadTimeout      Duration `toml:"read_timeout"`
	WriteTimeout     Duration `toml:"write_timeout"`
	MaxIdleDedicated int      `toml:"max_idle_dedicated"`
	// MaxDedicatedPerWorkspace bounds the dedicated connections the clients
	// of one workspace hold at once (0: no limit).
	MaxDedicatedPerWorkspace int      `toml:"max_dedicated_per_workspace"`
	BackoffMax               Duration `toml:"backoff_max"`
	// TLS for rediss:// upstreams: the CA bundle that signs Redis's
	// certificate (default: the system's), a client certificate for
	// mutual TLS, and the name to verify instead of the host's.
	TLSCAFile     string `toml:"tls_ca_file"`
	TLSCertFile   string `toml:"tls_cert_file"`
	TLSKeyFile    string `toml:"tls_key_file"`
	TLSServerName string `toml:"tls_server_name"`
}

// Breaker configures the circuit breaker of each upstream node.
type Breaker struct {
	// ConsecutiveFailures opens the breaker (0: never).
	ConsecutiveFailures int `toml:"consecutive_failures"`
	// OpenTimeout is how long it stays open before a probe.
	OpenTimeout Duration `toml:"open_timeout"`
}

// Embedded configures the in-process store used when url = "embedded".
type Embedded struct {
	DataFile         string   `toml:"data_file"`
	SnapshotInterval Duration `toml:"snapshot_interval"`
}

// Keyspace is the key grammar and its enforcement.
type Keyspace struct {
	Prefix           string   `toml:"prefix"`
	Mode             string   `toml:"mode"`
	DefaultWorkspace string   `toml:"default_workspace"`
	DefaultRole      string   `toml:"default_role"`
	ExtraKinds       []string `toml:"extra_kinds"`
	AllowScripts     bool     `toml:"allow_scripts"`
	// AllowCommands names Redis @dangerous commands agents may use after
	// all (sort, sort_ro, keys, restore); they are refused by default.
	AllowCommands []string `toml:"allow_commands"`
	// AllowSelect lets agents SELECT a database other than the upstream's
	// (refused in enforce mode by default: Redis Cluster has only db 0,
	// and the domain commands always use the upstream's).
	AllowSelect bool `toml:"allow_select"`
	// Owners says who writes each kind with raw commands: "domain" (only
	// the domain commands, and admins) or "agents" (free-form). Kinds not
	// named keep their default: every domain kind is "domain", kv and the
	// extra kinds "agents".
	Owners map[string]string `toml:"owners"`
}

// Log configures zap.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Duration is a time.Duration written as "5s", "1h30m" in TOML and env.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. \"500ms\", \"5s\", \"1h\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// D is shorthand for building a Duration.
func D(d time.Duration) Duration { return Duration{d} }

// Default returns the configuration used when nothing is configured.
func Default() Config {
	return Config{
		Listen: Listen{
			Addr:               "127.0.0.1:6380",
			MetricsAddr:        "127.0.0.1:9121",
			MaxClients:         10000,
			MaxRequestBytes:    64 << 20,
			MaxPipeline:        1024,
			MaxOutputBytes:     256 << 20,
			ClientWriteTimeout: D(30 * time.Second),
			ShutdownTimeout:    D(10 * time.Second),
		},
		Upstream: Upstream{
			URL:                      "embedded",
			Conns:                    1,
			DialTimeout:              D(2 * time.Second),
			ReadTimeout:              D(5 * time.Second),
			WriteTimeout:             D(5 * time.Second),
			MaxIdleDedicated:         16,
			MaxDedicatedPerWorkspace: 1024,
			BackoffMax:               D(time.Second),
		},
		Breaker: Breaker{ConsecutiveFailures: 5, OpenTimeout: D(2 * time.Second)},
		Embedded: Embedded{
			DataFile:         DefaultDataFile(),
			SnapshotInterval: D(time.Minute),
		},
		Keyspace: Keyspace{Prefix: "deepagents", Mode: "enforce", DefaultWorkspace: "default",
			Owners: keyspace.DefaultOwners()},
		Auth:     Auth{MaxFailures: 10, FailureWindow: D(time.Minute)},
		Features: Features{Cache: true, Todos: true, Files: true, Coord: true},
		Fencing:  Fencing{Kinds: []string{"kv"}},
		Events:   Events{StreamMaxLen: 10000},
		Limits:   Limits{Burst: D(time.Second)},
		Files:    Files{ChunkSize: 256 << 10, MaxFileBytes: 1 << 30, UploadTTL: D(time.Hour)},
		Log:      Log{Level: "info", Format: "json"},
	}
}

// DefaultDataFile is where the embedded store keeps its snapshot unless
// told otherwise: $XDG_STATE_HOME/agentproxy/embedded.snapshot, or
// ~/.local/state/agentproxy/embedded.snapshot.
func DefaultDataFile() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return "agentproxy-embedded.snapshot"
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "agentproxy", "embedded.snapshot")
}

// Load reads a TOML file over the defaults. Unknown keys are errors.
func Load(path string) (Config, error) {
	cfg := Default()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	return Parse(cfg, string(b), path)
}

// Parse decodes TOML text over base. name labels errors.
func Parse(base Config, text, name string) (Config, error) {
	cfg := base
	// Decoding fills maps in place: give the copy its own.
	if base.Keyspace.Owners != nil {
		cfg.Keyspace.Owners = make(map[string]string, len(base.Keyspace.Owners))
		for k, v := range base.Keyspace.Owners {
			cfg.Keyspace.Owners[k] = v
		}
	}
	md, err := toml.Decode(text, &cfg)
	if err != nil {
		return base, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return base, fmt.Errorf("%s: unknown keys: %s", name, strings.Join(keys, ", "))
	}
	return cfg, nil
}

// LoadUsersFile adds the [[users]] of auth.users_file (nothing else may be
// in it) to c's. Call it after ApplyEnv, so the variable can name the file.
func LoadUsersFile(c *Config) error {
	if c.Auth.UsersFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.Auth.UsersFile)
	if err != nil {
		return fmt.Errorf("auth.users_file: %w", err)
	}
	var f struct {
		Users []User `toml:"users"`
	}
	md, err := toml.Decode(string(b), &f)
	if err != nil {
		return fmt.Errorf("auth.users_file %s: %w", c.Auth.UsersFile, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("auth.users_file %s: only [[users]] may be in it, found %s", c.Auth.UsersFile, und[0].String())
	}
	c.Users = append(c.Users, f.Users...)
	return nil
}

// ApplyEnv overrides keys from AGENTPROXY_<SECTION>_<KEY> variables, e.g.
// AGENTPROXY_UPSTREAM_URL or AGENTPROXY_LISTEN_MAX_CLIENTS.
func ApplyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "AGENTPROXY_") {
			env[k] = v
		}
	}
	var errs []error
	root := reflect.ValueOf(cfg).Elem()
	for i := 0; i < root.NumField(); i++ {
		sec := root.Type().Field(i).Tag.Get("toml")
		sv := root.Field(i)
		if sv.Kind() != reflect.Struct {
			continue
		}
		for j := 0; j < sv.NumField(); j++ {
			key := sv.Type().Field(j).Tag.Get("toml")
			name := "AGENTPROXY_" + strings.ToUpper(sec+"_"+key)
			v, ok := env[name]
			if !ok {
				continue
			}
			if err := setField(sv.Field(j), v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func setField(f reflect.Value, v string) error {
	if u, ok := f.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return u.UnmarshalText([]byte(v))
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(v)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		f.SetInt(n)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot be set from the environment")
		}
		var items []string
		for _, it := range strings.Split(v, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		f.Set(reflect.ValueOf(items))
	case reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		f.SetBool(b)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

var workspaceRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Validate reports every problem, each with its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.Listen.Addr); err != nil {
		bad("listen.addr", "%q is not host:port", c.Listen.Addr)
	}
	if c.Listen.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.Listen.MetricsAddr); err != nil {
			bad("listen.metrics_addr", "%q is not host:port (empty disables metrics)", c.Listen.MetricsAddr)
		}
	}
	positive := func(key string, v int) {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	positive("listen.max_clients", c.Listen.MaxClients)
	positive("listen.max_request_bytes", c.Listen.MaxRequestBytes)
	positive("listen.max_pipeline", c.Listen.MaxPipeline)
	positive("listen.max_output_bytes", c.Listen.MaxOutputBytes)
	positive("upstream.conns", c.Upstream.Conns)
	if c.Files.ChunkSize < 64 || c.Files.ChunkSize > 64<<20 {
		bad("files.chunk_size", "must be from 64 bytes to 64 MiB, got %d", c.Files.ChunkSize)
	}
	if c.Files.MaxFileBytes <= 0 {
		bad("files.max_file_bytes", "must be positive, got %d", c.Files.MaxFileBytes)
	}
	if c.Files.UploadTTL.Duration < time.Second {
		bad("files.upload_ttl", "must be at least 1s, got %s", c.Files.UploadTTL.Duration)
	}
	if c.Listen.MaxRequestBytes > 1<<30 {
		bad("listen.max_request_bytes", "must be at most 1 GiB, got %d", c.Listen.MaxRequestBytes)
	}
	nonNeg := func(key string, d Duration) {
		if d.Duration < 0 {
			bad(key, "must not be negative, got %s", d.Duration)
		}
	}
	nonNeg("listen.client_write_timeout", c.Listen.ClientWriteTimeout)
	nonNeg("listen.idle_timeout", c.Listen.IdleTimeout)
	nonNeg("listen.shutdown_timeout", c.Listen.ShutdownTimeout)
	nonNeg("upstream.dial_timeout", c.Upstream.DialTimeout)
	nonNeg("upstream.read_timeout", c.Upstream.ReadTimeout)
	nonNeg("upstream.write_timeout", c.Upstream.WriteTimeout)
	nonNeg("upstream.backoff_max", c.Upstream.BackoffMax)
	nonNeg("embedded.snapshot_interval", c.Embedded.SnapshotInterval)
	if c.Breaker.ConsecutiveFailures < 0 {
		bad("breaker.consecutive_failures", "must not be negative (0: the breaker never opens), got %d", c.Breaker.ConsecutiveFailures)
	}
	if c.Breaker.OpenTimeout.Duration < 10*time.Millisecond {
		bad("breaker.open_timeout", "must be at least 10ms, got %s", c.Breaker.OpenTimeout.Duration)
	}
	if c.Upstream.MaxDedicatedPerWorkspace < 0 {
		bad("upstream.max_dedicated_per_workspace", "must not be negative (0: no limit), got %d", c.Upstream.MaxDedicatedPerWorkspace)
	}
	if c.Upstream.MaxIdleDedicated < 0 {
		bad("upstream.max_idle_dedicated", "must not be negative, got %d", c.Upstream.MaxIdleDedicated)
	}
	if c.Upstream.URL == "" {
		bad("upstream.url", "must be \"embedded\" or a redis:// URL")
	} else if c.Upstream.URL != "embedded" {
		if t, err := upstream.ParseTarget(c.Upstream.URL); err != nil {
			bad("upstream.url", "%v", err)
		} else if u := c.Upstream; t.Node.TLS == nil && u.TLSCAFile+u.TLSCertFile+u.TLSKeyFile+u.TLSServerName != "" {
			bad("upstream.tls_*", "TLS settings need a TLS upstream URL (rediss://, rediss-sentinel://, rediss-cluster://)")
		}
	}
	if (c.Upstream.TLSCertFile == "") != (c.Upstream.TLSKeyFile == "") {
		bad("upstream.tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	switch c.Keyspace.Mode {
	case "enforce", "warn", "off":
	default:
		bad("keyspace.mode", "must be enforce, warn or off, got %q", c.Keyspace.Mode)
	}
	if !workspaceRE.MatchString(c.Keyspace.Prefix) {
		bad("keyspace.prefix", "must match [A-Za-z0-9_.-]{1,64}, got %q", c.Keyspace.Prefix)
	}
	if !workspaceRE.MatchString(c.Keyspace.DefaultWorkspace) {
		bad("keyspace.default_workspace", "%q must match [A-Za-z0-9_.-]{1,64}", c.Keyspace.DefaultWorkspace)
	}
	switch c.Keyspace.DefaultRole {
	case "", "agent", "readonly", "admin":
	default:
		bad("keyspace.default_role", "must be agent, readonly or admin, got %q", c.Keyspace.DefaultRole)
	}
	for i, k := range c.Keyspace.ExtraKinds {
		if k == "" || strings.ContainsAny(k, ":{}*?[] \t\r\n") {
			bad(fmt.Sprintf("keyspace.extra_kinds[%d]", i), "%q must be a non-empty word without ':', braces, glob characters or spaces", k)
		}
	}
	if c.Listen.MemoryBudget < 0 || c.Listen.MemoryBudget > 0 && c.Listen.MemoryBudget < 1<<20 {
		bad("listen.memory_budget", "must be 0 (sized to the machine) or at least 1 MiB, got %d", c.Listen.MemoryBudget)
	}
	kinds := map[string]bool{}
	for _, k := range append(append([]string{}, keyspace.DefaultKinds...), c.Keyspace.ExtraKinds...) {
		kinds[k] = true
	}
	for _, k := range sortedKeys(c.Keyspace.Owners) {
		o := c.Keyspace.Owners[k]
		switch {
		case !kinds[k]:
			bad("keyspace.owners."+k, "%q is not a kind (kinds: %s and keyspace.extra_kinds)", k, strings.Join(keyspace.DefaultKinds, ", "))
		case o != "domain" && o != "agents":
			bad("keyspace.owners."+k, "must be \"domain\" or \"agents\", got %q", o)
		case o == "agents" && (k == "lock" || k == "fence"):
			bad("keyspace.owners."+k, "must stay \"domain\": raw writes to locks or fence counters would break fencing")
		}
	}
	for i, name := range c.Keyspace.AllowCommands {
		if !keyspace.Confinable(name) {
			bad(fmt.Sprintf("keyspace.allow_commands[%d]", i), "%q cannot be allowed for agents (only %s)", name, strings.Join(keyspace.ConfinableNames(), ", "))
		}
	}
	for i, k := range c.Fencing.Kinds {
		if !kinds[k] {
			bad(fmt.Sprintf("fencing.kinds[%d]", i), "%q is not a kind", k)
		} else if c.owner(k) == "domain" {
			bad(fmt.Sprintf("fencing.kinds[%d]", i), "%q is written only by the domain commands, which fence themselves", k)
		}
	}
	for i, k := range c.Events.PlainWrites {
		if !kinds[k] {
			bad(fmt.Sprintf("events.plain_writes[%d]", i), "%q is not a kind", k)
		}
	}
	if c.Events.StreamMaxLen <= 0 {
		bad("events.stream_maxlen", "must be positive, got %d", c.Events.StreamMaxLen)
	}
	nonNeg("events.coalesce", c.Events.Coalesce)
	for i, r := range c.TTL {
		key := fmt.Sprintf("ttl[%d]", i)
		switch {
		case r.Kind == "" && r.Pattern == "":
			bad(key, "needs kind or pattern")
		case r.Kind != "" && r.Pattern != "":
			bad(key, "takes kind or pattern, not both")
		case r.Kind != "" && !kinds[r.Kind]:
			bad(key+".kind", "%q is not a kind", r.Kind)
		case r.Kind != "" && c.owner(r.Kind) == "domain":
			bad(key+".kind", "%q is written only by the domain commands, which set their own TTLs (a rule would be ignored); TTL rules apply to kinds agents write with plain commands", r.Kind)
		}
		if r.Default.Duration < 0 || r.Max.Duration < 0 {
			bad(key, "durations must not be negative")
		}
		if r.Default.Duration > 0 && r.Max.Duration > 0 && r.Default.Duration > r.Max.Duration {
			bad(key+".default", "%s is longer than max %s", r.Default.Duration, r.Max.Duration)
		}
		if r.Require && r.Default.Duration == 0 && r.Max.Duration == 0 {
			bad(key+".require", "needs default or max: they are what gives every written key its TTL")
		}
		if r.Default.Duration == 0 && r.Max.Duration == 0 && !r.Require {
			bad(key, "sets nothing: give default, max or require")
		}
		if (r.Default.Duration > 0 && r.Default.Duration < time.Millisecond) || (r.Max.Duration > 0 && r.Max.Duration < time.Millisecond) {
			bad(key, "TTLs are at least 1ms")
		}
	}
	for _, l := range []struct {
		key string
		v   int
	}{{"ratelimit.user_commands", c.Limits.UserCommands}, {"ratelimit.user_bytes", c.Limits.UserBytes},
		{"ratelimit.workspace_commands", c.Limits.WorkspaceCommands}, {"ratelimit.workspace_bytes", c.Limits.WorkspaceBytes}} {
		if l.v < 0 {
			bad(l.key, "must not be negative (0: no limit), got %d", l.v)
		}
	}
	if c.Limits.Burst.Duration <= 0 {
		bad("ratelimit.burst", "must be positive, got %s", c.Limits.Burst.Duration)
	}
	if c.Auth.MaxFailures <= 0 {
		bad("auth.max_failures", "must be positive, got %d", c.Auth.MaxFailures)
	}
	nonNeg("auth.failure_window", c.Auth.FailureWindow)
	seen := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		if u.Name == "" || strings.ContainsAny(u.Name, " \t\r\n") {
			bad(key+".name", "must be a non-empty word, got %q", u.Name)
		} else if seen[u.Name] {
			bad(key+".name", "user %q is defined twice", u.Name)
		}
		seen[u.Name] = true
		if !isHex64(u.PasswordSHA256) {
			bad(key+".password_sha256", "must be the 64 hex digits of the password's SHA-256 (echo -n 'pass' | sha256sum)")
		}
		switch u.Role {
		case "agent", "readonly", "admin":
		default:
			bad(key+".role", "must be agent, readonly or admin, got %q", u.Role)
		}
		if len(u.Workspaces) == 0 && u.Role != "admin" {
			bad(key+".workspaces", "must list at least one workspace (or \"*\")")
		}
		for j, w := range u.Workspaces {
			if w != "*" && !workspaceRE.MatchString(w) {
				bad(fmt.Sprintf("%s.workspaces[%d]", key, j), "%q must match [A-Za-z0-9_.-]{1,64} or be \"*\"", w)
			}
		}
	}
	if c.Listen.RequireAuth && len(c.Users) == 0 {
		bad("listen.require_auth", "needs [[users]] to authenticate against")
	}
	if host, _, err := net.SplitHostPort(c.Listen.Addr); err == nil && !isLoopback(host) && len(c.Users) == 0 {
		bad("listen.addr", "%q is not a loopback address: listening beyond loopback requires [[users]] (clients must AUTH)", c.Listen.Addr)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		bad("log.format", "must be json or console, got %q", c.Log.Format)
	}
	return errors.Join(errs...)
}

// owner is who writes kind k with raw commands (keyspace.owners, else the
// default: domain for the domain's kinds, agents for the rest).
func (c *Config) owner(k string) string {
	if o := c.Keyspace.Owners[k]; o != "" {
		return o
	}
	if o := keyspace.DefaultOwners()[k]; o != "" {
		return o
	}
	return "agents"
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// isLoopback reports whether host is a loopback name or address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
