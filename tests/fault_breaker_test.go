package tests

import (
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentproxy/agentproxy/breaker"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// TestFaultBreakerHungRedis stops Redis with SIGSTOP (a hung server: its
// sockets stay open, nothing answers) under load. The requests in flight
// wait for the read timeout and get UNCERTAIN; then the breaker opens and
// every request gets TRYAGAIN at once, naming the breaker; after SIGCONT the
// breaker's probe closes it and the proxy serves again. No acknowledged
// write is lost.
func TestFaultBreakerHungRedis(t *testing.T) {
	r := testutil.StartRedis(t)
	leaks := goleak.IgnoreCurrent()
	cfg := faultConfig(t, r.URL())
	cfg.Breaker = config.Breaker{ConsecutiveFailures: 3, OpenTimeout: config.D(time.Second)}
	a := testutil.StartProxy(t, cfg)
	l := startFaultLoad(t, a.Addr(), 8)
	l.await(10*time.Second, "every worker to complete batches", func() bool {
		return l.everyWorker(func(w *faultWorker) bool { return w.okBatches.Load() >= 5 })
	})
	brk := a.Server().Pool().Breaker()

	r.Pause()
	paused := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			r.Resume()
		}
	}()
	for brk.State() != breaker.Open {
		if time.Since(paused) > 10*time.Second {
			l.halt()
			t.Fatalf("breaker still %s 10 s after Redis hung", brk.State())
		}
		time.Sleep(time.Millisecond)
	}
	opened := time.Since(paused)

	// While open: every request is refused at once.
	c := testutil.Dial(t, a.Addr())
	var lat []time.Duration
	for i := 0; i < 200; i++ {
		s := time.Now()
		got := c.DoS("SET", "deepagents:{default}:kv:fault:open", "1")
		d := time.Since(s)
		if brk.State() != breaker.Open {
			break // the probe is due
		}
		if !strings.HasPrefix(got, "-TRYAGAIN ") || !strings.Contains(got, "circuit breaker") {
			t.Fatalf("SET while the breaker is open: %q", got)
		}
		lat = append(lat, d)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) < 20 {
		t.Fatalf("only %d requests while the breaker was open", len(lat))
	}
	p50, p99, worst := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	if worst > 100*time.Millisecond {
		t.Errorf("a request took %v while the breaker was open: it waited for Redis", worst)
	}
	// The same with the load held (its workers wait at the gate): what
	// one client sees on a quiet machine.
	l.gate.Lock()
	var quiet []time.Duration
	for len(quiet) < 200 && brk.State() == breaker.Open {
		s := time.Now()
		got := c.DoS("GET", "deepagents:{default}:kv:fault:open")
		quiet = append(quiet, time.Since(s))
		if !strings.HasPrefix(got, "-TRYAGAIN ") {
			l.gate.Unlock()
			t.Fatalf("GET while the breaker is open: %q", got)
		}
	}
	l.gate.Unlock()
	sort.Slice(quiet, func(i, j int) bool { return quiet[i] < quiet[j] })
	if len(quiet) > 0 {
		t.Logf("refusals with the load held: %d, p50 %v p99 %v max %v", len(quiet), quiet[len(quiet)/2], quiet[len(quiet)*99/100], quiet[len(quiet)-1])
	}
	t.Logf("breaker opened %v after SIGSTOP; %d refusals under load while open: p50 %v p99 %v max %v",
		opened.Round(time.Millisecond), len(lat), p50, p99, worst)

	// Stay hung past a probe or two: the probe fails, the breaker reopens.
	time.Sleep(1500 * time.Millisecond)
	if brk.State() == breaker.Closed {
		t.Errorf("breaker closed while Redis is still hung")
	}
	r.Resume()
	resumed = true
	cont := time.Now()
	served := faultAwaitServing(t, testutil.Dial(t, a.Addr()), 10*time.Second)
	t.Logf("served again %v after SIGCONT (breaker %s, %d trips)", served.Round(time.Millisecond), brk.State(), brk.Trips())
	if d := time.Since(cont); d > faultRecovery {
		t.Errorf("served again %v after SIGCONT; want < %v", d, faultRecovery)
	}
	before := map[*faultWorker]int64{}
	for _, w := range l.workers {
		before[w] = w.okBatches.Load()
	}
	l.await(10*time.Second, "every worker to be served after SIGCONT", func() bool {
		return l.everyWorker(func(w *faultWorker) bool { return w.okBatches.Load() > before[w] })
	})
	// SIGSTOP keeps Redis's data: one Redis lifetime (epoch).
	l.finish(faultReadCounter(t, r))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("heap in use at the end: %d KiB", ms.HeapInuse>>10)

	// Everything the proxy started (readers, redial loops, probes) ends
	// with it.
	for _, w := range l.workers {
		w.c.Close()
	}
	c.Close()
	a.Shutdown()
	if err := goleak.Find(leaks, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
		t.Errorf("goroutines left after shutdown: %v", err)
	}
}

// TestBreakerIgnoresErrorReplies: error replies are answers from a healthy
// node; a flood of them never opens the breaker.
func TestBreakerIgnoresErrorReplies(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := faultConfig(t, r.URL())
	cfg.Breaker = config.Breaker{ConsecutiveFailures: 1, OpenTimeout: config.D(time.Second)}
	a := testutil.StartProxy(t, cfg)
	c := testutil.Dial(t, a.Addr())
	c.DoS("RPUSH", "deepagents:{default}:kv:list", "a")
	for i := 0; i < 500; i++ {
		if got := c.DoS("GET", "deepagents:{default}:kv:list"); !strings.HasPrefix(got, "-WRONGTYPE") {
			t.Fatalf("GET of a list: %q", got)
		}
		if got := c.DoS("NOSUCHCOMMAND"); !strings.HasPrefix(got, "-ERR") {
			t.Fatalf("unknown command: %q", got)
		}
	}
	if st := a.Server().Pool().Breaker().State(); st != breaker.Closed {
		t.Fatalf("breaker %s after error replies", st)
	}
}

// TestFaultBreakerCutsHeldConnections: clients holding a connection of
// their own to a node that hangs (a BLPOP with no timeout, an open MULTI,
// a subscription) get an error when the breaker opens, not a wait without
// end.
func TestFaultBreakerCutsHeldConnections(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := faultConfig(t, r.URL())
	cfg.Breaker = config.Breaker{ConsecutiveFailures: 2, OpenTimeout: config.D(500 * time.Millisecond)}
	a := testutil.StartProxy(t, cfg)
	blocked, multi, sub, load := testutil.Dial(t, a.Addr()), testutil.Dial(t, a.Addr()), testutil.Dial(t, a.Addr()), testutil.Dial(t, a.Addr())
	blocked.Send("BLPOP", "deepagents:{default}:kv:never", "0")
	if got := multi.DoS("MULTI"); got != "+OK\r\n" {
		t.Fatalf("MULTI: %q", got)
	}
	if got := multi.DoS("SET", "deepagents:{default}:kv:m", "1"); got != "+QUEUED\r\n" {
		t.Fatalf("SET in MULTI: %q", got)
	}
	sub.Send("SUBSCRIBE", "deepagents:{default}:events:x")
	if got := string(sub.Read()); !strings.Contains(got, "subscribe") {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	time.Sleep(100 * time.Millisecond) // BLPOP is in Redis
	r.Pause()
	defer r.Resume()
	paused := time.Now()
	// Traffic that times out opens the breaker.
	for a.Server().Pool().Breaker().State() != breaker.Open {
		load.DoS("GET", "deepagents:{default}:kv:x")
		if time.Since(paused) > 10*time.Second {
			t.Fatal("breaker not open 10 s after Redis hung")
		}
	}
	opened := time.Since(paused)
	for name, c := range map[string]*testutil.Conn{"BLPOP 0": blocked, "EXEC": multi} {
		if name == "EXEC" {
			c.Send("EXEC")
		}
		got, err := c.ReadTimeout(2 * time.Second)
		if err != nil {
			t.Errorf("%s: no reply 2 s after the breaker opened (%v)", name, err)
			continue
		}
		if !strings.HasPrefix(string(got), "-UNCERTAIN ") && !strings.HasPrefix(string(got), "-TRYAGAIN ") && !strings.HasPrefix(string(got), "-EXECABORT") {
			t.Errorf("%s: %q", name, got)
		}
		t.Logf("%s after the breaker opened (%v after SIGSTOP): %q", name, opened.Round(time.Millisecond), got)
	}
	got, err := sub.ReadTimeout(2 * time.Second)
	t.Logf("subscriber after the breaker opened: %q %v", got, err)
	if err == nil && !strings.HasPrefix(string(got), "-") {
		t.Errorf("subscriber: %q", got)
	}
}
