package tests

// Network fault tests: a TCP shim (testutil.Shim) sits between the proxy and
// a real redis-server and injects latency, cut connections, a partition
// (blackhole) and refused connections while the audit load of fault_test.go
// runs. Each test logs the figures of its fault: how soon the first error
// reply came, how long error replies took (measured by a probe client doing
// single SETs), how soon the proxy served again after the fault ended, and
// the throughput before, during and after (the load counts a batch's ok
// replies when the batch ends, so "during" includes the replies that came
// before the fault in batches that failed). Redis itself never restarts,
// so the whole test is one Redis lifetime (epoch 0) for the audit.
//
// The proxy writes one batch per shared connection at a time and queues
// what comes meanwhile behind it (upstream.Conn's write window). When the
// batch in flight times out, the queued ones were never written and get
// TRYAGAIN after waiting as long; the one in flight may be the probe's, so
// the tests look for UNCERTAIN replies at both the load and the probe.
//
// The asserts are deliberately generous (they run under -race on small
// machines): no request waits more than read_timeout + faultMargin, the
// proxy serves again within faultRecovery + 2 s, and no acknowledged write
// is lost (faultLoad.finish). The precise figures go to the log.

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/breaker"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

const (
	// shimRecoveryBound is the asserted bound for serving again after a
	// fault is lifted: the acceptance figure plus slack for -race.
	shimRecoveryBound = faultRecovery + 2*time.Second
	// shimWindow is the length of the before and after throughput windows.
	shimWindow   = time.Second
	shimProbeKey = "deepagents:{default}:kv:fault:shim-probe"
	shimTick     = 5 * time.Millisecond
)

// shimKind classifies a reply.
type shimKind int

const (
	shimOK shimKind = iota
	shimTryAgain
	shimUncertain
)

// shimSample is one probe SET.
type shimSample struct {
	start time.Time
	lat   time.Duration
	kind  shimKind
	msg   string // the error text, "" for +OK
}

func (s shimSample) end() time.Time { return s.start.Add(s.lat) }

// shimProbe is a client sending single SETs back to back (2 ms apart) and
// recording each reply and its latency.
type shimProbe struct {
	c    *testutil.Conn
	stop atomic.Bool
	done chan struct{}

	mu         sync.Mutex
	samples    []shimSample
	violations []string
}

func (p *shimProbe) run() {
	defer close(p.done)
	req := upstream.AppendCommand(nil, "SET", shimProbeKey, "1")
	nc := p.c.NetConn()
	bound := faultReadTimeout + faultMargin
	for !p.stop.Load() {
		start := time.Now()
		nc.SetWriteDeadline(start.Add(faultHang))
		if _, err := nc.Write(req); err != nil {
			p.violate("probe write: %v", err)
			return
		}
		r, err := p.c.ReadTimeout(faultHang)
		lat := time.Since(start)
		if err != nil {
			p.violate("probe SET: no reply after %v: %v", lat, err)
			return
		}
		s := shimSample{start: start, lat: lat}
		switch {
		case string(r) == "+OK\r\n":
		case bytes.HasPrefix(r, []byte("-TRYAGAIN ")):
			s.kind, s.msg = shimTryAgain, string(bytes.TrimRight(r[1:], "\r\n"))
		case bytes.HasPrefix(r, []byte("-UNCERTAIN ")):
			s.kind, s.msg = shimUncertain, string(bytes.TrimRight(r[1:], "\r\n"))
		default:
			p.violate("probe SET: unexpected reply %q", r)
			return
		}
		if lat > bound {
			p.violate("probe SET waited %v (%q), more than read_timeout %v + %v", lat, r, faultReadTimeout, faultMargin)
		}
		p.mu.Lock()
		p.samples = append(p.samples, s)
		p.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

func (p *shimProbe) violate(format string, args ...any) {
	p.mu.Lock()
	p.violations = append(p.violations, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

// started returns the samples that started in [from, to).
func (p *shimProbe) started(from, to time.Time) []shimSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []shimSample
	for _, s := range p.samples {
		if !s.start.Before(from) && s.start.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// ended returns the samples whose reply came in [from, to): the replies
// given while a fault lasted, including those of requests sent just before
// it began (with the write window, the one in flight may be the probe's).
func (p *shimProbe) ended(from, to time.Time) []shimSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []shimSample
	for _, s := range p.samples {
		if !s.end().Before(from) && s.end().Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// firstError is the end of the first error reply that ended at or after
// from; zero if none.
func (p *shimProbe) firstError(from time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.samples {
		if s.kind != shimOK && !s.end().Before(from) {
			return s.end()
		}
	}
	return time.Time{}
}

// shimCount is a point of the load's counters over time.
type shimCount struct {
	at       time.Time
	ok, errs int64
}

// shimRig is a redis-server behind a shim behind the proxy, with the audit
// load, a probe client and a sampler of the load's counters running.
type shimRig struct {
	t    *testing.T
	r    *testutil.Redis
	shim *testutil.Shim
	a    *app.App
	brk  *breaker.Breaker
	l    *faultLoad
	p    *shimProbe

	stopSampler chan struct{}
	samplerDone chan struct{}
	stopOnce    sync.Once
	mu          sync.Mutex
	counts      []shimCount
}

// startShimRig starts the rig and waits until every worker of the load has
// been served. The breaker opens after 3 consecutive transport failures and
// probes every second (as in TestFaultBreakerHungRedis).
func startShimRig(t *testing.T) *shimRig {
	t.Helper()
	r := testutil.StartRedis(t)
	shim := testutil.StartShim(t, r.Addr)
	cfg := faultConfig(t, "redis://"+shim.Addr)
	cfg.Breaker = config.Breaker{ConsecutiveFailures: 3, OpenTimeout: config.D(time.Second)}
	a := testutil.StartProxy(t, cfg)
	g := &shimRig{t: t, r: r, shim: shim, a: a, brk: a.Server().Pool().Breaker(),
		stopSampler: make(chan struct{}), samplerDone: make(chan struct{})}
	g.p = &shimProbe{c: testutil.Dial(t, a.Addr()), done: make(chan struct{})}
	g.l = startFaultLoad(t, a.Addr(), 8)
	// Cleanups run last-in first-out: this one stops the load before the
	// proxy shuts down and the shim closes.
	t.Cleanup(g.stop)
	go g.sample()
	go g.p.run()
	g.l.await(10*time.Second, "every worker to complete batches", func() bool {
		return g.l.everyWorker(func(w *faultWorker) bool { return w.okBatches.Load() >= 5 })
	})
	return g
}

// sample records the load's counters every shimTick.
func (g *shimRig) sample() {
	defer close(g.samplerDone)
	tick := time.NewTicker(shimTick)
	defer tick.Stop()
	for {
		ok, try, unc, _, _ := g.l.snapshot()
		g.mu.Lock()
		g.counts = append(g.counts, shimCount{at: time.Now(), ok: ok, errs: try + unc})
		g.mu.Unlock()
		select {
		case <-g.stopSampler:
			return
		case <-tick.C:
		}
	}
}

// stop ends the probe, the sampler and the load (idempotent).
func (g *shimRig) stop() {
	g.stopOnce.Do(func() {
		g.p.stop.Store(true)
		close(g.stopSampler)
		g.l.halt()
		<-g.p.done
		<-g.samplerDone
	})
}

// countAt is the last sample taken at or before at (the first one if none).
func (g *shimRig) countAt(at time.Time) shimCount {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := sort.Search(len(g.counts), func(i int) bool { return g.counts[i].at.After(at) })
	if i == 0 {
		return g.counts[0]
	}
	return g.counts[i-1]
}

// throughput is the load's ok replies per second in [from, to].
func (g *shimRig) throughput(from, to time.Time) float64 {
	a, b := g.countAt(from), g.countAt(to)
	if !b.at.After(a.at) {
		return 0
	}
	return float64(b.ok-a.ok) / b.at.Sub(a.at).Seconds()
}

// firstLoadError is when the load's error count first grew after from
// (within shimTick); zero if it did not.
func (g *shimRig) firstLoadError(from time.Time) time.Time {
	base := g.countAt(from).errs
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.counts {
		if c.at.After(from) && c.errs > base {
			return c.at
		}
	}
	return time.Time{}
}

// awaitServing measures, with a fresh client, how long after lifted the
// proxy acknowledges a SET again, and asserts the bound.
func (g *shimRig) awaitServing(name string, lifted time.Time) time.Time {
	g.t.Helper()
	c := testutil.Dial(g.t, g.a.Addr())
	defer c.Close()
	faultAwaitServing(g.t, c, shimRecoveryBound+time.Second)
	servedAt := time.Now()
	if d := servedAt.Sub(lifted); d > shimRecoveryBound {
		g.t.Errorf("%s: served again %v after the fault ended; want < %v", name, d, shimRecoveryBound)
	}
	return servedAt
}

// awaitWorkers waits until every worker has completed an all-OK batch
// since now.
func (g *shimRig) awaitWorkers(what string) {
	g.t.Helper()
	before := map[*faultWorker]int64{}
	for _, w := range g.l.workers {
		before[w] = w.okBatches.Load()
	}
	g.l.await(10*time.Second, what, func() bool {
		return g.l.everyWorker(func(w *faultWorker) bool { return w.okBatches.Load() > before[w] })
	})
}

// shimPercentiles formats p50/p99/max of lat.
func shimPercentiles(lat []time.Duration) string {
	if len(lat) == 0 {
		return "none"
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return fmt.Sprintf("p50 %v p99 %v max %v", lat[len(lat)/2].Round(10*time.Microsecond),
		lat[min(len(lat)*99/100, len(lat)-1)].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
}

func shimSince(at, from time.Time) string {
	if at.IsZero() {
		return "none"
	}
	return at.Sub(from).Round(100 * time.Microsecond).String()
}

// shimFault is the time line of one fault.
type shimFault struct {
	name     string
	at       time.Time // the fault began
	lifted   time.Time // the fault ended
	servedAt time.Time // a SET was acknowledged again
}

// report logs the figures of f, waiting for the after window to pass.
// It returns the probe's samples answered during the fault.
func (g *shimRig) report(f shimFault) []shimSample {
	g.t.Helper()
	if d := time.Until(f.servedAt.Add(shimWindow)); d > 0 {
		time.Sleep(d)
	}
	loadErr, probeErr := g.firstLoadError(f.at), g.p.firstError(f.at)
	first := loadErr
	if first.IsZero() || (!probeErr.IsZero() && probeErr.Before(first)) {
		first = probeErr
	}
	during := g.p.ended(f.at, f.lifted)
	var all, try, unc, ok []time.Duration
	msgs := map[string]int{}
	for _, s := range during {
		switch s.kind {
		case shimOK:
			ok = append(ok, s.lat)
			continue
		case shimTryAgain:
			try = append(try, s.lat)
		case shimUncertain:
			unc = append(unc, s.lat)
		}
		all = append(all, s.lat)
		msgs[s.msg]++
	}
	g.t.Logf("%s: fault lasted %v; first error reply %s after the fault (load %s, probe %s)",
		f.name, f.lifted.Sub(f.at).Round(time.Millisecond), shimSince(first, f.at), shimSince(loadErr, f.at), shimSince(probeErr, f.at))
	g.t.Logf("%s: probe replies during the fault: %d SETs, %d ok, %d TRYAGAIN, %d UNCERTAIN; error replies %s (TRYAGAIN %s; UNCERTAIN %s); ok replies %s",
		f.name, len(during), len(ok), len(try), len(unc), shimPercentiles(all), shimPercentiles(try), shimPercentiles(unc), shimPercentiles(ok))
	for m, k := range msgs {
		g.t.Logf("%s:   %5d × %s", f.name, k, m)
	}
	g.t.Logf("%s: served again %v after the fault ended (breaker %s, %d trips so far)",
		f.name, f.servedAt.Sub(f.lifted).Round(100*time.Microsecond), g.brk.State(), g.brk.Trips())
	g.t.Logf("%s: throughput (ok replies/s) before %.0f, during %.0f, after %.0f",
		f.name, g.throughput(f.at.Add(-shimWindow), f.at), g.throughput(f.at, f.lifted),
		g.throughput(f.servedAt, f.servedAt.Add(shimWindow)))
	return during
}

// finish stops everything, reports the probe's violations and runs the
// audit of the load against the counter in Redis.
func (g *shimRig) finish() {
	g.t.Helper()
	g.stop()
	for _, v := range g.p.violations {
		g.t.Errorf("probe: %s", v)
	}
	g.l.finish(faultReadCounter(g.t, g.r))
}

// loadErrors is the load's TRYAGAIN and UNCERTAIN replies so far.
func (g *shimRig) loadErrors() (try, unc int64) {
	_, try, unc, _, _ = g.l.snapshot()
	return try, unc
}

// awaitBreakerOpen waits until the breaker is open (or fails after limit)
// and returns when it saw it.
func (g *shimRig) awaitBreakerOpen(what string, limit time.Duration) time.Time {
	g.t.Helper()
	start := time.Now()
	for g.brk.State() != breaker.Open {
		if time.Since(start) > limit {
			g.t.Errorf("%s: breaker still %s %v after the fault began", what, g.brk.State(), limit)
			return time.Time{}
		}
		time.Sleep(time.Millisecond)
	}
	return time.Now()
}

// TestFaultShimLatency: a slow network. 50 ms each way for 2 s costs
// throughput but no request fails; latency past the read timeout (1.5 s
// while read_timeout is 1 s) makes requests UNCERTAIN at the read timeout
// and opens the breaker; with the latency gone the proxy serves again.
func TestFaultShimLatency(t *testing.T) {
	g := startShimRig(t)
	time.Sleep(shimWindow) // the before window

	// 50 ms: slow, but far below the read timeout.
	slow := shimFault{name: "latency 50ms", at: time.Now()}
	g.shim.SetLatency(50 * time.Millisecond)
	time.Sleep(2 * time.Second)
	g.shim.SetLatency(0)
	slow.lifted = time.Now()
	slow.servedAt = g.awaitServing(slow.name, slow.lifted)
	g.awaitWorkers("every worker served after the 50 ms latency")
	g.report(slow)
	if try, unc := g.loadErrors(); try+unc > 0 {
		t.Errorf("%s: the load got %d TRYAGAIN and %d UNCERTAIN; every reply must be real", slow.name, try, unc)
	}
	for _, s := range g.p.started(time.Time{}, time.Now()) {
		if s.kind != shimOK {
			t.Errorf("%s: probe SET at %v got %q; every reply must be real", slow.name, s.start.Sub(slow.at).Round(time.Millisecond), s.msg)
		}
	}
	if trips := g.brk.Trips(); trips != 0 {
		t.Errorf("%s: the breaker opened %d times", slow.name, trips)
	}

	// 1.5 s: past the read timeout.
	tryBefore, uncBefore := g.loadErrors()
	past := shimFault{name: "latency 1500ms", at: time.Now()}
	g.shim.SetLatency(1500 * time.Millisecond)
	opened := g.awaitBreakerOpen(past.name, 10*time.Second)
	if !opened.IsZero() {
		t.Logf("%s: breaker opened %v after the latency began", past.name, opened.Sub(past.at).Round(time.Millisecond))
	}
	// Stay slow past a failed breaker probe or two.
	time.Sleep(time.Until(past.at.Add(3 * time.Second)))
	g.shim.SetLatency(0)
	past.lifted = time.Now()
	past.servedAt = g.awaitServing(past.name, past.lifted)
	g.awaitWorkers("every worker served after the 1.5 s latency")
	during := g.report(past)
	try, unc := g.loadErrors()
	probeUnc := 0
	for _, s := range during {
		if s.kind == shimUncertain {
			probeUnc++
		}
	}
	t.Logf("%s: load got %d TRYAGAIN and %d UNCERTAIN", past.name, try-tryBefore, unc-uncBefore)
	if unc == uncBefore && probeUnc == 0 {
		t.Errorf("%s: no UNCERTAIN reply, though requests were in flight when the latency passed the read timeout", past.name)
	}
	g.finish()
}

// TestFaultShimCut: every connection between the proxy and Redis is cut
// three times, 300 ms apart, under load. Replies are real, TRYAGAIN or
// UNCERTAIN, nothing hangs, and the proxy serves again soon after the last
// cut without losing an acknowledged write.
func TestFaultShimCut(t *testing.T) {
	g := startShimRig(t)
	time.Sleep(shimWindow)
	f := shimFault{name: "cut x3", at: time.Now()}
	conns := []int{}
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		conns = append(conns, g.shim.Conns())
		g.shim.Cut()
	}
	f.lifted = time.Now()
	t.Logf("%s: connections through the shim at each cut: %v", f.name, conns)
	f.servedAt = g.awaitServing(f.name, f.lifted)
	g.awaitWorkers("every worker served after the cuts")
	g.report(f)
	if try, unc := g.loadErrors(); try+unc == 0 && g.p.firstError(f.at).IsZero() {
		t.Errorf("%s: neither the load nor the probe got an error reply: did the cuts happen?", f.name)
	}
	g.finish()
}

// TestFaultShimBlackhole: a network partition for 3 s: connections stay
// open, nothing passes. Requests in flight get UNCERTAIN at the read
// timeout, then the breaker opens and requests are refused with TRYAGAIN at
// once; after the partition heals the proxy serves again.
func TestFaultShimBlackhole(t *testing.T) {
	g := startShimRig(t)
	time.Sleep(shimWindow)
	_, uncBefore := g.loadErrors()
	f := shimFault{name: "blackhole 3s", at: time.Now()}
	g.shim.Blackhole(true)
	healed := false
	defer func() {
		if !healed {
			g.shim.Blackhole(false)
		}
	}()
	opened := g.awaitBreakerOpen(f.name, 10*time.Second)
	time.Sleep(time.Until(f.at.Add(3 * time.Second)))
	g.shim.Blackhole(false)
	healed = true
	f.lifted = time.Now()
	f.servedAt = g.awaitServing(f.name, f.lifted)
	g.awaitWorkers("every worker served after the partition")
	during := g.report(f)
	probeUnc := 0
	for _, s := range during {
		if s.kind == shimUncertain {
			probeUnc++
		}
	}
	_, unc := g.loadErrors()
	t.Logf("%s: UNCERTAIN replies: %d to the load, %d to the probe", f.name, unc-uncBefore, probeUnc)
	if unc == uncBefore && probeUnc == 0 {
		t.Errorf("%s: no UNCERTAIN reply for the requests in flight when the network hung", f.name)
	}
	if !opened.IsZero() {
		var refusals []time.Duration
		named := 0
		for _, s := range g.p.started(opened, f.lifted) {
			if s.kind != shimTryAgain {
				t.Errorf("%s: probe SET %v after the breaker opened got %q, want TRYAGAIN", f.name, s.start.Sub(opened).Round(time.Millisecond), s.msg)
				continue
			}
			if strings.Contains(s.msg, "circuit breaker") {
				named++
			}
			refusals = append(refusals, s.lat)
		}
		t.Logf("%s: breaker opened %v after the partition began; %d probe refusals while it was not closed (%d naming the breaker): %s",
			f.name, opened.Sub(f.at).Round(time.Millisecond), len(refusals), named, shimPercentiles(refusals))
	}
	g.finish()
}

// TestFaultShimRefuse: Redis unreachable for 2 s: every connection is cut
// and new ones are reset (a dial fails). Requests get TRYAGAIN at once;
// after connections are accepted again the proxy serves again.
func TestFaultShimRefuse(t *testing.T) {
	g := startShimRig(t)
	time.Sleep(shimWindow)
	f := shimFault{name: "refuse+cut 2s", at: time.Now()}
	g.shim.Refuse(true)
	g.shim.Cut()
	refusing := true
	defer func() {
		if refusing {
			g.shim.Refuse(false)
		}
	}()
	time.Sleep(2 * time.Second)
	t.Logf("%s: %d connections through the shim at the end of the refusal", f.name, g.shim.Conns())
	g.shim.Refuse(false)
	refusing = false
	f.lifted = time.Now()
	f.servedAt = g.awaitServing(f.name, f.lifted)
	g.awaitWorkers("every worker served after the refusal")
	during := g.report(f)
	var try []time.Duration
	for _, s := range during {
		if s.kind == shimTryAgain {
			try = append(try, s.lat)
		}
	}
	if len(try) == 0 {
		t.Errorf("%s: the probe got no TRYAGAIN while Redis was unreachable", f.name)
	}
	g.finish()
}
