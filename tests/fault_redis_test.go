package tests

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/upstream"
)

// TestFaultKillRedisMidLoad is the acceptance test: kill Redis under load,
// check the errors and the latency during the outage and that the proxy
// answers PING itself meanwhile, restart Redis and measure recovery.
func TestFaultKillRedisMidLoad(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, faultConfig(t, r.URL()))
	l := startFaultLoad(t, a.Addr(), 16)

	l.await(10*time.Second, "every worker to complete batches", func() bool {
		return l.everyWorker(func(w *faultWorker) bool { return w.okBatches.Load() >= 5 })
	})
	okBefore, _, _, _, _ := l.snapshot()

	r.Stop()
	killed := time.Now()
	ping := testutil.Dial(t, a.Addr())
	var pings int
	var maxPing time.Duration
	// The outage lasts past the read timeout, so a request stuck waiting
	// for a dead connection would show up in the latency figures.
	for time.Since(killed) < faultReadTimeout+500*time.Millisecond ||
		!l.everyWorker(func(w *faultWorker) bool { return w.errReplies.Load() > 0 }) {
		start := time.Now()
		if got := ping.DoS("PING"); got != "+PONG\r\n" {
			l.halt()
			t.Fatalf("PING during the outage: %q", got)
		}
		pings++
		maxPing = max(maxPing, time.Since(start))
		if time.Since(killed) > 10*time.Second {
			l.halt()
			t.Fatalf("workers saw no errors 10 s after Redis was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.nextEpoch()
	_, outTry, outUnc, _, outMaxFailed := l.snapshot()
	outage := time.Since(killed)
	if outTry+outUnc == 0 {
		t.Errorf("no TRYAGAIN or UNCERTAIN during a %v outage", outage)
	}
	if maxPing > 500*time.Millisecond {
		t.Errorf("PING took %v during the outage; the proxy answers it itself", maxPing)
	}
	if !a.Server().Pool().Up() {
		t.Logf("pool reports upstream down during the outage, as expected")
	} else {
		t.Errorf("pool reports upstream up %v after Redis was killed", outage)
	}

	restart := time.Now()
	r.Start()
	redisUp := time.Since(restart)
	probe := testutil.Dial(t, a.Addr())
	served := faultAwaitServing(t, probe, 10*time.Second)
	recovery := time.Since(restart)
	t.Logf("outage %v: %d TRYAGAIN + %d UNCERTAIN, max failed-batch latency %v, %d local PINGs (max %v)",
		outage.Round(time.Millisecond), outTry, outUnc, outMaxFailed, pings, maxPing)
	t.Logf("recovery: redis-server answered %v after restart, proxy served SET %v later (total %v)",
		redisUp.Round(time.Millisecond), served.Round(time.Millisecond), recovery.Round(time.Millisecond))
	if recovery > faultRecovery {
		t.Errorf("proxy served again %v after Redis restarted; want < %v", recovery, faultRecovery)
	}

	epoch := int64(l.epoch) // the gate is released; workers only read it
	l.await(10*time.Second, "every worker to be served after the restart", func() bool {
		return l.everyWorker(func(w *faultWorker) bool { return w.okEpoch.Load() == epoch })
	})
	l.finish(faultReadCounter(t, r))
	okAfter, _, _, _, _ := l.snapshot()
	if okBefore == 0 || okAfter <= okBefore {
		t.Errorf("ok replies: %d before the kill, %d at the end", okBefore, okAfter)
	}
	if got := testutil.Dial(t, a.Addr()).DoS("PING"); got != "+PONG\r\n" {
		t.Errorf("PING after the test: %q", got)
	}
}

// TestFaultNeverAcknowledgesUnexecutedWrites kills and restarts Redis
// several times under an INCR load and checks, per Redis lifetime, that
// acknowledged values are unique and increasing per connection, and that
// no TRYAGAIN'd INCR ran (gaps are covered by UNCERTAIN replies).
func TestFaultNeverAcknowledgesUnexecutedWrites(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, faultConfig(t, r.URL()))
	l := startFaultLoad(t, a.Addr(), 12)
	probe := testutil.Dial(t, a.Addr())
	for cycle := 0; cycle < 3; cycle++ {
		epoch := int64(cycle)
		l.await(10*time.Second, fmt.Sprintf("cycle %d: every worker served", cycle), func() bool {
			return l.everyWorker(func(w *faultWorker) bool { return w.okEpoch.Load() == epoch })
		})
		r.Stop()
		l.await(10*time.Second, fmt.Sprintf("cycle %d: every worker to see the outage", cycle), func() bool {
			return l.everyWorker(func(w *faultWorker) bool { return w.errReplies.Load() > 0 })
		})
		l.nextEpoch()
		restart := time.Now()
		r.Start()
		faultAwaitServing(t, probe, 10*time.Second)
		d := time.Since(restart)
		t.Logf("cycle %d: served again %v after restart", cycle, d.Round(time.Millisecond))
		if d > faultRecovery {
			t.Errorf("cycle %d: proxy served again %v after Redis restarted; want < %v", cycle, d, faultRecovery)
		}
	}
	last := int64(l.epoch)
	l.await(10*time.Second, "every worker served in the last lifetime", func() bool {
		return l.everyWorker(func(w *faultWorker) bool { return w.okEpoch.Load() == last })
	})
	l.finish(faultReadCounter(t, r))
}

// TestFaultProxyStartsWhileRedisDown: a proxy started with Redis down
// answers TRYAGAIN at once (it neither hangs nor refuses to start) and
// serves when Redis comes up, without a restart of its own.
func TestFaultProxyStartsWhileRedisDown(t *testing.T) {
	r := testutil.StartRedis(t)
	r.Stop()
	// testutil.StartProxy waits for the upstream; this test must not.
	a, err := app.Start(faultConfig(t, r.URL()), zap.NewNop())
	if err != nil {
		t.Fatalf("proxy must start while Redis is down: %v", err)
	}
	t.Cleanup(func() { a.Shutdown() })

	c := testutil.Dial(t, a.Addr())
	if got := c.DoS("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	var maxLat time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		got := c.DoS("SET", "deepagents:{default}:kv:fault:k", "v")
		maxLat = max(maxLat, time.Since(start))
		// Unreachable, or the breaker open after the failed dials: not sent.
		if !strings.HasPrefix(got, "-TRYAGAIN upstream ") || !strings.Contains(got, "not sent") {
			t.Fatalf("SET with Redis down: %q, want TRYAGAIN (not sent)", got)
		}
	}
	// A pipeline gets one TRYAGAIN per command, in place.
	c.Write(append(upstream.AppendCommand(nil, "GET", "a"), upstream.AppendCommand(nil, "PING")...))
	first, second := string(c.Read()), string(c.Read())
	if !strings.HasPrefix(first, "-TRYAGAIN upstream ") || second != "+PONG\r\n" {
		t.Errorf("pipeline GET, PING with Redis down: %q %q", first, second)
	}
	t.Logf("TRYAGAIN with Redis down: max latency %v", maxLat)
	if maxLat > 200*time.Millisecond {
		t.Errorf("TRYAGAIN took %v; it must be immediate", maxLat)
	}

	restart := time.Now()
	r.Start()
	served := faultAwaitServing(t, c, 10*time.Second)
	t.Logf("proxy started while Redis was down: served %v after Redis answered (%v after restart)",
		served, time.Since(restart).Round(time.Millisecond))
	if d := time.Since(restart); d > faultRecovery {
		t.Errorf("served %v after Redis started; want < %v", d, faultRecovery)
	}
	if got := c.DoS("GET", "deepagents:{default}:kv:fault:probe"); got != "$1\r\n1\r\n" {
		t.Errorf("GET after recovery: %q", got)
	}
}

// TestFaultUpstreamReadTimeout: Redis stalls (DEBUG SLEEP) with the
// connection open. An INCR through the proxy is answered UNCERTAIN after
// read_timeout, not after the stall; Redis runs it when it wakes, which is
// why UNCERTAIN and not TRYAGAIN is the honest answer. INCRs answered
// TRYAGAIN meanwhile must not run. The proxy serves again afterwards.
func TestFaultUpstreamReadTimeout(t *testing.T) {
	r := testutil.StartRedis(t, "--enable-debug-command", "yes")
	a := testutil.StartProxy(t, faultConfig(t, r.URL()))
	c := testutil.Dial(t, a.Addr())
	key := "deepagents:{default}:kv:fault:slow"
	counter := "deepagents:{default}:kv:fault:slow-counter"
	if got := c.DoS("SET", key, "v"); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}

	const stall = 3 * time.Second
	sleeper := testutil.Dial(t, r.Addr)
	sleeper.Send("DEBUG", "SLEEP", strconv.Itoa(int(stall/time.Second)))
	stalled := time.Now()
	// Redis is single-threaded: once a PING on another connection goes
	// unanswered, the sleep has begun.
	check, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	check.Write([]byte("PING\r\n"))
	check.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := check.Read(make([]byte, 16)); n > 0 {
		t.Fatalf("Redis answered PING; DEBUG SLEEP did not start")
	}

	start := time.Now()
	got := c.DoS("INCR", counter)
	took := time.Since(start)
	t.Logf("INCR during a %v stall: %q after %v (read_timeout %v)", stall, got, took.Round(time.Millisecond), faultReadTimeout)
	if want := "-" + wire.ErrUncertainTimeout + "\r\n"; got != want {
		t.Errorf("INCR during the stall: %q, want %q", got, want)
	}
	if took > faultReadTimeout+faultMargin/2 {
		t.Errorf("INCR took %v; want about read_timeout %v", took, faultReadTimeout)
	}
	if took < faultReadTimeout/2 {
		t.Errorf("INCR answered after %v, before the read timeout %v", took, faultReadTimeout)
	}
	// The proxy answers its own commands meanwhile.
	if got := c.DoS("PING"); got != "+PONG\r\n" {
		t.Errorf("PING during the stall: %q", got)
	}
	// Everything during the stall is TRYAGAIN or UNCERTAIN within the
	// bound, until Redis wakes.
	uncertain, tryagain := 1, 0
	var acked []int64
	for time.Since(stalled) < stall+time.Second {
		s := time.Now()
		got := c.DoS("INCR", counter)
		if d := time.Since(s); d > faultReadTimeout+faultMargin {
			t.Errorf("INCR during the stall took %v", d)
		}
		switch {
		case strings.HasPrefix(got, ":"):
			v, _ := strconv.ParseInt(strings.TrimSpace(got[1:]), 10, 64)
			acked = append(acked, v)
		case strings.HasPrefix(got, "-UNCERTAIN "):
			uncertain++
		case strings.HasPrefix(got, "-TRYAGAIN "):
			tryagain++
		default:
			t.Fatalf("INCR during the stall: %q", got)
		}
		if len(acked) > 0 {
			break // Redis is awake
		}
	}
	if got := string(sleeper.Read()); got != "+OK\r\n" {
		t.Errorf("DEBUG SLEEP: %q", got)
	}
	woke := time.Now()
	served := faultAwaitServing(t, c, 10*time.Second)
	t.Logf("served again %v after Redis woke", served)
	if d := time.Since(woke); d > faultRecovery {
		t.Errorf("served again %v after the stall ended; want < %v", d, faultRecovery)
	}
	if got := c.DoS("GET", key); got != "$1\r\nv\r\n" {
		t.Errorf("GET after the stall: %q", got)
	}

	final := faultReadCounter(t, r, counter)()
	t.Logf("stall: %d UNCERTAIN, %d TRYAGAIN, %d acknowledged %v; counter in Redis %d", uncertain, tryagain, len(acked), acked, final)
	if final < 1 {
		t.Errorf("the INCR answered UNCERTAIN did not run when Redis woke (counter %d): expected it to", final)
	}
	if max := int64(len(acked) + uncertain); final > max {
		t.Errorf("counter %d > %d acknowledged + %d uncertain: an INCR answered TRYAGAIN ran", final, len(acked), uncertain)
	}
	for _, v := range acked {
		if v > final {
			t.Errorf("acknowledged INCR value %d above the counter %d", v, final)
		}
	}
}

// faultAwaitBlocked waits until Redis reports n blocked clients.
func faultAwaitBlocked(t *testing.T, direct *testutil.Conn, n int) {
	t.Helper()
	want := "blocked_clients:" + strconv.Itoa(n) + "\r\n"
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(direct.DoS("INFO", "clients"), want) {
		if time.Now().After(deadline) {
			t.Fatalf("Redis never reported %d blocked clients", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// faultIsUpstreamError reports whether a raw reply is TRYAGAIN or UNCERTAIN.
func faultIsUpstreamError(r []byte) bool {
	return bytes.HasPrefix(r, []byte("-TRYAGAIN ")) || bytes.HasPrefix(r, []byte("-UNCERTAIN "))
}

// TestFaultPinnedAndBlockedClients: clients on dedicated connections (a
// BLPOP waiting forever, an open MULTI, a subscriber) learn about a Redis
// crash at once instead of hanging, and the same kinds of work succeed
// again after Redis restarts.
func TestFaultPinnedAndBlockedClients(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, faultConfig(t, r.URL()))
	direct := testutil.Dial(t, r.Addr)
	queue := "deepagents:{default}:kv:fault:queue"
	key := "deepagents:{default}:kv:fault:tx"
	channel := "deepagents:{default}:events:fault"

	blocked := testutil.Dial(t, a.Addr())
	blocked.Send("BLPOP", queue, "0") // waits forever
	faultAwaitBlocked(t, direct, 1)

	tx := testutil.Dial(t, a.Addr())
	if got := tx.DoS("MULTI"); got != "+OK\r\n" {
		t.Fatalf("MULTI: %q", got)
	}
	if got := tx.DoS("SET", key, "v"); got != "+QUEUED\r\n" {
		t.Fatalf("SET in MULTI: %q", got)
	}

	sub := testutil.Dial(t, a.Addr())
	if got := sub.DoS("SUBSCRIBE", channel); !strings.Contains(got, "subscribe") {
		t.Fatalf("SUBSCRIBE: %q", got)
	}

	r.Stop()
	killed := time.Now()
	bound := faultReadTimeout + faultMargin

	got, err := blocked.ReadTimeout(bound + time.Second)
	took := time.Since(killed)
	if err != nil {
		t.Errorf("BLPOP 0 after the crash: no reply in %v (%v)", took, err)
	} else if string(got) != "-"+wire.ErrUncertain+"\r\n" {
		t.Errorf("BLPOP 0 after the crash: %q, want UNCERTAIN (the pop may have happened)", got)
	}
	t.Logf("BLPOP 0 answered %v after the crash", took)
	if took > bound {
		t.Errorf("BLPOP answered %v after the crash; want within %v", took, bound)
	}

	// The transaction's connection is gone with the MULTI state: EXEC
	// must not claim success, and the client is not left in a MULTI.
	start := time.Now()
	exec := tx.Do("EXEC")
	if !faultIsUpstreamError(exec) && !bytes.HasPrefix(exec, []byte("-EXECABORT")) {
		t.Errorf("EXEC after the crash: %q, want TRYAGAIN, UNCERTAIN or EXECABORT", exec)
	}
	if d := time.Since(start); d > bound {
		t.Errorf("EXEC took %v", d)
	}
	t.Logf("EXEC after the crash: %q", exec)

	// The subscriber's connection ends (or gets an error) instead of
	// waiting for messages that will never come.
	sb, err := sub.ReadTimeout(bound + time.Second)
	if err == nil && !faultIsUpstreamError(sb) && !bytes.HasPrefix(sb, []byte("-")) {
		t.Errorf("subscriber after the crash: %q, want the connection closed or an error", sb)
	} else if err != nil && strings.Contains(err.Error(), "timeout") {
		t.Errorf("subscriber after the crash: still open and silent after %v", bound+time.Second)
	}

	if got := testutil.Dial(t, a.Addr()).DoS("PING"); got != "+PONG\r\n" {
		t.Errorf("PING during the outage: %q", got)
	}
	if got := tx.Do("MULTI"); !faultIsUpstreamError(got) && string(got) != "+OK\r\n" {
		t.Errorf("MULTI during the outage: %q", got)
	} else if string(got) == "+OK\r\n" {
		tx.Do("DISCARD")
	}

	restart := time.Now()
	r.Start()
	faultAwaitServing(t, testutil.Dial(t, a.Addr()), 10*time.Second)
	// Dedicated connections are dialled fresh: a transaction, a blocking
	// pop and a subscription work again.
	deadline := restart.Add(faultRecovery)
	for {
		got := tx.DoS("MULTI")
		if got == "+OK\r\n" {
			break
		}
		if !faultIsUpstreamError([]byte(got)) || time.Now().After(deadline) {
			t.Fatalf("MULTI after the restart: %q", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	tx.DoS("SET", key, "after")
	if got := tx.DoS("EXEC"); got != "*1\r\n+OK\r\n" {
		t.Errorf("EXEC after the restart: %q", got)
	}
	direct = testutil.Dial(t, r.Addr)
	if got := direct.DoS("GET", key); got != "$5\r\nafter\r\n" {
		t.Errorf("transaction result in Redis: %q", got)
	}
	direct.DoS("RPUSH", queue, "job")
	if got := blocked.DoS("BLPOP", queue, "1"); got != fmt.Sprintf("*2\r\n$%d\r\n%s\r\n$3\r\njob\r\n", len(queue), queue) {
		t.Errorf("BLPOP after the restart: %q", got)
	}
	sub2 := testutil.Dial(t, a.Addr())
	if got := sub2.DoS("SUBSCRIBE", channel); !strings.Contains(got, "subscribe") {
		t.Fatalf("SUBSCRIBE after the restart: %q", got)
	}
	if got := direct.DoS("PUBLISH", channel, "hi"); got != ":1\r\n" {
		t.Errorf("PUBLISH after the restart: %q", got)
	}
	if got := string(sub2.Read()); !strings.HasSuffix(got, "$2\r\nhi\r\n") {
		t.Errorf("message after the restart: %q", got)
	}
	t.Logf("dedicated connections work again %v after the restart", time.Since(restart).Round(time.Millisecond))
}
