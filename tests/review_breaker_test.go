package tests

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// TestReviewSlowCommandOpensBreaker: one agent (alice, workspace acme)
// runs an allowed but slow command (SUNIONSTORE over one 20k-member set
// named thousands of times: seconds of Redis CPU, a 100 KB request). The
// shared connection's read timeout fires with other workspaces' calls
// queued behind it; each counts as a breaker failure, the breaker opens,
// and cutHeld severs every held connection of every workspace: bob's
// subscription and his blocked BLPOP end with errors although they had
// nothing to do with the slow command.
func TestReviewSlowCommandOpensBreaker(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Upstream.ReadTimeout = config.D(time.Second) // the default is 5 s: the same with N=5000
	cfg.Listen.RequireAuth = true
	cfg.Users = []config.User{
		{Name: "alice", PasswordSHA256: isoHash("alice-pw"), Workspaces: []string{"acme"}, Role: "agent"},
		{Name: "bob", PasswordSHA256: isoHash("bob-pw"), Workspaces: []string{"globex"}, Role: "agent"},
	}
	a := testutil.StartProxy(t, cfg)
	login := func(u string) *testutil.Conn {
		c := testutil.Dial(t, a.Addr())
		if got := c.DoS("AUTH", u, u+"-pw"); got != "+OK\r\n" {
			t.Fatalf("AUTH %s: %q", u, got)
		}
		return c
	}
	alice := login("alice")
	set := "deepagents:{acme}:kv:set"
	for i := 0; i < 20000; i += 500 {
		args := []string{"SADD", set}
		for j := i; j < i+500; j++ {
			args = append(args, fmt.Sprint(j))
		}
		alice.DoS(args...)
	}
	// Bob: a subscriber and a blocked BLPOP (dedicated connections), and
	// readers on the shared connection.
	sub := login("bob")
	if g := sub.DoS("SUBSCRIBE", "deepagents:{globex}:events"); !strings.Contains(g, "subscribe") {
		t.Fatalf("SUBSCRIBE: %q", g)
	}
	blk := login("bob")
	blk.Send("BLPOP", "deepagents:{globex}:kv:q", "30")
	time.Sleep(100 * time.Millisecond)

	args := []string{"SUNIONSTORE", "deepagents:{acme}:kv:dst"}
	for i := 0; i < 2500; i++ {
		args = append(args, set)
	}
	start := time.Now()
	alice.Send(args...)
	time.Sleep(50 * time.Millisecond)
	var wg sync.WaitGroup
	var uncertain, refused atomic.Int64
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := login("bob")
			for time.Since(start) < 3*time.Second {
				g := c.DoS("GET", "deepagents:{globex}:kv:x")
				switch {
				case strings.HasPrefix(g, "-UNCERTAIN"):
					uncertain.Add(1)
				case strings.Contains(g, "circuit breaker"):
					refused.Add(1)
				}
			}
		}()
	}
	ar, aerr := alice.ReadTimeout(10 * time.Second)
	t.Logf("alice's SUNIONSTORE: %q %v after %v", trunc(ar), aerr, time.Since(start).Round(time.Millisecond))
	br, berr := blk.ReadTimeout(5 * time.Second)
	sr, serr := sub.ReadTimeout(5 * time.Second)
	wg.Wait()
	brk := a.Server().Pool().Breaker()
	t.Logf("bob: BLPOP got %q %v; subscriber got %q %v; GETs: %d UNCERTAIN, %d refused by the breaker; breaker trips %d",
		trunc(br), berr, trunc(sr), serr, uncertain.Load(), refused.Load(), brk.Trips())
	if brk.Trips() > 0 {
		t.Errorf("one agent's slow command opened the node's breaker (%d trips) for every workspace", brk.Trips())
	}
	if berr == nil && strings.HasPrefix(string(br), "-") {
		t.Errorf("bob's BLPOP, in another workspace, was cut: %q", br)
	}
	if serr == nil && strings.HasPrefix(string(sr), "-") {
		t.Errorf("bob's subscription, in another workspace, was cut: %q", sr)
	}
}
