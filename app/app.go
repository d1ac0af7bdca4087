// Package app assembles a running agentproxy from a Config: the upstream
// (embedded store or Redis), the client listener, and the metrics and health
// endpoints. cmd/agentproxy stays a thin shell around it.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/breaker"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/domain"
	_ "github.com/agentproxy/agentproxy/domain/all" // the domain commands
	"github.com/agentproxy/agentproxy/domain/events"
	"github.com/agentproxy/agentproxy/embedded"
	"github.com/agentproxy/agentproxy/fencing"
	"github.com/agentproxy/agentproxy/internal/membudget"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lua"
	"github.com/agentproxy/agentproxy/policy"
	"github.com/agentproxy/agentproxy/proxy"
	"github.com/agentproxy/agentproxy/upstream"
)

// App is a running proxy.
type App struct {
	cfg     config.Config
	log     *zap.Logger
	store   *embedded.Store
	pool    *upstream.Pool    // the node (standalone, Sentinel's master), or a cluster's seed
	cluster *upstream.Cluster // redis-cluster:// upstreams
	srv     *proxy.Server
	ln      net.Listener
	httpSrv *http.Server
	httpLn  net.Listener
	served  chan error
	stop    context.CancelFunc // ends the background goroutines (lock watch, events)
	emitter *events.Emitter
	locks   *fencing.Registry

	reloadOK, reloadFailed atomic.Int64 // configuration reloads
	reloadLastOK           atomic.Bool
	reloadMu               sync.Mutex                    // one reload at a time (SIGHUP, PROXY RELOAD); guards cfg
	source                 func() (config.Config, error) // reads the configuration again (SetSource)
	shutdownTimeout        time.Duration                 // listen.shutdown_timeout (restart-only: read without reloadMu)
}

// Start builds everything and starts serving. It returns once the listener
// is bound; the upstream may still be connecting.
func Start(cfg config.Config, log *zap.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, served: make(chan error, 1), shutdownTimeout: cfg.Listen.ShutdownTimeout.Duration}
	a.reloadLastOK.Store(true)
	url := cfg.Upstream.URL
	if url == "embedded" {
		st, err := embedded.Start(expandHome(cfg.Embedded.DataFile), cfg.Embedded.SnapshotInterval.Duration, log.Named("embedded"))
		if err != nil {
			return nil, err
		}
		a.store = st
		url = "redis://" + st.Addr()
		log.Info("using the embedded store", zap.String("data_file", cfg.Embedded.DataFile))
	}
	target, err := upstream.ParseTarget(url)
	if err != nil {
		a.closeStore()
		return nil, err
	}
	u := cfg.Upstream
	opts := &target.Node
	opts.Conns, opts.MaxIdleDedicated = u.Conns, u.MaxIdleDedicated
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = u.DialTimeout.Duration, u.ReadTimeout.Duration, u.WriteTimeout.Duration
	opts.BackoffMax = u.BackoffMax.Duration
	opts.Breaker = breaker.Settings{Failures: cfg.Breaker.ConsecutiveFailures, OpenTimeout: cfg.Breaker.OpenTimeout.Duration}
	if opts.TLS != nil {
		if err := upstreamTLS(opts.TLS, u); err != nil {
			a.closeStore()
			return nil, err
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	switch target.Mode {
	case upstream.ClusterMode:
		a.cluster = upstream.NewCluster(target, log.Named("upstream"))
		own := map[string]bool{}
		for _, sc := range lua.All() {
			own[sc.SHA] = true
		}
		a.cluster.Own = func(sha string) bool { return own[sha] }
		a.pool = a.cluster.NodeAt(target.Seeds[0]) // for what every node shares (version, RESP3)
	case upstream.SentinelMode:
		opts.Name, opts.RequireMaster = "sentinel/"+target.Master, true
		a.pool = upstream.NewPool(*opts, log.Named("upstream"))
		upstream.FollowSentinel(ctx, target, a.pool, log.Named("sentinel"))
	default:
		a.pool = upstream.NewPool(*opts, log.Named("upstream"))
	}

	pol, err := BuildPolicy(cfg)
	if err != nil {
		a.closeUpstream()
		a.closeStore()
		return nil, err
	}
	l := cfg.Listen
	locks := fencing.NewRegistry()
	a.locks = locks
	go locks.Watch(ctx, a.router(), cfg.Keyspace.Prefix, log.Named("fencing"))
	a.emitter = events.NewEmitter(a.router(), cfg.Keyspace.Prefix, cfg.Events.StreamMaxLen, cfg.Events.Coalesce.Duration, log.Named("events"))
	go a.emitter.Run(ctx)
	a.srv = proxy.New(proxy.Options{
		Locks:   locks,
		Cluster: a.cluster,
		OnWrite: func(w fencing.Written) {
			a.emitter.Emit(events.Write{WS: w.WS, Actor: w.Actor, Cmd: w.Cmd, Kind: w.Kind, Resource: w.Resource, Delete: w.Delete, TS: w.TS})
		},
		RequireAuth:              l.RequireAuth,
		AuthMaxFailures:          cfg.Auth.MaxFailures,
		AuthWindow:               cfg.Auth.FailureWindow.Duration,
		MaxClients:               l.MaxClients,
		MaxRequestBytes:          l.MaxRequestBytes,
		MaxPipeline:              l.MaxPipeline,
		MaxOutputBytes:           l.MaxOutputBytes,
		ClientWriteTimeout:       l.ClientWriteTimeout.Duration,
		IdleTimeout:              l.IdleTimeout.Duration,
		MemoryBudget:             l.MemoryBudget,
		MaxDedicatedPerWorkspace: u.MaxDedicatedPerWorkspace,
		Embedded:                 a.store != nil,
		UpstreamKind:             upstreamKind(a.store != nil, target.Mode),
		Control:                  a,
		Disabled:                 disabled(cfg.Features),
		Domain: &domain.Env{Locks: locks, EventsMaxLen: strconv.Itoa(cfg.Events.StreamMaxLen), Files: domain.FileOptions{ChunkSize: cfg.Files.ChunkSize,
			MaxBytes: cfg.Files.MaxFileBytes, UploadTTL: cfg.Files.UploadTTL.Duration}},
	}, a.pool, pol, log.Named("proxy"))

	a.ln, err = net.Listen("tcp", l.Addr)
	if err != nil {
		stop()
		a.closeUpstream()
		a.closeStore()
		return nil, fmt.Errorf("listen %s: %w", l.Addr, err)
	}
	if l.MetricsAddr != "" {
		if err := a.startHTTP(l.MetricsAddr); err != nil {
			stop()
			a.ln.Close()
			a.closeUpstream()
			a.closeStore()
			return nil, err
		}
	}
	go func() { a.served <- a.srv.Serve(a.ln) }()
	log.Info("agentproxy listening", zap.String("addr", a.ln.Addr().String()),
		zap.String("upstream", upstream.Redact(cfg.Upstream.URL)), zap.String("metrics", l.MetricsAddr))
	return a, nil
}

// upstreamTLS applies the [upstream] TLS files to cfg.
func upstreamTLS(cfg *tls.Config, u config.Upstream) error {
	if u.TLSCAFile != "" {
		pem, err := os.ReadFile(u.TLSCAFile)
		if err != nil {
			return fmt.Errorf("upstream.tls_ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("upstream.tls_ca_file %s: no PEM certificate in it", u.TLSCAFile)
		}
	}
	if u.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(u.TLSCertFile, u.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("upstream.tls_cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if u.TLSServerName != "" {
		cfg.ServerName = u.TLSServerName
	}
	return nil
}

// router is what routes by slot: the cluster, or the one node.
func (a *App) router() upstream.Router {
	if a.cluster != nil {
		return a.cluster
	}
	return a.pool
}

func (a *App) closeUpstream() {
	if a.cluster != nil {
		a.cluster.Close()
		return
	}
	a.pool.Close()
}

// WaitUp waits until the upstream is reachable (every master of a
// cluster), or d elapses.
func (a *App) WaitUp(d time.Duration) bool {
	if a.cluster != nil {
		return a.cluster.WaitUp(d)
	}
	return a.pool.WaitUp(d)
}

// Upstream is what the proxy forwards to, for metrics and tests: the nodes
// and their breakers.
func (a *App) Upstream() upstream.Router { return a.router() }

// Addr is the client listener's address.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Server is the proxy server (for tests and stats).
func (a *App) Server() *proxy.Server { return a.srv }

// Store is the embedded store, or nil.
func (a *App) Store() *embedded.Store { return a.store }

// Done reports the accept loop ending on its own (a listener failure).
func (a *App) Done() <-chan error { return a.served }

// Shutdown stops accepting, drains sessions within the configured timeout,
// closes the upstream and writes the embedded snapshot.
func (a *App) Shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.shutdownTimeout)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("shutdown timeout: closed busy clients")
		err = nil
	}
	if a.httpSrv != nil {
		a.httpSrv.Close()
	}
	a.stop()
	a.closeUpstream()
	if serr := a.closeStore(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// Reload applies a new configuration without a restart: the policy
// (users, roles, command rules, keyspace mode, default workspace, TTL
// rules, fencing and event rules, rate limits) is built and checked first,
// then swapped in at once; connections stay open and each follows the new
// rules from its next command. Settings that only change on a restart are
// logged and returned, and keep their running value. A configuration that
// does not build changes nothing. The embedded store is snapshotted too.
func (a *App) Reload(cfg config.Config) (restartOnly []string, err error) {
	defer a.snapshot("reload") // after the lock is released (deferred calls run last-in first-out)
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if err = cfg.Validate(); err == nil {
		// The policy is built with the running values of what only a
		// restart changes (keyspace.prefix, ...).
		restartOnly = keepRestartOnly(&a.cfg, &cfg)
		var pol *policy.Policy
		if pol, err = BuildPolicy(cfg); err == nil {
			a.srv.SetPolicy(pol)
			a.cfg = cfg
		}
	}
	if err != nil {
		a.ReloadFailed(err)
		return nil, err
	}
	a.reloadOK.Add(1)
	a.reloadLastOK.Store(true)
	a.log.Info("configuration reloaded")
	if len(restartOnly) > 0 {
		a.log.Warn("these settings change only on a restart; they keep their running values", zap.Strings("settings", restartOnly))
	}
	return restartOnly, nil
}

// ReloadFailed records a reload whose file did not load (or did not
// build, from Reload); nil does nothing.
func (a *App) ReloadFailed(err error) {
	if err == nil {
		return
	}
	a.reloadFailed.Add(1)
	a.reloadLastOK.Store(false)
	a.log.Error("configuration reload failed: still running with the previous configuration", zap.Error(err))
}

// keepRestartOnly gives next the running values of what only a restart
// changes, and names those that next would have changed.
func keepRestartOnly(running, next *config.Config) []string {
	var changed []string
	for _, f := range []struct {
		name      string
		old, next any // pointers to the same field of running and next
	}{
		{"listen", &running.Listen, &next.Listen}, {"upstream", &running.Upstream, &next.Upstream},
		{"breaker", &running.Breaker, &next.Breaker}, {"embedded", &running.Embedded, &next.Embedded},
		{"log", &running.Log, &next.Log}, {"keyspace.prefix", &running.Keyspace.Prefix, &next.Keyspace.Prefix},
		{"features", &running.Features, &next.Features}, {"files", &running.Files, &next.Files},
	} {
		o, n := reflect.ValueOf(f.old).Elem(), reflect.ValueOf(f.next).Elem()
		if !reflect.DeepEqual(o.Interface(), n.Interface()) {
			changed = append(changed, f.name)
			n.Set(o)
		}
	}
	return changed
}

// Hangup handles SIGHUP when the configuration cannot be read again: the
// process keeps serving, and the embedded store is snapshotted so nothing
// since the last snapshot depends on the process staying up.
func (a *App) Hangup() { a.snapshot("SIGHUP") }

func (a *App) snapshot(why string) {
	if a.store != nil {
		if err := a.store.Snapshot(); err != nil {
			a.log.Error("snapshot failed", zap.String("on", why), zap.Error(err))
		}
	}
}

func (a *App) closeStore() error {
	if a.store == nil {
		return nil
	}
	return a.store.Close()
}

func (a *App) startHTTP(addr string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerStats(reg, a.srv, a.router())
	a.registerPolicyStats(reg)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiling, on the metrics address (loopback by default).
	if a.cfg.Listen.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !a.router().Up() {
			http.Error(w, "upstream unreachable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen.metrics_addr %s: %w", addr, err)
	}
	a.httpLn = ln
	a.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go a.httpSrv.Serve(ln)
	return nil
}

func registerStats(reg *prometheus.Registry, srv *proxy.Server, pool upstream.Router) {
	st := &srv.Stats
	counter := func(name, help string, f func() int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "agentproxy", Name: name, Help: help},
			func() float64 { return float64(f()) }))
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "agentproxy", Name: name, Help: help}, f))
	}
	counter("connections_accepted_total", "Client connections accepted.", st.Accepted.Load)
	counter("connections_rejected_total", "Client connections refused at listen.max_clients.", st.Rejected.Load)
	counter("commands_total", "Commands received from clients.", st.Commands.Load)
	counter("slow_consumers_total", "Clients disconnected for not reading replies or exceeding the output limit.", st.SlowConsumers.Load)
	counter("protocol_errors_total", "Clients disconnected for malformed requests.", st.ProtocolErrors.Load)
	counter("upstream_errors_total", "Batches that failed upstream (TRYAGAIN or UNCERTAIN).", st.UpstreamErrors.Load)
	gauge("clients", "Connected clients.", func() float64 { return float64(st.Clients.Load()) })
	counter("dedicated_limit_total", "Commands refused at upstream.max_dedicated_per_workspace.", st.DedicatedLimit.Load)
	counter("rate_limited_total", "Commands refused with TRYAGAIN by [ratelimit].", st.RateLimited.Load)
	counter("warned_total", "Keyspace violations forwarded in warn mode.", st.Warned.Load)
	counter("auth_failures_total", "AUTH and HELLO AUTH attempts with a wrong name or password.", st.AuthFailures.Load)
	counter("bulk_waits_total", "Bulky batches that waited for the bulk lane.", st.BulkWaits.Load)
	counter("cache_hits_total", "CACHE.GET hits.", srv.Domain().Stats.CacheHits.Load)
	counter("cache_misses_total", "CACHE.GET misses.", srv.Domain().Stats.CacheMisses.Load)
	counter("budget_cuts_total", "Clients disconnected because the memory budget (listen.memory_budget) was exhausted.", st.BudgetCuts.Load)
	gauge("budget_used_bytes", "Bytes held for incomplete requests and undelivered replies, against listen.memory_budget.",
		func() float64 { return float64(srv.Budget().Used()) })
	gauge("budget_limit_bytes", "The memory budget (listen.memory_budget).", func() float64 { return float64(srv.Budget().Limit()) })
	gauge("pinned_sessions", "Clients holding a dedicated upstream connection.", func() float64 { return float64(st.Pinned.Load()) })
	gauge("upstream_up", "1 when a shared upstream connection is established and its breaker is closed.", func() float64 {
		if pool.Up() {
			return 1
		}
		return 0
	})
	gauge("tunnels", "Clients in tunnel mode (subscriptions, MONITOR), each on its own upstream connection.",
		func() float64 { return float64(st.Tunnels.Load()) })
	reg.MustRegister(breakerCollector{pool}, statsCollector{st})
}

// breakerCollector exports each upstream node's circuit breaker: its state
// and the transitions into each state (labels: the node's address, never
// user data).
type breakerCollector struct{ pool upstream.Router }

var (
	breakerStateDesc = prometheus.NewDesc("agentproxy_upstream_breaker_state",
		"Circuit breaker of an upstream node: 0 closed, 1 half-open, 2 open.", []string{"node"}, nil)
	breakerTransDesc = prometheus.NewDesc("agentproxy_upstream_breaker_transitions_total",
		"Circuit breaker state changes of an upstream node, by the state entered.", []string{"node", "state"}, nil)
)

func (c breakerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- breakerStateDesc
	ch <- breakerTransDesc
}

func (c breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.pool.Nodes() {
		b := p.Breaker()
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, float64(b.State()), b.Node())
		for _, st := range []breaker.State{breaker.Closed, breaker.HalfOpen, breaker.Open} {
			ch <- prometheus.MustNewConstMetric(breakerTransDesc, prometheus.CounterValue, float64(b.Transitions(st)), b.Node(), st.String())
		}
	}
}

// registerPolicyStats exports the plain-write policies' state: events sent
// and dropped, the locks the fencing registry knows and whether it is in
// sync with Redis.
func (a *App) registerPolicyStats(reg *prometheus.Registry) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "agentproxy", Name: "events_sent_total",
			Help: "Events of plain writes sent to Redis ([events] plain_writes)."}, func() float64 { return float64(a.emitter.Sent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "agentproxy", Name: "events_dropped_total",
			Help: "Events of plain writes dropped: Redis did not take them in time, or was down."}, func() float64 { return float64(a.emitter.Dropped.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "agentproxy", Name: "fencing_locks",
			Help: "Resources the fencing registry holds as possibly locked."}, func() float64 { return float64(a.locks.Count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "agentproxy", Name: "fencing_synced",
			Help: "1 when the fencing registry knows every lock (else every guarded write is checked in Redis)."}, func() float64 {
			if a.locks.Synced() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "agentproxy", Name: "config_reloads_total",
			Help: "Configuration reloads applied (SIGHUP)."}, func() float64 { return float64(a.reloadOK.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "agentproxy", Name: "config_reload_failures_total",
			Help: "Configuration reloads refused (the file did not load or validate); the previous configuration stays."}, func() float64 { return float64(a.reloadFailed.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "agentproxy", Name: "config_last_reload_successful",
			Help: "1 when the last configuration reload succeeded (or none was tried)."}, func() float64 {
			if a.reloadLastOK.Load() {
				return 1
			}
			return 0
		}),
	)
}

// expandHome turns a leading "~/" into the user's home directory.
func expandHome(p string) string {
	if !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, p[2:])
}

// MemoryBudget is the memory budget a configuration gives the proxy
// (listen.memory_budget, or sized to the machine).
func MemoryBudget(cfg config.Config) int64 {
	if cfg.Listen.MemoryBudget > 0 {
		return cfg.Listen.MemoryBudget
	}
	return membudget.Default()
}

// BuildPolicy compiles the access policy of a configuration.
func BuildPolicy(cfg config.Config) (*policy.Policy, error) {
	pc := policy.Config{
		Prefix:        cfg.Keyspace.Prefix,
		Kinds:         append(append([]string{}, keyspace.DefaultKinds...), cfg.Keyspace.ExtraKinds...),
		Mode:          cfg.Keyspace.Mode,
		AllowScripts:  cfg.Keyspace.AllowScripts,
		AllowCommands: cfg.Keyspace.AllowCommands,
		FenceKinds:    cfg.Fencing.Kinds,
		FenceStrict:   cfg.Fencing.Strict,
		EventKinds:    cfg.Events.PlainWrites,
		AllowSelect:   cfg.Keyspace.AllowSelect,
		Limits: policy.NewLimits(cfg.Limits.UserCommands, cfg.Limits.UserBytes, cfg.Limits.WorkspaceCommands,
			cfg.Limits.WorkspaceBytes, cfg.Limits.Burst.Duration),
		Owners:      cfg.Keyspace.Owners,
		DefaultWS:   cfg.Keyspace.DefaultWorkspace,
		DefaultRole: cfg.Keyspace.DefaultRole,
	}
	for _, t := range cfg.TTL {
		pc.TTL = append(pc.TTL, policy.TTLConfig{Kind: t.Kind, Pattern: t.Pattern, Default: t.Default.Duration,
			Max: t.Max.Duration, Require: t.Require})
	}
	for _, u := range cfg.Users {
		pc.Users = append(pc.Users, policy.UserConfig{Name: u.Name, PasswordSHA256: u.PasswordSHA256, Role: u.Role, Workspaces: u.Workspaces})
	}
	return policy.New(pc)
}

// disabled lists the feature families switched off.
func disabled(f config.Features) map[string]bool {
	return map[string]bool{"cache": !f.Cache, "todos": !f.Todos, "files": !f.Files, "coord": !f.Coord}
}
