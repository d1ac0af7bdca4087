package tests

// The adversarial suite, part two: attacks on resources and fairness
// (memory, one shared connection, commands that occupy Redis), on
// authentication, on information across workspaces, on reply accounting,
// and on the process (SIGHUP). See adversarial_test.go.

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// advPinger measures PING latency on its own connection until stopped.
type advPinger struct {
	max  atomic.Int64 // ns
	errs atomic.Int64
	n    atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func startPinger(t *testing.T, addr string, login func(c *testutil.Conn)) *advPinger {
	p := &advPinger{stop: make(chan struct{}), done: make(chan struct{})}
	c := testutil.DialFree(t, addr)
	if login != nil {
		login(c)
	}
	go func() {
		defer close(p.done)
		defer c.Close()
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			start := time.Now()
			c.Write([]byte("*1\r\n$4\r\nPING\r\n"))
			b, err := c.ReadTimeout(10 * time.Second)
			d := time.Since(start)
			p.n.Add(1)
			if err != nil || string(b) != "+PONG\r\n" {
				p.errs.Add(1)
				return
			}
			if int64(d) > p.max.Load() {
				p.max.Store(int64(d))
			}
		}
	}()
	return p
}

func (p *advPinger) finish() (time.Duration, int64, int64) {
	close(p.stop)
	<-p.done
	return time.Duration(p.max.Load()), p.errs.Load(), p.n.Load()
}

// TestAdversarialMemoryAmplification: clients announce huge bulks and send
// little (class 6). The proxy, a separate process, grows buffers with the
// bytes received, so its RSS stays under the budget plus a fixed overhead
// and every other client keeps being served. Then clients that really send
// more than the budget: the largest are cut, the proxy stays bounded.
func TestAdversarialMemoryAmplification(t *testing.T) {
	r := testutil.StartRedis(t)
	const budget = 64 << 20
	const overhead = 64 << 20 // Go runtime, per-connection buffers and goroutines of 150 clients
	p := testutil.StartProcess(t, []string{"AGENTPROXY_LISTEN_MEMORY_BUDGET=" + strconv.Itoa(budget)},
		"--upstream", r.URL(), "--log-level", "error")
	base := p.RSS(t)
	pinger := startPinger(t, p.Addr, nil)
	chunk := []byte(strings.Repeat("x", 64<<10))
	var peak int64
	for round := 0; round < 3; round++ {
		var conns []net.Conn
		for i := 0; i < 150; i++ {
			c, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			key := fmt.Sprintf("deepagents:{default}:kv:big%d", i)
			hdr := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, 60<<20)
			c.Write([]byte(hdr))
			c.Write(chunk)
		}
		time.Sleep(500 * time.Millisecond) // let the proxy read what it was sent
		rss := p.RSS(t)
		peak = max(peak, rss)
		t.Logf("round %d: 150 clients announced 60 MB each and sent 64 KiB: proxy RSS %.1f MiB (at start %.1f MiB)",
			round+1, float64(rss)/(1<<20), float64(base)/(1<<20))
		for _, c := range conns {
			c.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	if peak > budget+overhead {
		t.Errorf("proxy RSS peaked at %.1f MiB; budget %d MiB plus %d MiB overhead", float64(peak)/(1<<20), budget>>20, overhead>>20)
	}
	// Clients that really send: 40 of them 8 MiB each (320 MiB) against a
	// 64 MiB budget, slowly enough that all of them hold memory at once.
	var wg sync.WaitGroup
	var cut atomic.Int64
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", p.Addr)
			if err != nil {
				return
			}
			defer c.Close()
			key := fmt.Sprintf("deepagents:{default}:kv:real%d", i)
			c.Write([]byte(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, 8<<20)))
			for sent := 0; sent < 8<<20; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					cut.Add(1)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			c.Write([]byte("\r\n"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := make([]byte, 512)
			n, _ := c.Read(b)
			if !strings.HasPrefix(string(b[:n]), "+OK") {
				cut.Add(1)
			}
		}(i)
	}
	sampled := int64(0)
	doneSending := make(chan struct{})
	go func() { wg.Wait(); close(doneSending) }()
sample:
	for {
		select {
		case <-doneSending:
			break sample
		case <-time.After(100 * time.Millisecond):
			sampled = max(sampled, p.RSS(t))
		}
	}
	maxPing, pingErrs, pings := pinger.finish()
	t.Logf("40 clients sending 8 MiB each against a %d MiB budget: %d cut, peak RSS %.1f MiB; %d PINGs, slowest %v, %d errors",
		budget>>20, cut.Load(), float64(sampled)/(1<<20), pings, maxPing, pingErrs)
	if sampled > budget+overhead {
		t.Errorf("proxy RSS peaked at %.1f MiB with clients sending for real", float64(sampled)/(1<<20))
	}
	if cut.Load() == 0 {
		t.Errorf("no client was cut although they sent 5x the budget")
	}
	// Logged above: well under 100 ms here. The bound catches stalls of
	// the kind the attack used to cause (seconds), not scheduling noise.
	if pingErrs > 0 || maxPing > 500*time.Millisecond {
		t.Errorf("another client's PING: slowest %v, %d errors (want far under a second, none)", maxPing, pingErrs)
	}
}

// TestAdversarialBigReplyFairness: five clients pipeline GETs of a 10 MB
// value in a loop; a client of another workspace doing small GETs is not
// held up behind their replies (class 7). The clients are raw sockets that
// discard what they read, so the measurement is of the proxy, not of the
// test's own parsing.
func TestAdversarialBigReplyFairness(t *testing.T) {
	e := advStart(t, nil)
	bigKey, smallKey := advAcme+"kv:big", advGlobex+"kv:small"
	e.direct.Do("SET", bigKey, strings.Repeat("v", 10<<20))
	e.direct.Do("SET", smallKey, "s")
	login := func(user string) net.Conn {
		c, err := net.Dial("tcp", e.a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write(isoCmd(nil, "AUTH", user, user+"-pw"))
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "+OK\r\n" {
			t.Fatalf("AUTH %s: %q %v", user, b, err)
		}
		return c
	}
	const depth = 4
	var req []byte
	for k := 0; k < depth; k++ {
		req = isoCmd(req, "GET", bigKey)
	}
	want := depth * (10<<20 + len("$10485760\r\n\r\n"))
	stop := make(chan struct{})
	var bigBatches, bigErrs atomic.Int64
	var pullers []net.Conn
	for i := 0; i < 5; i++ {
		pullers = append(pullers, login("alice"))
	}
	wg := advConcurrent(5, stop, func(i int) {
		c := pullers[i]
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(req); err != nil {
			bigErrs.Add(1)
			return
		}
		buf := make([]byte, 1<<20)
		got := 0
		for got < want {
			n, err := c.Read(buf[:min(len(buf), want-got)])
			if err != nil {
				select {
				case <-stop:
				default:
					bigErrs.Add(1)
				}
				return
			}
			if got == 0 && buf[0] != '$' {
				bigErrs.Add(1)
			}
			got += n
		}
		bigBatches.Add(1)
	})
	bob := login("bob")
	small := isoCmd(nil, "GET", smallKey)
	var lat []time.Duration
	errs := 0
	b := make([]byte, 64)
	// At least 5 s and 300 GETs (a slow -race build gets fewer per second;
	// a p99 over too few samples would be the maximum), at most 30 s.
	begin := time.Now()
	for d := time.Since(begin); d < 5*time.Second || len(lat) < 300 && d < 30*time.Second; d = time.Since(begin) {
		start := time.Now()
		bob.SetDeadline(start.Add(10 * time.Second))
		bob.Write(small)
		n, err := io.ReadAtLeast(bob, b, 7)
		lat = append(lat, time.Since(start))
		if err != nil || string(b[:n]) != "$1\r\ns\r\n" {
			errs++
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	for _, c := range pullers {
		c.SetDeadline(time.Now())
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("small GETs beside 5 clients pipelining %d GETs of 10 MB: %d GETs, p50 %v, p99 %v, max %v, %d errors; %d big batches (%d MB), %d big errors",
		depth, len(lat), p50, p99, lat[len(lat)-1], errs, bigBatches.Load(), bigBatches.Load()*depth*10, bigErrs.Load())
	// The figure to look at is the logged p99 (well under 50 ms on the
	// 2-core development machine; see the note). The bound here only
	// catches a return of the old behaviour, where the small GETs waited
	// seconds behind the big replies and ended UNCERTAIN, without making a
	// loaded CI machine's scheduling a failure.
	if p99 > 250*time.Millisecond || errs > 0 {
		t.Errorf("small GETs: p99 %v, %d errors; want p99 far under a second and no errors", p99, errs)
	}
	if bigErrs.Load() > 0 || bigBatches.Load() == 0 {
		t.Errorf("big pulls: %d batches, %d errors", bigBatches.Load(), bigErrs.Load())
	}
}

// TestAdversarialCommandsThatEndABusyRedis: while Redis is occupied (a long
// script an admin allowed, CLIENT PAUSE) the commands that end it still get
// through (class 7).
func TestAdversarialCommandsThatEndABusyRedis(t *testing.T) {
	e := advStart(t, nil)
	root, alice := e.login("root"), e.login("alice")
	// A busy script on the shared connection.
	root.Send("EVAL", "local t = redis.call('TIME'); while true do local n = redis.call('TIME'); if n[1] - t[1] > 20 then break end end return 1", "0")
	time.Sleep(200 * time.Millisecond)
	other := e.login("root")
	start := time.Now()
	got := other.DoS("SCRIPT", "KILL")
	if got != "+OK\r\n" {
		t.Errorf("SCRIPT KILL while a script runs: %q", got)
	}
	if r := string(root.Read()); !strings.Contains(r, "killed") {
		t.Errorf("the killed script's reply: %q", r)
	}
	t.Logf("SCRIPT KILL answered in %v", time.Since(start))
	// CLIENT PAUSE WRITE holds an agent's write; CLIENT UNPAUSE is not
	// queued behind it.
	if got := root.DoS("CLIENT", "PAUSE", "20000", "WRITE"); got != "+OK\r\n" {
		t.Fatalf("CLIENT PAUSE: %q", got)
	}
	alice.Send("SET", advAcme+"kv:paused", "1")
	time.Sleep(100 * time.Millisecond)
	start = time.Now()
	if got := other.DoS("CLIENT", "UNPAUSE"); got != "+OK\r\n" {
		t.Errorf("CLIENT UNPAUSE: %q", got)
	}
	if r := string(alice.Read()); r != "+OK\r\n" {
		t.Errorf("the paused SET: %q", r)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("CLIENT UNPAUSE took %v", d)
	}
	// A busy FUNCTION: FUNCTION KILL gets through the same way.
	root.Do("FUNCTION", "LOAD", "#!lua name=busy\nredis.register_function{function_name='spin', callback=function() local t = redis.call('TIME'); while true do local n = redis.call('TIME'); if n[1] - t[1] > 20 then break end end return 1 end, flags={'no-writes'}}")
	root.Send("FCALL_RO", "spin", "0")
	time.Sleep(200 * time.Millisecond)
	if got := other.DoS("FUNCTION", "KILL"); got != "+OK\r\n" {
		t.Errorf("FUNCTION KILL: %q", got)
	}
	root.Read()
}

// TestAdversarialAuthLockout: wrong passwords cost their sender and the
// name they tried, not the other users behind 127.0.0.1 (class 8).
func TestAdversarialAuthLockout(t *testing.T) {
	e := advStart(t, func(c *config.Config) { c.Auth.MaxFailures = 5 })
	// Guesses for alice from several connections, and for unknown names.
	for k := 0; k < 3; k++ {
		a := testutil.Dial(t, e.a.Addr())
		for i := 0; i < 2; i++ {
			a.Do("AUTH", "alice", "guess"+strconv.Itoa(k*2+i))
		}
	}
	attacker := testutil.Dial(t, e.a.Addr())
	for i := 0; i < 20; i++ {
		attacker.Do("AUTH", "nobody"+strconv.Itoa(i), "guess")
	}
	// Other users keep logging in, on new connections.
	for _, u := range []string{"bob", "carol", "root"} {
		c := e.login(u)
		if got := c.DoS("PING"); got != "+PONG\r\n" {
			t.Errorf("%s after the attack: %q", u, got)
		}
	}
	// The attacker's own connection is locked, even for a right password.
	if got := attacker.DoS("AUTH", "bob", "bob-pw"); !strings.HasPrefix(got, "-ERR too many failed AUTH") {
		t.Errorf("the attacker's connection: %q", got)
	}
	// The name it guessed is locked (the target of the guessing).
	c := testutil.Dial(t, e.a.Addr())
	if got := c.DoS("AUTH", "alice", "alice-pw"); !strings.HasPrefix(got, "-ERR too many failed AUTH") {
		t.Errorf("alice after 6 wrong guesses for her: %q", got)
	}
	// A fresh attacker guessing unknown names does not lock bob out.
	a2 := testutil.Dial(t, e.a.Addr())
	for i := 0; i < 10; i++ {
		a2.Do("AUTH", "x"+strconv.Itoa(i), "y")
	}
	if got := testutil.Dial(t, e.a.Addr()).DoS("AUTH", "bob", "bob-pw"); got != "+OK\r\n" {
		t.Errorf("bob after guesses of unknown names: %q", got)
	}
}

// TestAdversarialInfoAcrossWorkspaces: what INFO and its relatives show an
// agent (class 9).
func TestAdversarialInfoAcrossWorkspaces(t *testing.T) {
	e := advStart(t, nil)
	for i := 0; i < 50; i++ {
		e.direct.Do("SET", advGlobex+"kv:n"+strconv.Itoa(i), "x")
	}
	alice := e.login("alice")
	forbidden := []string{"db0:", "keys=", "executable", "config_file", "process_id", "run_id", "tcp_port",
		"cmdstat_", "errorstat_", "connected_slaves", "master_host", "rdb_", "aof_", "used_cpu", "os:", "latency_percentiles"}
	for _, args := range [][]string{{"INFO"}, {"INFO", "all"}, {"INFO", "everything"}, {"INFO", "keyspace"},
		{"INFO", "commandstats"}, {"INFO", "server", "keyspace", "replication"}, {"INFO", "persistence"}} {
		got := alice.DoS(args...)
		for _, f := range forbidden {
			if strings.Contains(got, f) {
				t.Errorf("%q shows %q to an agent:\n%s", args, f, got)
			}
		}
		if len(args) == 1 || args[1] == "all" || args[1] == "everything" {
			if !strings.Contains(got, "# Proxy\r\n") || !strings.Contains(got, "workspace:acme") ||
				!strings.Contains(got, "redis_version:") {
				t.Errorf("%q: %q", args, got)
			}
		}
	}
	for _, args := range [][]string{{"DBSIZE"}, {"RANDOMKEY"}, {"MEMORY", "STATS"}, {"MEMORY", "DOCTOR"},
		{"PUBSUB", "NUMPAT"}, {"PUBSUB", "CHANNELS"}, {"SLOWLOG", "GET"}, {"LATENCY", "LATEST"}, {"CONFIG", "GET", "dir"},
		{"ROLE"}, {"LASTSAVE"}, {"CLUSTER", "COUNTKEYSINSLOT", "0"}, {"FUNCTION", "LIST"}, {"FUNCTION", "STATS"},
		{"KEYS", "*"}, {"SCAN", "0", "MATCH", advGlobex + "*"}, {"ACL", "WHOAMI"}, {"ACL", "LIST"}} {
		e.mustRefuse(alice, args...)
	}
	// SCAN lists only acme's keys however it is asked, and its COUNT is
	// bounded (COUNT 1000000000 would walk everyone's keys in one call).
	if got := alice.DoS("SCAN", "0", "COUNT", "1000000000"); strings.Contains(got, "globex") {
		t.Errorf("SCAN: %q", got)
	}
	mon := isoStartMonitor(t, e.r.Addr)
	alice.Do("SCAN", "0", "COUNT", "1000000000", "MATCH", "*")
	for _, l := range mon.lines() {
		if strings.Contains(l, "1000000000") {
			t.Errorf("SCAN's COUNT reached Redis unbounded: %q", l)
		}
	}
	// INFO in subscribed mode and in RESP3 is filtered too.
	s := e.login("alice")
	s.Do("HELLO", "3")
	s.Do("SUBSCRIBE", advAcme+"events")
	if got := s.DoS("INFO"); strings.Contains(got, "executable") || !strings.Contains(got, "# Proxy") || got[0] != '=' {
		t.Errorf("INFO while subscribed (RESP3): %q", got)
	}
	// An admin sees Redis's INFO with the proxy's section.
	if got := e.login("root").DoS("INFO"); !strings.Contains(got, "db0:keys=") || !strings.Contains(got, "# Proxy") {
		t.Errorf("admin INFO: %.300q", got)
	}
}

// TestAdversarialReplyAccounting: commands that answer zero or several
// times (class 10) never hand replies to other clients of the shared
// connection.
func TestAdversarialReplyAccounting(t *testing.T) {
	e := advStart(t, nil)
	e.direct.Do("SET", advGlobex+"kv:mine", "bob-value")
	alice := e.login("alice")
	stop := make(chan struct{})
	var bobErrs, bobOK atomic.Int64
	bobs := []*testutil.Conn{e.login("bob"), e.login("bob"), e.login("bob")}
	for _, b := range bobs[1:] {
		b.Do("HELLO", "3")
	}
	wg := advConcurrent(len(bobs), stop, func(i int) {
		c := bobs[i]
		c.SetT(t)
		c.Send("GET", advGlobex+"kv:mine")
		b, err := c.ReadTimeout(5 * time.Second)
		if err != nil || string(b) != "$9\r\nbob-value\r\n" {
			bobErrs.Add(1)
			return
		}
		bobOK.Add(1)
	})
	many := []string{"UNSUBSCRIBE"}
	for i := 0; i < 50; i++ {
		many = append(many, advAcme+"events:"+strconv.Itoa(i))
	}
	for _, proto := range []string{"2", "3"} {
		alice.Do("HELLO", proto)
		for _, args := range [][]string{many, {"UNSUBSCRIBE"}, {"PUNSUBSCRIBE", "a*", "b*"}, {"PUNSUBSCRIBE"},
			{"SUNSUBSCRIBE", "x", "y", "z"}, {"SUNSUBSCRIBE"}} {
			want := max(len(args)-1, 1)
			alice.Send(args...)
			for k := 0; k < want; k++ {
				r := string(alice.Read())
				if !strings.Contains(r, strings.ToLower(args[0])) {
					t.Fatalf("RESP%s %s reply %d: %q", proto, args[0], k, r)
				}
				if proto == "3" && r[0] != '>' || proto == "2" && r[0] != '*' {
					t.Errorf("RESP%s %s reply type: %q", proto, args[0], r)
				}
			}
			if got := alice.DoS("PING"); got != "+PONG\r\n" {
				t.Fatalf("PING after %s: %q (extra replies)", args[0], got)
			}
		}
	}
	for _, args := range [][]string{{"CLIENT", "REPLY", "OFF"}, {"CLIENT", "REPLY", "SKIP"}} {
		e.mustRefuse(alice, args...)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if bobErrs.Load() > 0 || bobOK.Load() == 0 {
		t.Errorf("bob's GETs beside the attack: %d right, %d wrong", bobOK.Load(), bobErrs.Load())
	}
	if n := e.a.Server().Stats.UpstreamErrors.Load(); n != 0 {
		t.Errorf("%d upstream errors: the shared connection was dropped", n)
	}
}

// TestAdversarialSIGHUP: a hangup neither stops the proxy nor loses the
// embedded store's data (class 11): after SIGHUP and then SIGKILL, a
// restart finds what was written before the hangup.
func TestAdversarialSIGHUP(t *testing.T) {
	data := filepath.Join(t.TempDir(), "embedded.snapshot")
	env := []string{"AGENTPROXY_EMBEDDED_SNAPSHOT_INTERVAL=1h"}
	p := testutil.StartProcess(t, env, "--data", data, "--log-level", "error")
	c := testutil.Dial(t, p.Addr)
	if got := c.DoS("SET", "deepagents:{default}:kv:before-hup", "kept"); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := c.DoS("GET", "deepagents:{default}:kv:before-hup"); got != "$4\r\nkept\r\n" {
		t.Fatalf("after SIGHUP the connection: %q (log: %s)", got, p.Log)
	}
	if _, err := os.Stat(data); err != nil {
		t.Fatalf("no snapshot after SIGHUP: %v", err)
	}
	p.Cmd.Process.Kill()
	p.Cmd.Wait()
	p2 := testutil.StartProcess(t, env, "--data", data, "--log-level", "error")
	if got := testutil.Dial(t, p2.Addr).DoS("GET", "deepagents:{default}:kv:before-hup"); got != "$4\r\nkept\r\n" {
		t.Fatalf("after SIGHUP, SIGKILL and a restart: %q", got)
	}
}
