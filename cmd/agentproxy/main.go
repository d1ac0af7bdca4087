// Command agentproxy is a Redis-protocol sidecar proxy for AI agents. Run
// without arguments it serves on 127.0.0.1:6380 with an embedded store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lint"
	"github.com/agentproxy/agentproxy/proxy"
)

// version may be set at build time with -ldflags "-X main.version=...";
// otherwise it comes from the build (buildVersion).
var version = ""

// buildVersion is the version of this binary: the -X value, else the
// module version (go install ...@v1.2.3), else the VCS revision the
// binary was built from (with "-dirty" for uncommitted changes), else
// "dev".
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.modified":
			if st.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	return "dev+" + rev + dirty
}

// memOverhead is what the process needs beyond the memory budget: the Go
// runtime, and the fixed per-connection buffers and goroutines.
const memOverhead = 64 << 20

const usage = `agentproxy: a Redis-protocol sidecar proxy that makes shared agent state safe.

Usage:
  agentproxy                      serve with defaults (embedded store on 127.0.0.1:6380)
  agentproxy serve [flags]        serve (flags below)
  agentproxy check-config FILE    validate a config file; exit 1 listing every problem
  agentproxy lint --upstream URL  scan a keyspace for keys outside the grammar and orphaned
                                  file chunks; exit 1 on findings
  agentproxy migrate-dir --from DIR [--workspace WS]  upload a directory tree into FILE.* via a proxy
  agentproxy export-dir --to DIR [--workspace WS]     write FILE.* files out into a directory tree
  agentproxy export --upstream URL --workspace WS --out FILE   a workspace's keys (every type, TTLs) to a checksummed file
  agentproxy import --upstream URL --in FILE [--replace] [--verify]   and back (the whole file is checked first)
  agentproxy version, --version   print the version (from the build: module version or VCS revision)

Flags of serve (each also AGENTPROXY_<FLAG> in the environment, e.g.
AGENTPROXY_UPSTREAM; flags win over the environment, which wins over the file):
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		cmd = "version"
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "check-config":
		return checkConfig(args, stdout, stderr)
	case "lint":
		return lintCmd(args, stdout, stderr)
	case "migrate-dir":
		return migrateDir(args, stdout, stderr)
	case "export-dir":
		return exportDir(args, stdout, stderr)
	case "export":
		return exportCmd(args, stdout, stderr)
	case "import":
		return importCmd(args, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "agentproxy %s\n", buildVersion())
		return 0
	case "help":
		d := config.Default()
		serveFlags(stdout, &d, new(string)).Usage()
		return 0
	default:
		fmt.Fprintf(stderr, "agentproxy: unknown command %q\n\n", cmd)
		d := config.Default()
		serveFlags(stderr, &d, new(string)).Usage()
		return 2
	}
}

// serveFlags declares the serve flags over cfg, with environment defaults.
func serveFlags(out io.Writer, cfg *config.Config, file *string) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(file, "config", "", "TOML config file (see config.example.toml)")
	fs.StringVar(&cfg.Listen.Addr, "listen", cfg.Listen.Addr, "client listen address (listen.addr)")
	fs.StringVar(&cfg.Upstream.URL, "upstream", cfg.Upstream.URL, "embedded, redis://[user:pass@]host:port[/db], rediss://..., unix:///path, redis-sentinel://host:port[,host:port]/master or redis-cluster://host:port[,host:port] (upstream.url)")
	fs.StringVar(&cfg.Listen.MetricsAddr, "metrics", cfg.Listen.MetricsAddr, "metrics and health address; empty disables (listen.metrics_addr)")
	fs.StringVar(&cfg.Keyspace.DefaultWorkspace, "workspace", cfg.Keyspace.DefaultWorkspace, "workspace of unauthenticated loopback clients (keyspace.default_workspace)")
	fs.StringVar(&cfg.Keyspace.Mode, "keyspace-mode", cfg.Keyspace.Mode, "enforce, warn or off (keyspace.mode)")
	fs.StringVar(&cfg.Embedded.DataFile, "data", cfg.Embedded.DataFile, "embedded store snapshot file (embedded.data_file)")
	fs.StringVar(&cfg.Log.Level, "log-level", cfg.Log.Level, "debug, info, warn or error (log.level)")
	return fs
}

// loadConfig builds the configuration: defaults, file, environment, flags.
func loadConfig(args []string, stderr io.Writer) (config.Config, error) {
	// The file is named by a flag or the environment; find it first.
	var file string
	probe := config.Default()
	fs := serveFlags(io.Discard, &probe, &file)
	if err := fs.Parse(args); err != nil {
		serveFlags(stderr, &probe, &file).Usage()
		return probe, err
	}
	if file == "" {
		file = os.Getenv("AGENTPROXY_CONFIG")
	}
	cfg := config.Default()
	if file != "" {
		var err error
		if cfg, err = config.Load(file); err != nil {
			return cfg, err
		}
	}
	if err := config.ApplyEnv(&cfg, os.Environ()); err != nil {
		return cfg, err
	}
	// Flag-named environment variables, then the flags themselves.
	fs = serveFlags(stderr, &cfg, &file)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		if v, ok := os.LookupEnv("AGENTPROXY_" + envName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("AGENTPROXY_%s: %w", envName(f.Name), err))
			}
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if err := config.LoadUsersFile(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func envName(flag string) string {
	b := []byte(flag)
	for i, c := range b {
		switch {
		case c == '-':
			b[i] = '_'
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func newLogger(cfg config.Log, stderr io.Writer) *zap.Logger {
	level, _ := zapcore.ParseLevel(cfg.Level)
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.EncodeTime = "ts", zapcore.ISO8601TimeEncoder
	var encoder zapcore.Encoder = zapcore.NewJSONEncoder(enc)
	if cfg.Format == "console" {
		encoder = zapcore.NewConsoleEncoder(enc)
	}
	return zap.New(zapcore.NewCore(encoder, zapcore.AddSync(stderr), level))
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	defer log.Sync()
	if os.Getenv("GOMEMLIMIT") == "" {
		// Buffers freed by clients that were cut or went away are garbage
		// until the next collection; a soft limit just above the memory
		// budget makes the collector (and the return of memory to the OS)
		// keep the process near what it really holds.
		debug.SetMemoryLimit(app.MemoryBudget(cfg) + memOverhead/2)
	}
	proxy.Version = buildVersion()
	a, err := app.Start(cfg, log)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	// Reload (SIGHUP, PROXY RELOAD): the file, the environment and the flags again.
	a.SetSource(func() (config.Config, error) { return loadConfig(args, io.Discard) })
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				a.ReloadFromSource()
				continue
			}
			log.Info("shutting down", zap.String("signal", s.String()))
			break wait
		case err := <-a.Done():
			log.Error("listener failed", zap.Error(err))
			break wait
		}
	}
	signal.Stop(sig)
	if err := a.Shutdown(); err != nil {
		log.Error("shutdown", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	const checkUsage = "usage: agentproxy check-config FILE\n\nValidates FILE with the AGENTPROXY_<SECTION>_<KEY> environment overrides applied, as serve\nwould load it; exit 1 listing every problem.\n"
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, checkUsage)
		return 0
	}
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, checkUsage)
		return 2
	}
	cfg, err := config.Load(args[0])
	if err == nil {
		err = config.ApplyEnv(&cfg, os.Environ())
	}
	if err == nil {
		err = config.LoadUsersFile(&cfg)
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid\n%v\n", args[0], err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", args[0])
	return 0
}

func lintCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("upstream", os.Getenv("AGENTPROXY_UPSTREAM"), "redis://[user:pass@]host:port[/db] or rediss://... to scan")
	file := fs.String("config", "", "config file: prefix, extra kinds and known workspaces (users and default)")
	prefix := fs.String("prefix", "", "key prefix (default: from config, else deepagents)")
	workspaces := fs.String("workspaces", "", "comma-separated known workspaces; keys of others are findings")
	count := fs.Int64("count", 1000, "SCAN COUNT hint")
	match := fs.String("match", "*", "only scan keys matching this pattern")
	quiet := fs.Bool("quiet", false, "no progress lines")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: agentproxy lint --upstream URL [flags]\n\nScans with SCAN (never KEYS); exit 0: clean, 1: findings, 2: error.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *url == "" || *url == "embedded" {
		fmt.Fprintln(stderr, "agentproxy lint: --upstream redis://host:port is required")
		return 2
	}
	cfg := config.Default()
	if *file != "" {
		var err error
		if cfg, err = config.Load(*file); err != nil {
			fmt.Fprintf(stderr, "agentproxy lint: %v\n", err)
			return 2
		}
	}
	if *prefix != "" {
		cfg.Keyspace.Prefix = *prefix
	}
	var known []string
	if *workspaces != "" {
		known = strings.Split(*workspaces, ",")
	} else if *file != "" && len(cfg.Users) > 0 {
		known = append(known, cfg.Keyspace.DefaultWorkspace)
		for _, u := range cfg.Users {
			for _, w := range u.Workspaces {
				if w == "*" {
					known = nil // someone may use any workspace
					goto scan
				}
				known = append(known, w)
			}
		}
	}
scan:
	opts, err := redis.ParseURL(*url)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy lint: %v\n", err)
		return 2
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	o := lint.Options{
		Grammar:    keyspace.NewGrammar(cfg.Keyspace.Prefix, append(append([]string{}, keyspace.DefaultKinds...), cfg.Keyspace.ExtraKinds...)),
		Workspaces: known, Count: *count, Match: *match,
	}
	if !*quiet {
		o.Progress = stderr
	}
	rep, err := lint.Run(context.Background(), rdb, o)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy lint: %v\n", err)
		return 2
	}
	rep.Write(stdout)
	if rep.Total() > 0 {
		return 1
	}
	return 0
}
