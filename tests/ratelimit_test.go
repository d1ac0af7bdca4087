package tests

// Rate limits ([ratelimit]) against a real redis-server: a client over its
// user's or workspace's rate gets TRYAGAIN with the wait, the accepted count
// follows the token bucket within a tolerance, and a client of another user
// and workspace loses nothing meanwhile.

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// flood sends pipelined SETs for d and counts the replies that passed and
// the TRYAGAIN ones; any other reply fails the test.
func flood(t *testing.T, c *testutil.Conn, key string, d time.Duration) (ok, limited int, msg string) {
	t.Helper()
	const depth = 16
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for i := 0; i < depth; i++ {
			c.Send("SET", key, "v")
		}
		for i := 0; i < depth; i++ {
			switch got := string(c.Read()); {
			case got == "+OK\r\n":
				ok++
			case strings.HasPrefix(got, "-TRYAGAIN "):
				limited++
				msg = got
			default:
				t.Fatalf("flood reply: %q", got)
			}
		}
		time.Sleep(time.Millisecond)
	}
	return ok, limited, msg
}

func TestRateLimitUserCommands(t *testing.T) {
	const rate = 500
	e := advStart(t, func(c *config.Config) {
		c.Limits.UserCommands = rate
		c.Limits.Burst = config.D(200 * time.Millisecond)
	})
	alice := e.login("alice")
	bob := e.login("bob")
	root := e.login("root")

	// Bob, another user in another workspace, works at his own pace while
	// alice floods: none of his commands is refused, and his latency is
	// reported.
	var wg sync.WaitGroup
	var bobLat []time.Duration
	bobErr := ""
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			got := bob.DoS("SET", advGlobex+"kv:bob", strconv.Itoa(i))
			bobLat = append(bobLat, time.Since(t0))
			if got != "+OK\r\n" && bobErr == "" {
				bobErr = got
			}
			time.Sleep(5 * time.Millisecond) // 200/s: under the rate
		}
	}()

	const d = 2 * time.Second
	start := time.Now()
	ok, limited, msg := flood(t, alice, advAcme+"kv:flood", d)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()

	// The bucket starts full (burst) and refills at the rate.
	want := rate*0.2 + rate*elapsed.Seconds()
	t.Logf("alice: %d accepted, %d TRYAGAIN in %v (bucket allows %.0f); e.g. %q", ok, limited, elapsed, want, msg)
	if float64(ok) > want*1.05 || float64(ok) < want*0.9 {
		t.Errorf("accepted %d, want %.0f ± 10%%", ok, want)
	}
	if limited == 0 || !strings.Contains(msg, "user 'alice' is over 500 commands/s; retry in ") || !strings.Contains(msg, "(ratelimit.user_commands)") {
		t.Errorf("TRYAGAIN message: %q", msg)
	}
	if bobErr != "" {
		t.Errorf("bob, under his own limit, got %q", bobErr)
	}
	sort.Slice(bobLat, func(i, j int) bool { return bobLat[i] < bobLat[j] })
	if len(bobLat) > 0 {
		t.Logf("bob meanwhile: %d commands, p50 %v p99 %v", len(bobLat), bobLat[len(bobLat)/2], bobLat[len(bobLat)*99/100])
	}
	if got := e.a.Server().Stats.RateLimited.Load(); got != int64(limited) {
		t.Errorf("rate_limited counter %d, want %d", got, limited)
	}
	// Refused commands did not run: the counter key counts what passed.
	alice.Do("DEL", advAcme+"kv:n")
	time.Sleep(300 * time.Millisecond) // refill
	n := 0
	for i := 0; i < 400; i++ {
		if got := alice.DoS("INCR", advAcme+"kv:n"); strings.HasPrefix(got, ":") {
			n++
		}
	}
	if got := e.direct.DoS("GET", advAcme+"kv:n"); got != "$"+strconv.Itoa(len(strconv.Itoa(n)))+"\r\n"+strconv.Itoa(n)+"\r\n" {
		t.Errorf("INCR passed %d times, Redis has %q", n, got)
	}
	// Admins are operators: not limited.
	for i := 0; i < 300; i++ {
		if got := root.DoS("PING"); got != "+PONG\r\n" {
			t.Fatalf("admin PING %d: %q", i, got)
		}
	}
}

func TestRateLimitWorkspaceShared(t *testing.T) {
	e := advStart(t, func(c *config.Config) {
		c.Limits.WorkspaceCommands = 100
		c.Limits.WorkspaceBytes = 20000
		c.Limits.Burst = config.D(time.Second)
	})
	alice, carol, bob := e.login("alice"), e.login("carol"), e.login("bob")
	// alice and carol share acme's 100 commands: 100 pass at once in all.
	passed := 0
	var last string
	for i := 0; i < 80; i++ {
		for _, c := range []*testutil.Conn{alice, carol} {
			if got := c.DoS("PING"); got == "+PONG\r\n" {
				passed++
			} else {
				last = got
			}
		}
	}
	if passed < 100 || passed > 104 || !strings.Contains(last, "workspace 'acme' is over 100 commands/s") {
		t.Errorf("acme passed %d of 160 (want ~100), last refusal %q", passed, last)
	}
	// globex is its own bucket.
	if got := bob.DoS("PING"); got != "+PONG\r\n" {
		t.Errorf("bob in globex: %q", got)
	}
	// Bytes: a 15 kB value passes, the second does not, and nothing of it
	// is written.
	big := strings.Repeat("x", 15000)
	if got := bob.DoS("SET", advGlobex+"kv:big1", big); got != "+OK\r\n" {
		t.Fatalf("first big SET: %q", got)
	}
	got := bob.DoS("SET", advGlobex+"kv:big2", big)
	if !strings.Contains(got, "workspace 'globex' is over 20000 bytes/s") || !strings.Contains(got, "(ratelimit.workspace_bytes)") {
		t.Errorf("second big SET: %q", got)
	}
	if got := e.direct.DoS("EXISTS", advGlobex+"kv:big2"); got != ":0\r\n" {
		t.Errorf("refused SET was written: %q", got)
	}
	// Inside MULTI a refused command aborts the transaction, like any
	// refusal.
	time.Sleep(1100 * time.Millisecond)
	bob.Do("MULTI")
	bob.Do("SET", advGlobex+"kv:tx1", big)
	if got := bob.DoS("SET", advGlobex+"kv:tx2", big); !strings.HasPrefix(got, "-TRYAGAIN") {
		t.Fatalf("second big SET in MULTI: %q", got)
	}
	if got := bob.DoS("EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
		t.Errorf("EXEC: %q", got)
	}
	if got := e.direct.DoS("EXISTS", advGlobex+"kv:tx1", advGlobex+"kv:tx2"); got != ":0\r\n" {
		t.Errorf("aborted transaction wrote: %q", got)
	}
}
