package tests

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// TestSentinelFailoverUnderLoad: the proxy follows a Sentinel-monitored
// master through SENTINEL FAILOVER while clients write; every write that
// WAIT 1 confirmed as replicated before or during the failover is on the
// new master afterwards.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	s := testutil.StartSentinelSetup(t, "apmaster")
	a := testutil.StartProxy(t, faultConfig(t, s.URL()))
	if got := a.Server().Pool().Addr(); got != s.Master.Addr {
		t.Fatalf("proxy connected to %s; the master is %s", got, s.Master.Addr)
	}

	type write struct{ key, val string }
	var (
		mu                      sync.Mutex
		durable                 []write
		acked, unconfirmed, try atomic.Int64
		other                   = map[string]int{}
		stop                    atomic.Bool
		wg                      sync.WaitGroup
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := testutil.Dial(t, a.Addr())
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("deepagents:{default}:kv:sentinel:w%d:%d", w, i)
				val := strconv.Itoa(i)
				var req []byte
				req = upstream.AppendCommand(req, "SET", key, val)
				req = upstream.AppendCommand(req, "WAIT", "1", "1000")
				replies, err := faultRoundTrip(c, req, 2)
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				set, wait := string(replies[0]), string(replies[1])
				switch {
				case set == "+OK\r\n" && wait == ":1\r\n":
					acked.Add(1)
					mu.Lock()
					durable = append(durable, write{key, val})
					mu.Unlock()
				case set == "+OK\r\n":
					unconfirmed.Add(1) // acknowledged by a master, not by a replica
				case strings.HasPrefix(set, "-TRYAGAIN") || strings.HasPrefix(set, "-UNCERTAIN"):
					try.Add(1)
					time.Sleep(time.Millisecond)
				default:
					// READONLY from the demoted master, for a write sent
					// just before the proxy moved.
					mu.Lock()
					other[strings.TrimSpace(set)]++
					mu.Unlock()
					time.Sleep(time.Millisecond)
				}
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)
	before := acked.Load()
	start := time.Now()
	newMaster := s.Failover(t)
	switched := time.Since(start)
	t.Logf("SENTINEL FAILOVER at %s, sentinels agreed at %s", start.Format("15:04:05.000"), start.Add(switched).Format("15:04:05.000"))
	// Followed: a write through the proxy lands on the new master. (The
	// load's WAIT 1 answers 0 there, after its timeout, until Sentinel
	// turns the old master into its replica, seconds later.)
	probe, onNew := testutil.Dial(t, a.Addr()), testutil.Dial(t, newMaster)
	var followed time.Duration
	for i := 0; ; i++ {
		v := strconv.Itoa(i)
		if probe.DoS("SET", "deepagents:{default}:kv:sentinel:probe", v) == "+OK\r\n" &&
			onNew.DoS("GET", "deepagents:{default}:kv:sentinel:probe") == fmt.Sprintf("$%d\r\n%s\r\n", len(v), v) {
			followed = time.Since(start)
			break
		}
		if time.Since(start) > switched+10*time.Second {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("proxy on %s, want %s, 10 s after the sentinels switched", a.Server().Pool().Addr(), newMaster)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("failover: sentinels agreed on %s after %v; the proxy served writes there %v after SENTINEL FAILOVER ",
		newMaster, switched.Round(time.Millisecond), followed.Round(time.Millisecond))
	t.Logf("writes: %d confirmed by WAIT 1 (%d before the failover), %d acknowledged without a replica, %d TRYAGAIN/UNCERTAIN, other: %v",
		acked.Load(), before, unconfirmed.Load(), try.Load(), other)
	if followed > switched+3*time.Second {
		t.Errorf("the proxy followed the new master %v after the sentinels agreed; want < 3 s", followed-switched)
	}
	for msg := range other {
		if !strings.HasPrefix(msg, "-READONLY") {
			t.Errorf("unexpected reply during the failover: %s", msg)
		}
	}

	// Every confirmed write is on the new master.
	direct := testutil.Dial(t, newMaster)
	lost := 0
	for _, w := range durable {
		got := direct.DoS("GET", w.key)
		if want := fmt.Sprintf("$%d\r\n%s\r\n", len(w.val), w.val); got != want {
			lost++
			if lost <= 5 {
				t.Errorf("confirmed write %s=%s: the new master has %q", w.key, w.val, got)
			}
		}
	}
	t.Logf("%d confirmed writes checked on the new master, %d lost", len(durable), lost)
	if before == 0 || len(durable) == int(before) {
		t.Errorf("confirmed writes: %d before the failover, %d in all: the load did not run through it", before, len(durable))
	}
}

// TestWaitCountsThisClientsWrites: WAIT runs on a connection of its own,
// but counts the replicas that have this client's writes, which went on
// the shared connection. With the replica stopped, a write is not
// replicated and WAIT must say so, even on a reused connection.
func TestWaitCountsThisClientsWrites(t *testing.T) {
	master := testutil.StartRedis(t, "--repl-diskless-sync-delay", "0")
	replica := testutil.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	direct := testutil.Dial(t, master.Addr)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(direct.DoS("INFO", "replication"), "state=online") {
		if time.Now().After(deadline) {
			t.Fatal("replica did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := testutil.StartProxy(t, faultConfig(t, master.URL()))
	c := testutil.Dial(t, a.Addr())
	if got := c.DoS("SET", "deepagents:{default}:kv:w", "1"); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	// The first WAIT leaves its connection idle in the pool.
	if got := c.DoS("WAIT", "1", "2000"); got != ":1\r\n" {
		t.Fatalf("WAIT with the replica up: %q", got)
	}
	replica.Pause()
	defer replica.Resume()
	if got := c.DoS("SET", "deepagents:{default}:kv:w", "2"); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := c.DoS("WAIT", "1", "300"); got != ":0\r\n" {
		t.Errorf("WAIT 1 after a write the stopped replica cannot have: %q, want :0", got)
	}
}
