// Command bench measures agentproxy against direct Redis and twemproxy
// (nutcracker) side by side, on the same machine, in one run (SPEC §14).
//
// It starts a redis-server, a nutcracker and an agentproxy on free loopback
// ports, runs redis-benchmark against each in interleaved rounds, samples the
// CPU time of every process from /proc, and prints throughput, CPU per
// request and single-client latency with ratios, and the cost of the
// plain-write policies (policies.go). Everything it starts, it
// stops (by pid), also on error and Ctrl-C.
//
//	go run ./bench            # full run with the policy comparison, about 6 minutes
//	go run ./bench -quick     # smoke run, well under a minute
//
// See bench/README.md for how to read the output.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target names, in the order they are reported.
const (
	tRedis = "redis"
	tTwem  = "twemproxy"
	tAP    = "agentproxy"
	tBase  = "ap-baseline" // -baseline-bin: another agentproxy build, for old-vs-new
)

// Run modes.
const (
	modePipe  = "pipelined"
	modePlain = "unpipelined"
	modeLat   = "latency"    // redis-benchmark -c 1 -P 1
	modeLatGo = "latency-go" // latencyProbe, same shape, ns timestamps
)

var targetNames = []string{tRedis, tTwem, tAP}

type config struct {
	quick      bool
	rounds     int
	proxyBin   string
	baseBin    string
	extraArgs  string
	procs      int
	proxyCmd   string
	timeout    time.Duration
	runTimeout time.Duration
	clients    int
	pipeline   int
	nPipe      int
	nPlain     int
	nLat       int
	keyspace   int
	valueSize  int
	workspace  string
	prefix     string
	keep       bool
	verbose    bool
	policies   bool
	nPol       int
}

type target struct {
	name string
	addr string
	p    *proc
}

type runSpec struct {
	mode     string
	cmd      string // SET or GET
	clients  int
	pipeline int
	n        int
}

type runResult struct {
	rps       float64
	p50us     float64 // NaN when redis-benchmark does not print it
	p99us     float64
	cpuPerReq float64 // µs of the target process per request; NaN if unknown
	upPerReq  float64 // µs of redis-server per request; NaN if unknown
	srvErr    string  // first "Error from server" line, if any
}

type resKey struct{ mode, cmd, target string }

type harness struct {
	cfg     config
	dir     string
	tck     int64
	redis   *proc
	procs   []*proc // in start order; stopped in reverse
	targets map[string]*target
	results map[resKey][]runResult
	rounds  int // rounds completed
	notes   []string
	// enforcement describes how agentproxy answered a key outside the
	// grammar, so the report says whether enforcement was on.
	enforcement string
	childCPU    time.Duration // CPU of finished redis-benchmark runs
	polNames    []string      // the policy targets started (policies.go)
	prop        *propagation  // event propagation, when measured
}

// ownTicks is the CPU, in ticks, of the harness and its servers so far.
func (h *harness) ownTicks() int64 {
	var sum int64
	if t, err := cpuTicks(os.Getpid()); err == nil {
		sum += t
	}
	for _, p := range h.procs {
		if t, err := cpuTicks(p.pid()); err == nil {
			sum += t
		}
	}
	return sum
}

func main() { os.Exit(run()) }

func run() int {
	cfg := parseFlags()
	if err := checkTools(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}

	// A closed stdout (go run ./bench | head) must not kill the harness
	// before it has stopped its servers: with SIGPIPE notified, writes just fail.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "agentproxy-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	h := &harness{
		cfg:     cfg,
		dir:     dir,
		tck:     clockTicks(),
		targets: map[string]*target{},
		results: map[resKey][]runResult{},
	}
	defer h.cleanup()

	if err := h.setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", explain(ctx, err))
		return 1
	}
	err = h.measure(ctx)
	h.report(os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", explain(ctx, err))
		if h.rounds == 0 {
			return 1
		}
	}
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return 130
	}
	return 0
}

// explain turns a context error into what actually happened.
func explain(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("time budget exhausted (-timeout): %v", err)
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Sprintf("interrupted: %v", err)
	}
	return err.Error()
}

func parseFlags() config {
	var c config
	flag.BoolVar(&c.quick, "quick", false, "smoke run: 1 round, small request counts")
	flag.IntVar(&c.rounds, "rounds", 7, "interleaved rounds; the report shows medians (7: medians of 3 swing ±15 % on a small shared machine)")
	flag.StringVar(&c.proxyBin, "proxy-bin", "", "agentproxy binary to use instead of building ./cmd/agentproxy")
	flag.StringVar(&c.baseBin, "baseline-bin", "", "a second agentproxy binary (an older build) measured in the same rounds, with its ratios to agentproxy")
	flag.StringVar(&c.extraArgs, "extra-proxy-args", "", "extra arguments for 'agentproxy serve', space separated (e.g. \"--keyspace-mode off\")")
	flag.IntVar(&c.procs, "proxy-procs", 1, "GOMAXPROCS for agentproxy (0: Go's default, every core); 1 matches twemproxy's single thread\nand leaves the other cores to redis-server and redis-benchmark")
	flag.StringVar(&c.proxyCmd, "proxy-cmd", "", "development override: shell command run as the agentproxy target;\n{listen} {port} {upstream} {upstream_port} {dir} are substituted")
	flag.DurationVar(&c.timeout, "timeout", 420*time.Second, "hard time budget for the whole run, build included; rounds that would not fit are skipped")
	flag.DurationVar(&c.runTimeout, "run-timeout", 60*time.Second, "limit for a single redis-benchmark run")
	flag.IntVar(&c.clients, "clients", 50, "redis-benchmark connections (-c) for throughput runs")
	flag.IntVar(&c.pipeline, "pipeline", 16, "pipeline depth (-P) of the pipelined mode")
	flag.IntVar(&c.nPipe, "n-pipelined", 400000, "requests per pipelined run")
	flag.IntVar(&c.nPlain, "n-unpipelined", 100000, "requests per unpipelined run")
	flag.IntVar(&c.nLat, "n-latency", 10000, "requests per single-client latency run (redis-benchmark and go probe each)")
	flag.IntVar(&c.keyspace, "keyspace", 100000, "distinct keys (-r); all are preloaded so GETs hit")
	flag.IntVar(&c.valueSize, "value-size", 3, "SET value size in bytes")
	flag.StringVar(&c.workspace, "workspace", "bench", "workspace of the benchmark keys (also passed as --workspace)")
	flag.StringVar(&c.prefix, "prefix", "deepagents", "key prefix of the key grammar")
	flag.BoolVar(&c.keep, "keep", false, "keep the temp dir (configs, logs) for inspection")
	flag.BoolVar(&c.verbose, "v", false, "print every redis-benchmark command line")
	flag.BoolVar(&c.policies, "policies", true, "also measure the plain-write policies (fencing, TTL rules, events) on agentproxies of their own,\nand event propagation under load")
	flag.IntVar(&c.nPol, "n-policies", 200000, "requests per pipelined SET run of the policy comparison")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench [flags]\n\nBenchmarks agentproxy against direct Redis and twemproxy (SPEC §14).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		quick := map[string]func(){
			"rounds":        func() { c.rounds = 1 },
			"n-pipelined":   func() { c.nPipe = 50000 },
			"n-unpipelined": func() { c.nPlain = 10000 },
			"n-latency":     func() { c.nLat = 2000 },
			"keyspace":      func() { c.keyspace = 10000 },
			"n-policies":    func() { c.nPol = 20000 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`).MatchString(c.workspace) {
		fmt.Fprintf(os.Stderr, "bench: -workspace %q is not a valid workspace name\n", c.workspace)
		os.Exit(2)
	}
	if c.rounds < 1 || c.clients < 1 || c.pipeline < 1 || c.nPipe < 1 || c.nPlain < 1 || c.nLat < 1 || c.nPol < 1 || c.keyspace < 1 || c.valueSize < 1 {
		fmt.Fprintln(os.Stderr, "bench: counts and sizes must be positive")
		os.Exit(2)
	}
	return c
}

func checkTools(cfg config) error {
	var missing []string
	for _, t := range []string{"redis-server", "nutcracker", "redis-benchmark"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not found in PATH: %s (apt-get install redis-server redis-tools nutcracker)", strings.Join(missing, ", "))
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: no /proc; CPU per request will be n/a")
	}
	return nil
}

func (h *harness) cleanup() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		h.procs[i].stop()
	}
	if h.cfg.keep {
		fmt.Fprintf(os.Stderr, "bench: kept %s\n", h.dir)
		return
	}
	_ = os.RemoveAll(h.dir)
}

func (h *harness) key(suffix string) string {
	return fmt.Sprintf("%s:{%s}:kv:%s", h.cfg.prefix, h.cfg.workspace, suffix)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// setup builds agentproxy, starts the three servers, checks that each one
// executes the benchmark's commands, and preloads the keyspace.
func (h *harness) setup(ctx context.Context) error {
	bin, err := h.proxyBinary(ctx)
	if err != nil {
		return err
	}

	// redis-server
	rport, err := freePort()
	if err != nil {
		return err
	}
	raddr := fmt.Sprintf("127.0.0.1:%d", rport)
	rp, err := startProc("redis", h.dir, []string{"redis-server",
		"--port", strconv.Itoa(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", h.dir, "--protected-mode", "no"})
	if err != nil {
		return err
	}
	h.procs = append(h.procs, rp)
	h.redis = rp
	if err := waitReady(ctx, rp, raddr, 10*time.Second); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	h.targets[tRedis] = &target{name: tRedis, addr: raddr, p: rp}

	// nutcracker
	tport, err := freePort()
	if err != nil {
		return err
	}
	sport, err := freePort()
	if err != nil {
		return err
	}
	taddr := fmt.Sprintf("127.0.0.1:%d", tport)
	conf := filepath.Join(h.dir, "nutcracker.yml")
	yml := fmt.Sprintf("bench:\n  listen: %s\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  auto_eject_hosts: false\n  servers:\n   - %s:1\n", taddr, raddr)
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
		return err
	}
	tp, err := startProc("nutcracker", h.dir, []string{"nutcracker", "-c", conf,
		"-s", strconv.Itoa(sport), "-a", "127.0.0.1",
		"-o", filepath.Join(h.dir, "nutcracker.out"), "-p", filepath.Join(h.dir, "nutcracker.pid")})
	if err != nil {
		return err
	}
	h.procs = append(h.procs, tp)
	if err := waitReady(ctx, tp, taddr, 10*time.Second); err != nil {
		return fmt.Errorf("nutcracker: %w", err)
	}
	h.targets[tTwem] = &target{name: tTwem, addr: taddr, p: tp}

	// agentproxy
	ap, aaddr, err := h.startProxy(ctx, bin, rport)
	if err != nil {
		return err
	}
	h.targets[tAP] = &target{name: tAP, addr: aaddr, p: ap}
	if h.cfg.baseBin != "" {
		base, err := filepath.Abs(h.cfg.baseBin)
		if err != nil {
			return err
		}
		bp, baddr, err := h.startProxy(ctx, base, rport)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		bp.name = tBase
		h.targets[tBase] = &target{name: tBase, addr: baddr, p: bp}
		targetNames = append(targetNames, tBase)
		h.logf("bench: baseline agentproxy %s (pid %d) from %s", baddr, bp.pid(), base)
	}

	if err := h.setupPolicies(ctx, bin, rport); err != nil {
		return err
	}
	h.logf("bench: redis %s (pid %d), twemproxy %s (pid %d), agentproxy %s (pid %d); logs in %s",
		raddr, rp.pid(), taddr, tp.pid(), aaddr, ap.pid(), h.dir)

	value := strings.Repeat("x", h.cfg.valueSize)
	for _, name := range targetNames {
		t := h.targets[name]
		if err := probe(t.addr, h.key("probe-"+name), value); err != nil {
			return fmt.Errorf("%s does not execute the benchmark commands: %w", name, err)
		}
	}
	h.enforcement = enforcementProbe(aaddr)
	start := time.Now()
	if err := preload(raddr, h.key("%s"), value, h.cfg.keyspace); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	h.logf("bench: preloaded %d keys in %v", h.cfg.keyspace, time.Since(start).Round(time.Millisecond))
	return nil
}

// proxyBinary builds ./cmd/agentproxy into the temp dir unless -proxy-bin
// or -proxy-cmd says otherwise.
func (h *harness) proxyBinary(ctx context.Context) (string, error) {
	if h.cfg.proxyCmd != "" {
		return "", nil
	}
	if h.cfg.proxyBin != "" {
		abs, err := filepath.Abs(h.cfg.proxyBin)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("-proxy-bin: %w", err)
		}
		return abs, nil
	}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(gomod))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the agentproxy module; run from the repo or pass -proxy-bin")
	}
	bin := filepath.Join(h.dir, "agentproxy")
	h.logf("bench: building ./cmd/agentproxy ...")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/agentproxy")
	cmd.Dir = filepath.Dir(mod)
	cmd.SysProcAttr = childProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/agentproxy: %v\n%s", err, out)
	}
	h.logf("bench: built in %v", time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}

// rejectedFlag matches the flag package's and cobra's unknown-flag errors.
var rejectedFlag = regexp.MustCompile(`(?:provided but not defined|unknown flag):\s*--?([A-Za-z0-9_-]+)`)

// startProxy starts the agentproxy target. Optional flags the binary
// rejects (an older build without --metrics, say) are dropped and the start
// retried, so the harness keeps working while the CLI evolves.
func (h *harness) startProxy(ctx context.Context, bin string, rport int) (*proc, string, error) {
	drop := map[string]bool{}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		argv := h.proxyArgv(bin, addr, port, rport, drop)
		if h.cfg.verbose {
			h.logf("bench: agentproxy: %s", strings.Join(argv, " "))
		}
		p, err := startProc(fmt.Sprintf("agentproxy-%d", attempt), h.dir, argv)
		if err != nil {
			return nil, "", err
		}
		p.name = tAP
		h.procs = append(h.procs, p)
		err = waitReady(ctx, p, addr, 15*time.Second)
		if err == nil {
			return p, addr, nil
		}
		if !p.exited() || h.cfg.proxyCmd != "" || attempt >= 2 {
			return nil, "", fmt.Errorf("agentproxy: %w", err)
		}
		log, _ := os.ReadFile(p.logPath)
		retry := false
		for _, m := range rejectedFlag.FindAllSubmatch(log, -1) {
			f := string(m[1])
			if (f == "metrics" || f == "workspace") && !drop[f] {
				drop[f] = true
				retry = true
				h.notes = append(h.notes, fmt.Sprintf("agentproxy rejected --%s; ran without it", f))
			}
		}
		if !retry {
			return nil, "", fmt.Errorf("agentproxy: %w", err)
		}
	}
}

func (h *harness) proxyArgv(bin, listen string, port, rport int, drop map[string]bool) []string {
	upstream := fmt.Sprintf("redis://127.0.0.1:%d", rport)
	if h.cfg.proxyCmd != "" {
		s := strings.NewReplacer(
			"{listen}", listen,
			"{port}", strconv.Itoa(port),
			"{upstream}", upstream,
			"{upstream_port}", strconv.Itoa(rport),
			"{dir}", h.dir,
		).Replace(h.cfg.proxyCmd)
		h.notes = append(h.notes, "agentproxy target overridden by -proxy-cmd: "+s)
		return []string{"sh", "-c", "exec " + s}
	}
	argv := []string{bin, "serve", "--listen", listen, "--upstream", upstream}
	if h.cfg.procs > 0 {
		// env execs the proxy, so the measured pid stays the proxy's.
		argv = append([]string{"env", "GOMAXPROCS=" + strconv.Itoa(h.cfg.procs)}, argv...)
	}
	if !drop["metrics"] {
		argv = append(argv, "--metrics", "127.0.0.1:0")
	}
	if !drop["workspace"] {
		argv = append(argv, "--workspace", h.cfg.workspace)
	}
	return append(argv, strings.Fields(h.cfg.extraArgs)...)
}

// measure runs the warm-up and the interleaved rounds. Each round runs every
// (mode, command) against every target back to back, rotating the target
// order from round to round so no target always goes first.
func (h *harness) measure(ctx context.Context) error {
	c := h.cfg
	if busy, err := otherLoad(time.Second); err == nil && busy > 0.25 {
		msg := fmt.Sprintf("machine busy before the run: %.2f of %d CPUs in use by other processes; numbers will be noisy", busy, runtime.NumCPU())
		h.notes = append(h.notes, msg)
		h.logf("bench: warning: %s", msg)
	}
	// Account for CPU used by anything other than the harness and its
	// children while measuring: on a shared box that explains odd numbers.
	busy0, _, errBusy := machineBusyTicks()
	own0 := h.ownTicks()
	start0 := time.Now()
	defer func() {
		busy1, _, err := machineBusyTicks()
		if errBusy != nil || err != nil {
			return
		}
		foreign := float64(busy1-busy0-(h.ownTicks()-own0)) - h.childCPU.Seconds()*float64(h.tck)
		cpus := foreign / float64(h.tck) / time.Since(start0).Seconds()
		if cpus > 0.15 {
			h.notes = append(h.notes, fmt.Sprintf("other processes used %.2f of %d CPUs on average while measuring; numbers are noisy", cpus, runtime.NumCPU()))
		}
	}()
	warm := runSpec{mode: "warmup", cmd: "GET", clients: c.clients, pipeline: c.pipeline, n: max(c.nPipe/10, 1000)}
	for _, name := range targetNames {
		if _, err := h.runOne(ctx, h.targets[name], warm); err != nil {
			return fmt.Errorf("warm-up %s: %w", name, err)
		}
	}
	specs := []runSpec{
		{modePipe, "SET", c.clients, c.pipeline, c.nPipe},
		{modePipe, "GET", c.clients, c.pipeline, c.nPipe},
		{modePlain, "SET", c.clients, 1, c.nPlain},
		{modePlain, "GET", c.clients, 1, c.nPlain},
		{modeLat, "SET", 1, 1, c.nLat},
		{modeLat, "GET", 1, 1, c.nLat},
	}
	var roundDur time.Duration
	for r := 0; r < c.rounds; r++ {
		if dl, ok := ctx.Deadline(); ok && r > 0 && time.Until(dl) < roundDur+roundDur/5+5*time.Second {
			h.notes = append(h.notes, fmt.Sprintf("ran %d of %d rounds: the next would not fit in -timeout %v", r, c.rounds, c.timeout))
			break
		}
		start := time.Now()
		k := r % len(targetNames)
		order := append(append([]string{}, targetNames[k:]...), targetNames[:k]...)
		for _, s := range specs {
			for _, name := range order {
				res, err := h.runOne(ctx, h.targets[name], s)
				if err != nil {
					return fmt.Errorf("round %d, %s %s, %s: %w", r+1, s.mode, s.cmd, name, err)
				}
				k := resKey{s.mode, s.cmd, name}
				h.results[k] = append(h.results[k], res)
				h.logf("  round %d/%d  %-11s %s  %-10s %9.0f req/s  p50 %6.0f µs  p99 %6.0f µs  cpu %s µs/req  redis cpu %s µs/req",
					r+1, c.rounds, s.mode, s.cmd, name, res.rps, res.p50us, res.p99us, fmtF(res.cpuPerReq, 2), fmtF(res.upPerReq, 2))
				if s.mode != modeLat {
					continue
				}
				p50, p99, rps, err := latencyProbe(ctx, h.targets[name].addr, s.cmd, h.key("%s"),
					strings.Repeat("x", c.valueSize), c.keyspace, s.n)
				if err != nil {
					return fmt.Errorf("round %d, go latency probe %s, %s: %w", r+1, s.cmd, name, err)
				}
				k = resKey{modeLatGo, s.cmd, name}
				h.results[k] = append(h.results[k], runResult{rps: rps, p50us: p50, p99us: p99, cpuPerReq: nan, upPerReq: nan})
				h.logf("  round %d/%d  %-11s %s  %-10s %9.0f req/s  p50 %6.1f µs  p99 %6.1f µs",
					r+1, c.rounds, modeLatGo, s.cmd, name, rps, p50, p99)
			}
		}
		if err := h.measurePolicies(ctx, r); err != nil {
			return err
		}
		h.rounds++
		roundDur = time.Since(start)
	}
	return h.measurePropagation(ctx)
}

// runOne runs redis-benchmark once against t and samples CPU around it.
func (h *harness) runOne(ctx context.Context, t *target, s runSpec) (runResult, error) {
	res := runResult{p50us: nan, p99us: nan, cpuPerReq: nan, upPerReq: nan}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	host, port, _ := strings.Cut(t.addr, ":")
	args := []string{"-h", host, "-p", port, "-c", strconv.Itoa(s.clients), "-n", strconv.Itoa(s.n),
		"-r", strconv.Itoa(h.cfg.keyspace), "-P", strconv.Itoa(s.pipeline), "-q", "--csv",
		s.cmd, h.key("__rand_int__")}
	if s.cmd == "SET" {
		args = append(args, strings.Repeat("x", h.cfg.valueSize))
	}
	if h.cfg.verbose {
		h.logf("bench: redis-benchmark %s", strings.Join(args, " "))
	}
	rctx, cancel := context.WithTimeout(ctx, h.cfg.runTimeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, "redis-benchmark", args...)
	cmd.SysProcAttr = childProcAttr()
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	tBefore, tErr1 := cpuTicks(t.p.pid())
	rBefore, rErr1 := cpuTicks(h.redis.pid())
	err := cmd.Run()
	if cmd.ProcessState != nil {
		h.childCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	tAfter, tErr2 := cpuTicks(t.p.pid())
	rAfter, rErr2 := cpuTicks(h.redis.pid())

	if t.p.exited() {
		return res, errors.New(t.p.describeExit())
	}
	if h.redis.exited() {
		return res, errors.New(h.redis.describeExit())
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if rctx.Err() != nil {
			return res, fmt.Errorf("redis-benchmark did not finish within -run-timeout %v (hung target?)", h.cfg.runTimeout)
		}
		return res, fmt.Errorf("redis-benchmark: %v: %s", err, lastLines(stderr.String(), 5))
	}
	rps, p50, p99, perr := parseBenchCSV(stdout.String())
	if perr != nil {
		return res, fmt.Errorf("%w; stdout %q; stderr %q", perr, stdout.String(), lastLines(stderr.String(), 5))
	}
	res.rps, res.p50us, res.p99us = rps, p50*1000, p99*1000
	usPerTick := 1e6 / float64(h.tck)
	if tErr1 == nil && tErr2 == nil {
		res.cpuPerReq = float64(tAfter-tBefore) * usPerTick / float64(s.n)
	}
	if rErr1 == nil && rErr2 == nil {
		res.upPerReq = float64(rAfter-rBefore) * usPerTick / float64(s.n)
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "Error from server") {
			res.srvErr = strings.TrimSpace(line)
			h.notes = append(h.notes, fmt.Sprintf("%s %s %s: %s", t.name, s.mode, s.cmd, res.srvErr))
			break
		}
	}
	return res, nil
}

// parseBenchCSV reads redis-benchmark --csv output: a header line starting
// with "test" and one data line. Latency columns (redis-benchmark ≥ 6.2)
// are returned in milliseconds, NaN when absent.
func parseBenchCSV(out string) (rps, p50ms, p99ms float64, err error) {
	p50ms, p99ms = nan, nan
	var header []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, `"`) {
			continue
		}
		fields := strings.Split(line, `","`)
		for i := range fields {
			fields[i] = strings.Trim(fields[i], `"`)
		}
		if fields[0] == "test" {
			header = fields
			continue
		}
		if header == nil {
			// Old redis-benchmark: "TEST","rps" without a header line.
			if len(fields) >= 2 {
				rps, err = strconv.ParseFloat(fields[1], 64)
				return rps, p50ms, p99ms, err
			}
			continue
		}
		col := func(name string) float64 {
			for i, h := range header {
				if h == name && i < len(fields) {
					if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
						return v
					}
				}
			}
			return nan
		}
		rps = col("rps")
		if rps != rps {
			return 0, 0, 0, errors.New("redis-benchmark csv: no rps column")
		}
		return rps, col("p50_latency_ms"), col("p99_latency_ms"), nil
	}
	return 0, 0, 0, errors.New("redis-benchmark printed no csv result")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// versions returns one line naming what was measured.
func (h *harness) versions() string {
	get := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.SysProcAttr = childProcAttr()
		out, _ := cmd.CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	rv := get("redis-server", "--version")
	if m := regexp.MustCompile(`v=(\S+)`).FindStringSubmatch(rv); m != nil {
		rv = m[1]
	}
	nv := strings.TrimPrefix(get("nutcracker", "-V"), "This is nutcracker-")
	av := "-proxy-cmd"
	if h.cfg.proxyCmd == "" && h.targets[tAP] != nil {
		args := h.targets[tAP].p.cmd.Args
		av = strings.TrimPrefix(get(args[0], "version"), "agentproxy ")
		if av == "" {
			av = "?"
		}
	}
	return fmt.Sprintf("redis %s, nutcracker %s, agentproxy %s, %s/%s, %d CPUs",
		rv, nv, av, runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
}
