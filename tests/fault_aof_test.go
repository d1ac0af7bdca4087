package tests

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// TestFaultKillRestartKeepsAcknowledgedWrites: Redis with appendonly is
// killed (SIGKILL) under a write load and restarted from its log. Every
// write the proxy acknowledged before, during and after is in Redis at the
// end: the proxy acknowledges only what Redis acknowledged, and Redis
// wrote it to its log before answering.
func TestFaultKillRestartKeepsAcknowledgedWrites(t *testing.T) {
	r := testutil.StartRedis(t, "--appendonly", "yes", "--appendfsync", "everysec")
	leaks := goleak.IgnoreCurrent()
	a := testutil.StartProxy(t, faultConfig(t, r.URL()))
	var (
		mu       sync.Mutex
		acked    = map[string]string{}
		errs     = map[string]int{}
		ok, fail atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := testutil.Dial(t, a.Addr())
			for i := 0; !stop.Load(); i++ {
				var req []byte
				keys := make([]string, 4)
				for k := range keys {
					keys[k] = fmt.Sprintf("deepagents:{default}:kv:aof:w%d:%d:%d", w, i, k)
					req = upstream.AppendCommand(req, "SET", keys[k], strconv.Itoa(i))
				}
				replies, err := faultRoundTrip(c, req, len(keys))
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				for k, rep := range replies {
					switch s := string(rep); {
					case s == "+OK\r\n":
						ok.Add(1)
						mu.Lock()
						acked[keys[k]] = strconv.Itoa(i)
						mu.Unlock()
					case strings.HasPrefix(s, "-TRYAGAIN ") || strings.HasPrefix(s, "-UNCERTAIN ") ||
						strings.HasPrefix(s, "-LOADING "): // Redis's own: still reading its AOF, the write did not run
						fail.Add(1)
						mu.Lock()
						errs[strings.Fields(s)[0]]++
						mu.Unlock()
						time.Sleep(time.Millisecond)
					default:
						t.Errorf("worker %d: SET: %q", w, s)
					}
				}
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)
	before := ok.Load()
	r.Stop()
	killed := time.Now()
	time.Sleep(time.Second)
	during := ok.Load()
	r.Start()
	restarted := time.Now()
	served := faultAwaitServing(t, testutil.Dial(t, a.Addr()), 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("kill: %d acknowledged before, %d while Redis was down (%v), serving %v after the restart; %d acknowledged in all, error replies %v",
		before, during-before, restarted.Sub(killed).Round(time.Millisecond), served.Round(time.Millisecond), ok.Load(), errs)
	if served > faultRecovery {
		t.Errorf("served again %v after Redis restarted; want < %v", served, faultRecovery)
	}
	direct := testutil.Dial(t, r.Addr)
	lost := 0
	for k, v := range acked {
		if got := direct.DoS("GET", k); got != fmt.Sprintf("$%d\r\n%s\r\n", len(v), v) {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged %s=%s, after the restart %q", k, v, got)
			}
		}
	}
	t.Logf("%d acknowledged writes checked in Redis after the kill and restart: %d lost", len(acked), lost)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("heap in use at the end: %d KiB", ms.HeapInuse>>10)
	// Nothing the proxy started outlives it: readers, redial loops,
	// probes, the sessions of the clients that were cut.
	a.Shutdown()
	if err := goleak.Find(leaks, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
		t.Errorf("goroutines left after shutdown: %v", err)
	}
}
