package tests

// Fault tests: a real redis-server is killed (SIGKILL) and restarted under
// load. They check SPEC §9 from the client's side: every reply is a real
// reply or TRYAGAIN/UNCERTAIN, nothing waits past the configured timeouts,
// the proxy itself keeps serving, comes back within 3 s of Redis, and never
// acknowledges a write that Redis did not execute.

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

const (
	faultReadTimeout = time.Second
	// faultMargin is what a request may take beyond the read timeout:
	// scheduling under -race on a loaded machine, never a second timeout.
	faultMargin = time.Second
	// faultHang is how long a worker waits for a reply before calling it a
	// hang; well past the bound the test asserts.
	faultHang = 5 * time.Second
	// faultRecovery is the acceptance bound for serving again after Redis
	// is back.
	faultRecovery = 3 * time.Second

	faultCounterKey = "deepagents:{default}:kv:fault:counter"
)

// faultConfig is a proxy config with the short timeouts the fault tests
// assert against.
func faultConfig(t *testing.T, url string) config.Config {
	cfg := testutil.ProxyConfig(t, url)
	cfg.Keyspace.Mode = "off"
	cfg.Upstream.ReadTimeout = config.D(faultReadTimeout)
	cfg.Upstream.WriteTimeout = config.D(faultReadTimeout)
	cfg.Upstream.DialTimeout = config.D(500 * time.Millisecond)
	cfg.Upstream.BackoffMax = config.D(200 * time.Millisecond)
	return cfg
}

// faultIncr is one acknowledged INCR: the value Redis returned and the
// Redis lifetime (epoch) it came from.
type faultIncr struct {
	epoch int
	value int64
	w     int
}

// faultWorker is one client of the load; its fields are owned by its
// goroutine until the load stops, except the atomics.
type faultWorker struct {
	id int
	c  *testutil.Conn

	okBatches  atomic.Int64 // batches whose every reply was a real reply
	errReplies atomic.Int64 // TRYAGAIN or UNCERTAIN replies
	okEpoch    atomic.Int64 // epoch of the last all-OK batch, -1 before

	incrs      []faultIncr
	uncertainI map[int]int // epoch -> INCRs answered UNCERTAIN
	violations []string
}

// faultLoad runs workers sending pipelines of SET/GET/INCR through the
// proxy and records every reply. Redis lifetimes are told apart by epochs:
// a batch holds gate (read side) while it runs and is tagged with the epoch
// it started in; nextEpoch takes the write side after Redis is killed, so
// every batch of the old epoch has finished before Redis restarts.
type faultLoad struct {
	t       *testing.T
	workers []*faultWorker
	stop    atomic.Bool
	wg      sync.WaitGroup

	gate  sync.RWMutex
	epoch int // guarded by gate

	mu         sync.Mutex
	ok         int64
	tryagain   int64
	uncertain  int64
	messages   map[string]int64
	maxLatency time.Duration // any batch
	maxFailed  time.Duration // batches with at least one error reply
}

func startFaultLoad(t *testing.T, addr string, n int) *faultLoad {
	t.Helper()
	l := &faultLoad{t: t, messages: map[string]int64{}}
	for i := 0; i < n; i++ {
		w := &faultWorker{id: i, c: testutil.Dial(t, addr), uncertainI: map[int]int{}}
		w.okEpoch.Store(-1)
		l.workers = append(l.workers, w)
	}
	for _, w := range l.workers {
		l.wg.Add(1)
		go l.run(w)
	}
	return l
}

var faultPipelines = []int{1, 2, 3, 7, 16, 64}

func (l *faultLoad) run(w *faultWorker) {
	defer l.wg.Done()
	key := fmt.Sprintf("deepagents:{default}:kv:fault:w%d", w.id)
	lastIncr := map[int]int64{}
	var req []byte
	for seq := 0; !l.stop.Load(); seq++ {
		n := faultPipelines[(seq+w.id)%len(faultPipelines)]
		req = req[:0]
		vals := make([]string, n)
		for i := 0; i < n; i++ {
			switch i % 3 {
			case 0:
				vals[i] = fmt.Sprintf("w%d-s%d-i%d", w.id, seq, i)
				req = upstream.AppendCommand(req, "SET", key, vals[i])
			case 1:
				req = upstream.AppendCommand(req, "GET", key)
			case 2:
				req = upstream.AppendCommand(req, "INCR", faultCounterKey)
			}
		}
		l.gate.RLock()
		epoch := l.epoch
		start := time.Now()
		replies, err := faultRoundTrip(w.c, req, n)
		lat := time.Since(start)
		l.gate.RUnlock()
		if err != nil {
			w.violations = append(w.violations, fmt.Sprintf("batch of %d after %v: %v", n, lat, err))
			return // the connection is unusable; the test fails
		}
		var ok, try, unc int64
		msgs := map[string]int64{}
		setOK := false
		for i, r := range replies {
			if r[0] == '-' {
				msg := string(bytes.TrimRight(r[1:], "\r\n"))
				switch {
				case strings.HasPrefix(msg, "TRYAGAIN "):
					try++
				case strings.HasPrefix(msg, "UNCERTAIN "):
					unc++
					if i%3 == 2 {
						w.uncertainI[epoch]++
					}
				default:
					w.violations = append(w.violations, fmt.Sprintf("command %d of %d: unexpected error %q", i, n, r))
				}
				msgs[msg]++
				setOK = false
				continue
			}
			ok++
			switch i % 3 {
			case 0:
				setOK = string(r) == "+OK\r\n"
				if !setOK {
					w.violations = append(w.violations, fmt.Sprintf("SET reply %q", r))
				}
			case 1:
				// The SET just before went on the same connection in the
				// same write: if this GET has a reply, so had the SET, and
				// the value is the one this batch wrote.
				want := fmt.Sprintf("$%d\r\n%s\r\n", len(vals[i-1]), vals[i-1])
				if !setOK || string(r) != want {
					w.violations = append(w.violations, fmt.Sprintf("GET after SET %q (acknowledged %v): got %q", vals[i-1], setOK, r))
				}
			case 2:
				v, perr := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(string(r), ":"), "\r\n"), 10, 64)
				if perr != nil || r[0] != ':' {
					w.violations = append(w.violations, fmt.Sprintf("INCR reply %q", r))
					continue
				}
				if v <= lastIncr[epoch] {
					w.violations = append(w.violations, fmt.Sprintf("epoch %d: INCR acknowledged %d after %d on the same connection", epoch, v, lastIncr[epoch]))
				}
				lastIncr[epoch] = v
				w.incrs = append(w.incrs, faultIncr{epoch: epoch, value: v, w: w.id})
			}
		}
		if try+unc == 0 {
			w.okBatches.Add(1)
			w.okEpoch.Store(int64(epoch))
		} else {
			w.errReplies.Add(try + unc)
		}
		l.mu.Lock()
		l.ok += ok
		l.tryagain += try
		l.uncertain += unc
		for m, k := range msgs {
			l.messages[m] += k
		}
		l.maxLatency = max(l.maxLatency, lat)
		if try+unc > 0 {
			l.maxFailed = max(l.maxFailed, lat)
		}
		l.mu.Unlock()
		if try+unc > 0 {
			// A real client backs off a little after TRYAGAIN instead of
			// spinning; this also keeps the outage from starving the test.
			time.Sleep(time.Millisecond)
		}
	}
}

// faultRoundTrip writes a pipeline and reads its n replies, failing on a
// reply that takes longer than faultHang or a closed connection.
func faultRoundTrip(c *testutil.Conn, req []byte, n int) ([][]byte, error) {
	nc := c.NetConn()
	nc.SetWriteDeadline(time.Now().Add(faultHang))
	if _, err := nc.Write(req); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	out := make([][]byte, 0, n)
	for len(out) < n {
		r, err := c.ReadTimeout(faultHang)
		if err != nil {
			return nil, fmt.Errorf("reply %d of %d: %w", len(out)+1, n, err)
		}
		if len(r) == 0 {
			return nil, fmt.Errorf("reply %d of %d: empty frame", len(out)+1, n)
		}
		out = append(out, r)
	}
	return out, nil
}

// nextEpoch waits for every batch of the current epoch to finish and starts
// a new one. Call it after Redis is killed and before it restarts.
func (l *faultLoad) nextEpoch() int {
	l.gate.Lock()
	defer l.gate.Unlock()
	l.epoch++
	return l.epoch
}

// await polls cond until it holds or d passes; it fails the test with what
// if it never holds, or as soon as a worker has stopped on a violation.
func (l *faultLoad) await(d time.Duration, what string, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			l.halt()
			l.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// everyWorker reports whether cond holds for every worker.
func (l *faultLoad) everyWorker(cond func(w *faultWorker) bool) bool {
	for _, w := range l.workers {
		if !cond(w) {
			return false
		}
	}
	return true
}

// snapshot returns the counters so far.
func (l *faultLoad) snapshot() (ok, try, unc int64, maxLat, maxFailed time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.tryagain, l.uncertain, l.maxLatency, l.maxFailed
}

// halt stops the workers and waits for them.
func (l *faultLoad) halt() {
	l.stop.Store(true)
	l.wg.Wait()
}

// finish stops the load and checks the history: no violations, no request
// over the latency bound, and for each Redis lifetime acknowledged INCR
// values that are unique and leave no more gaps than there were UNCERTAIN
// INCRs (a TRYAGAIN must not have run). final is the counter read directly
// from the last Redis lifetime after the load stopped.
func (l *faultLoad) finish(readFinal func() int64) {
	t := l.t
	t.Helper()
	l.halt()
	for _, w := range l.workers {
		for _, v := range w.violations {
			t.Errorf("worker %d: %s", w.id, v)
		}
	}
	ok, try, unc, maxLat, maxFailed := l.snapshot()
	t.Logf("replies: %d ok, %d TRYAGAIN, %d UNCERTAIN; max batch latency %v (failed batches %v)", ok, try, unc, maxLat, maxFailed)
	for m, k := range l.messages {
		t.Logf("  %6d × %s", k, m)
	}
	if bound := faultReadTimeout + faultMargin; maxLat > bound {
		t.Errorf("a request waited %v, more than read_timeout %v + %v", maxLat, faultReadTimeout, faultMargin)
	}

	byEpoch := map[int][]faultIncr{}
	uncertain := map[int]int{}
	for _, w := range l.workers {
		for _, in := range w.incrs {
			byEpoch[in.epoch] = append(byEpoch[in.epoch], in)
		}
		for e, k := range w.uncertainI {
			uncertain[e] += k
		}
	}
	final := readFinal()
	for e := 0; e <= l.epoch; e++ {
		acked := byEpoch[e]
		sort.Slice(acked, func(i, j int) bool { return acked[i].value < acked[j].value })
		var maxV int64
		for i, in := range acked {
			if i > 0 && acked[i-1].value == in.value {
				t.Errorf("epoch %d: INCR value %d acknowledged twice (workers %d and %d)", e, in.value, acked[i-1].w, in.w)
			}
			if in.value < 1 {
				t.Errorf("epoch %d: INCR acknowledged %d", e, in.value)
			}
			maxV = max(maxV, in.value)
		}
		// Every value up to the largest acknowledged one was handed out by
		// Redis; one nobody saw belongs to an INCR whose reply was lost.
		gaps := maxV - int64(len(acked))
		if gaps > int64(uncertain[e]) {
			t.Errorf("epoch %d: %d INCRs ran without an acknowledgement but only %d were answered UNCERTAIN: a TRYAGAIN ran, or a reply went astray", e, gaps, uncertain[e])
		}
		t.Logf("epoch %d: %d INCRs acknowledged (max %d), %d UNCERTAIN, %d unseen", e, len(acked), maxV, uncertain[e], gaps)
		if e == l.epoch {
			if final < maxV || final > int64(len(acked)+uncertain[e]) {
				t.Errorf("epoch %d: counter is %d in Redis; want between the largest acknowledged value %d and acknowledged+uncertain %d",
					e, final, maxV, len(acked)+uncertain[e])
			}
		}
	}
}

// faultAwaitServing sends SET through the proxy until it is acknowledged and
// returns how long that took. Every reply meanwhile must be TRYAGAIN or
// UNCERTAIN.
func faultAwaitServing(t *testing.T, c *testutil.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r := c.DoS("SET", "deepagents:{default}:kv:fault:probe", "1")
		if r == "+OK\r\n" {
			return time.Since(start)
		}
		if !strings.HasPrefix(r, "-TRYAGAIN ") && !strings.HasPrefix(r, "-UNCERTAIN ") {
			t.Fatalf("probe SET: %q, want +OK, TRYAGAIN or UNCERTAIN", r)
		}
		if time.Since(start) > limit {
			t.Fatalf("proxy still answers %q %v after Redis is back", r, time.Since(start))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// faultReadCounter reads a counter (the shared one by default) straight
// from Redis.
func faultReadCounter(t *testing.T, r *testutil.Redis, key ...string) func() int64 {
	k := faultCounterKey
	if len(key) > 0 {
		k = key[0]
	}
	return func() int64 {
		t.Helper()
		c := testutil.Dial(t, r.Addr)
		defer c.Close()
		reply := c.DoS("GET", k)
		if reply == "$-1\r\n" {
			return 0
		}
		parts := strings.Split(reply, "\r\n")
		if len(parts) < 2 {
			t.Fatalf("GET counter: %q", reply)
		}
		v, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			t.Fatalf("GET counter: %q", reply)
		}
		return v
	}
}
