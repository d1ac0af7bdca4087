package tests

// Bad-input tests: malformed, oversized, endless, abandoned and unread
// requests against the proxy in front of a real redis-server. Each checks
// SPEC §9's promise from the outside: the offender gets a clear error or is
// cut off, every other client keeps working, and memory stays bounded.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

const (
	badKey = "deepagents:{default}:kv:badinput"

	badInvalidBulk      = "-ERR Protocol error: invalid bulk length\r\n"
	badInvalidMultibulk = "-ERR Protocol error: invalid multibulk length\r\n"
	badTooBigInline     = "-ERR Protocol error: too big inline request\r\n"
	badUnbalanced       = "-ERR Protocol error: unbalanced quotes in request\r\n"
	badTooBigRequest    = "-ERR Protocol error: request exceeds the proxy's max_request_bytes (listen.max_request_bytes)\r\n"
	badTooBigMbulk      = "-ERR Protocol error: too big mbulk count string\r\n"
	badTooBigBulkCount  = "-ERR Protocol error: too big bulk count string\r\n"
	badMaxClients       = "-ERR max number of clients reached\r\n"
)

// badStart starts redis-server and the proxy in front of it; edit adjusts
// the proxy config. The keyspace is off: these tests are about the wire.
func badStart(t *testing.T, edit func(*config.Config)) (*app.App, *testutil.Redis) {
	t.Helper()
	r := testutil.StartRedis(t)
	cfg := testutil.ProxyConfig(t, r.URL())
	cfg.Keyspace.Mode = "off"
	if edit != nil {
		edit(&cfg)
	}
	return testutil.StartProxy(t, cfg), r
}

// badWaitFor polls cond until it holds or d passes.
func badWaitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// badExpectClosed checks the proxy closed c: the next read ends (EOF or
// reset) instead of timing out.
func badExpectClosed(t *testing.T, c *testutil.Conn) {
	t.Helper()
	b, err := c.ReadTimeout(5 * time.Second)
	if err == nil {
		t.Fatalf("connection still open: got %q", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed within 5 s")
	}
}

// badCheckWorks runs a SET and a GET on c and checks the exact replies.
func badCheckWorks(t *testing.T, c *testutil.Conn, key, value string) {
	t.Helper()
	if got := c.DoS("SET", key, value); got != "+OK\r\n" {
		t.Fatalf("SET %s: %q", key, got)
	}
	want := "$" + strconv.Itoa(len(value)) + "\r\n" + value + "\r\n"
	if got := c.DoS("GET", key); got != want {
		t.Fatalf("GET %s: %.60q, want %.60q", key, got, want)
	}
}

// badMem returns the heap and stack in use after a collection.
func badMem() uint64 {
	heap, stack := badMemSplit()
	return heap + stack
}

// badMemSplit returns the heap and the stack in use after a collection.
func badMemSplit() (heap, stack uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

func badMB(n uint64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

// TestBadInputMalformed sends malformed requests: each offender gets
// Redis's error, after the replies to the commands ahead of it, and is
// disconnected; a client connected alongside is not disturbed.
func TestBadInputMalformed(t *testing.T) {
	a, _ := badStart(t, nil)
	good := testutil.Dial(t, a.Addr())
	badCheckWorks(t, good, badKey+":good", "before")
	for i, tc := range []struct {
		name, input, want string
	}{
		{"expected dollar", "*1\r\nx\r\n", "-ERR Protocol error: expected '$', got 'x'\r\n"},
		{"bad multibulk length", "*x\r\n", badInvalidMultibulk},
		{"leading zero count", "*01\r\n$4\r\nPING\r\n", badInvalidMultibulk},
		{"bad bulk length", "*1\r\n$x\r\n", badInvalidBulk},
		{"negative bulk length", "*2\r\n$3\r\nGET\r\n$-1\r\n", badInvalidBulk},
		{"bulk without crlf", "*1\r\n$4\r\nPINGxx", badInvalidBulk},
		{"unbalanced quotes", "SET k \"abc\r\n", badUnbalanced},
		{"answers first", "PING\r\n*1\r\n$4\r\nPING\r\nECHO 'a b'\r\n*1\r\n:1\r\n",
			"+PONG\r\n+PONG\r\n$3\r\na b\r\n-ERR Protocol error: expected '$', got ':'\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.Server().Stats.ProtocolErrors.Load()
			bad := testutil.Dial(t, a.Addr())
			bad.Write([]byte(tc.input))
			var got []byte
			for len(got) < len(tc.want) {
				b, err := bad.ReadTimeout(5 * time.Second)
				if err != nil {
					t.Fatalf("after %q: %v", got, err)
				}
				got = append(got, b...)
			}
			if string(got) != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			badExpectClosed(t, bad)
			if n := a.Server().Stats.ProtocolErrors.Load(); n != before+1 {
				t.Fatalf("protocol errors counted %d, want %d", n, before+1)
			}
			badCheckWorks(t, good, badKey+":good", "after "+strconv.Itoa(i))
		})
	}
}

// TestBadInputOverLimit checks a bulk length above max_request_bytes is
// refused from its header alone, before any payload is sent, and so is a
// request whose arguments add up to more; a request within the limit works.
func TestBadInputOverLimit(t *testing.T) {
	const limit = 1 << 20
	a, _ := badStart(t, func(c *config.Config) { c.Listen.MaxRequestBytes = limit })
	good := testutil.Dial(t, a.Addr())

	part := strings.Repeat("p", 600000)
	for _, tc := range []struct {
		name, input, want string
	}{
		{"huge bulk", "*3\r\n$3\r\nSET\r\n$" + strconv.Itoa(len(badKey)) + "\r\n" + badKey + "\r\n$999999999\r\n", badInvalidBulk},
		{"bulk just over", "*2\r\n$4\r\nECHO\r\n$" + strconv.Itoa(limit+1) + "\r\n", badInvalidBulk},
		{"sum over", "*3\r\n$4\r\nSADD\r\n$600000\r\n" + part + "\r\n$600000\r\n", badTooBigRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := testutil.Dial(t, a.Addr())
			// The header is all that is sent: the reply cannot wait for a
			// payload that never comes.
			bad.Write([]byte(tc.input))
			got, err := bad.ReadTimeout(5 * time.Second)
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			badExpectClosed(t, bad)
		})
	}
	// Within the limit (payload plus framing) a request is served.
	value := strings.Repeat("v", limit-100)
	badCheckWorks(t, good, badKey+":big", value)
}

// TestBadInputSlowConsumer pipelines GETs of a 100 KB value without ever
// reading the replies. The proxy must cut that client off after
// client_write_timeout, keep serving another client meanwhile, and not
// accumulate the unread replies.
func TestBadInputSlowConsumer(t *testing.T) {
	a, _ := badStart(t, func(c *config.Config) { c.Listen.ClientWriteTimeout = config.D(300 * time.Millisecond) })
	good := testutil.Dial(t, a.Addr())
	value := strings.Repeat("0123456789", 10<<10) // 100 KB
	key := badKey + ":slow"
	badCheckWorks(t, good, key, value)
	wantGet := "$" + strconv.Itoa(len(value)) + "\r\n" + value + "\r\n"

	base := badMem()
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if v := m.HeapInuse + m.StackInuse; v > peak.Load() {
				peak.Store(v)
			}
		}
	}()

	slow := testutil.Dial(t, a.Addr()).NetConn()
	slow.(*net.TCPConn).SetReadBuffer(4096)
	batch := bytes.Repeat(upstream.AppendCommand(nil, "GET", key), 100)
	start := time.Now()
	var sent atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		for time.Since(start) < 10*time.Second {
			slow.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := slow.Write(batch)
			sent.Add(int64(n))
			if err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()

	// Another client keeps getting complete, correct replies until the
	// slow one is cut off.
	gets := 0
	for a.Server().Stats.SlowConsumers.Load() == 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("slow consumer not disconnected within 10 s")
		}
		if got := good.DoS("GET", key); got != wantGet {
			t.Fatalf("GET during the flood: %.40q...", got)
		}
		gets++
	}
	cutoff := time.Since(start)
	err := <-writeErr
	if err == nil {
		t.Fatal("the slow client could keep writing for 10 s: not disconnected")
	}
	close(stopSampling)
	<-sampled
	badWaitFor(t, 5*time.Second, "the slow client's session to end", func() bool { return a.Server().Clients() == 1 })
	after := badMem()
	badCheckWorks(t, good, key+":after", "ok")

	gotOut := sent.Load() / int64(len(batch)) * 100
	t.Logf("slow consumer cut off after %v, its socket having taken %d GETs (%s; their replies would be %s); the other client did %d GETs meanwhile",
		cutoff.Round(time.Millisecond), gotOut, badMB(uint64(sent.Load())), badMB(uint64(gotOut*int64(len(wantGet)))), gets)
	t.Logf("heap+stack in use: before %s, peak %s, after %s", badMB(base), badMB(peak.Load()), badMB(after))
	if after > base && after-base > 200<<20 {
		t.Fatalf("memory grew by %s after the slow consumer left", badMB(after-base))
	}
	if p := peak.Load(); p > base && p-base > 400<<20 {
		t.Fatalf("memory peaked %s above the start while the slow consumer was connected", badMB(p-base))
	}
}

// TestBadInputVanishingClients has clients leave mid-command, mid-pipeline
// and while blocked, over and over, while another client checks every one
// of its replies: no reply may go to the wrong client and no session may
// linger.
func TestBadInputVanishingClients(t *testing.T) {
	a, _ := badStart(t, nil)
	good := testutil.Dial(t, a.Addr())
	badCheckWorks(t, good, badKey+":good", "start")

	var pipeline []byte
	for i := 0; i < 2000; i++ {
		k := badKey + ":vanish:" + strconv.Itoa(i%50)
		pipeline = upstream.AppendCommand(pipeline, "SET", k, strconv.Itoa(i))
		pipeline = upstream.AppendCommand(pipeline, "GET", k)
	}
	half := upstream.AppendCommand(nil, "SET", badKey+":half", strings.Repeat("h", 1000))
	half = half[:len(half)/2]
	vanish := []struct {
		name string
		data []byte
		rst  bool
	}{
		{"half a command", half, false},
		{"half a command, reset", half, true},
		{"big pipeline", pipeline, false},
		{"big pipeline, reset", pipeline, true},
		{"blocked", upstream.AppendCommand(nil, "BLPOP", badKey+":nolist", "5"), false},
		{"blocked, reset", upstream.AppendCommand(nil, "BLPOP", badKey+":nolist", "5"), true},
		{"pipeline ending in half a command", append(append([]byte(nil), pipeline[:len(pipeline)/3]...), half...), false},
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var vanished atomic.Int64
	vanishErr := make(chan error, len(vanish))
	for _, v := range vanish {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := net.DialTimeout("tcp", a.Addr(), 5*time.Second)
				if err != nil {
					vanishErr <- fmt.Errorf("%s: dial: %w", v.name, err)
					return
				}
				nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
				nc.Write(v.data)
				if v.rst {
					nc.(*net.TCPConn).SetLinger(0)
				}
				nc.Close()
				vanished.Add(1)
			}
		}()
	}

	// The good client checks each of its replies while others vanish.
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline) || vanished.Load() < 50; i++ {
		badCheckWorks(t, good, badKey+":good", "value-"+strconv.Itoa(i))
		if i%10 == 0 {
			// A pipeline of its own, replies in order.
			var p []byte
			for j := 0; j < 50; j++ {
				p = upstream.AppendCommand(p, "ECHO", "echo-"+strconv.Itoa(j))
			}
			good.Write(p)
			for j := 0; j < 50; j++ {
				want := "echo-" + strconv.Itoa(j)
				if got := string(good.Read()); got != "$"+strconv.Itoa(len(want))+"\r\n"+want+"\r\n" {
					t.Fatalf("pipelined ECHO %d: %q", j, got)
				}
			}
		}
		if time.Since(deadline) > 10*time.Second {
			t.Fatalf("only %d clients vanished in 12 s", vanished.Load())
		}
	}
	close(stop)
	wg.Wait()
	close(vanishErr)
	for err := range vanishErr {
		t.Fatal(err)
	}
	badWaitFor(t, 10*time.Second, "every vanished client's session to end", func() bool { return a.Server().Clients() == 1 })
	badCheckWorks(t, good, badKey+":good", "end")
	t.Logf("%d clients vanished", vanished.Load())
}

// TestBadInputManyConnections opens 5,000 connections at once, each doing a
// PING and staying open; another client keeps working and the memory each
// connection costs is reported and bounded.
func TestBadInputManyConnections(t *testing.T) {
	n := 5000
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < uint64(2*n+500) {
		// Both ends live in this process.
		n = int(rl.Cur-500) / 2
		t.Logf("file descriptor limit %d: opening %d connections", rl.Cur, n)
	}
	a, _ := badStart(t, nil)
	good := testutil.Dial(t, a.Addr())
	badCheckWorks(t, good, badKey+":good", "start")
	baseHeap, baseStack := badMemSplit()
	base := baseHeap + baseStack

	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	const workers = 250 // bounded: the race detector allows 8128 goroutines
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 7)
			for i := w; i < n; i += workers {
				nc, err := net.DialTimeout("tcp", a.Addr(), 10*time.Second)
				if err == nil {
					nc.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err = nc.Write([]byte("PING\r\n")); err == nil {
						if _, err = io.ReadFull(nc, buf); err == nil && string(buf) != "+PONG\r\n" {
							err = fmt.Errorf("PING answered %q", buf)
						}
					}
					nc.SetDeadline(time.Time{})
					conns[i] = nc
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	opened := time.Since(start)
	t.Cleanup(func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	})
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d connections failed; first: %v", f, n, firstErr.Load())
	}
	if c := a.Server().Clients(); c != n+1 {
		t.Fatalf("proxy counts %d clients, want %d", c, n+1)
	}
	openHeap, openStack := badMemSplit()
	open := openHeap + openStack
	badCheckWorks(t, good, badKey+":good", "with many open")
	// Some of the idle ones still answer.
	for i := 0; i < n; i += n / 10 {
		nc := conns[i]
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 7)
		if _, err := nc.Write([]byte("PING\r\n")); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "+PONG\r\n" {
			t.Fatalf("connection %d: %q, %v", i, buf, err)
		}
	}

	var grown uint64
	if open > base {
		grown = open - base
	}
	t.Logf("%d connections opened in %v; heap+stack in use: before %s, with all open %s: %.1f KB per connection "+
		"(heap %.1f KB, goroutine stacks %.1f KB; both ends, in one process)",
		n, opened.Round(time.Millisecond), badMB(base), badMB(open), float64(grown)/float64(n)/1024,
		(float64(openHeap)-float64(baseHeap))/float64(n)/1024, (float64(openStack)-float64(baseStack))/float64(n)/1024)
	if grown > 200<<20 {
		t.Fatalf("%d idle connections cost %s", n, badMB(grown))
	}

	for i, nc := range conns {
		nc.Close()
		conns[i] = nil
	}
	badWaitFor(t, 10*time.Second, "all sessions to end", func() bool { return a.Server().Clients() == 1 })
	after := badMem()
	t.Logf("after closing them: %s", badMB(after))
	if after > base && after-base > 50<<20 {
		t.Fatalf("memory still %s above the start after the connections closed", badMB(after-base))
	}
	badCheckWorks(t, good, badKey+":good", "end")
}

// TestBadInputMaxClients checks the client limit: one connection too many
// gets Redis's error and is closed, and a slot freed is usable again.
func TestBadInputMaxClients(t *testing.T) {
	a, _ := badStart(t, func(c *config.Config) { c.Listen.MaxClients = 10 })
	var conns []*testutil.Conn
	for i := 0; i < 10; i++ {
		c := testutil.Dial(t, a.Addr())
		if got := c.DoS("PING"); got != "+PONG\r\n" {
			t.Fatalf("client %d: PING = %q", i, got)
		}
		conns = append(conns, c)
	}
	extra := testutil.Dial(t, a.Addr())
	got, err := extra.ReadTimeout(5 * time.Second)
	if err != nil || string(got) != badMaxClients {
		t.Fatalf("11th client got %q, %v; want %q", got, err, badMaxClients)
	}
	badExpectClosed(t, extra)
	if r := a.Server().Stats.Rejected.Load(); r != 1 {
		t.Fatalf("rejected %d, want 1", r)
	}
	// The ten keep working.
	for i, c := range conns {
		badCheckWorks(t, c, badKey+":max:"+strconv.Itoa(i), "v")
	}
	conns[0].Close()
	badWaitFor(t, 5*time.Second, "a slot to free up", func() bool { return a.Server().Clients() == 9 })
	again := testutil.Dial(t, a.Addr())
	if got := again.DoS("PING"); got != "+PONG\r\n" {
		t.Fatalf("after a slot freed: PING = %q", got)
	}
}

// TestBadInputEndless streams requests that never end: each is cut off
// with its error once past its limit, without the proxy reading on.
func TestBadInputEndless(t *testing.T) {
	const limit = 1 << 20
	a, _ := badStart(t, func(c *config.Config) { c.Listen.MaxRequestBytes = limit })
	good := testutil.Dial(t, a.Addr())
	for _, tc := range []struct {
		name   string
		head   string // sent once
		chunk  string // then repeated
		want   string
		cutoff int // the error must come before this many bytes were sent
	}{
		{"inline line without newline", "", strings.Repeat("a", 1024), badTooBigInline, 64<<10 + 64<<10},
		{"inline words without newline", "SET k ", strings.Repeat("word ", 200), badTooBigInline, 64<<10 + 64<<10},
		{"multibulk count", "*", strings.Repeat("1", 1024), badTooBigMbulk, 64<<10 + 64<<10},
		{"bulk length", "*1\r\n$", strings.Repeat("9", 1024), badTooBigBulkCount, 64 << 10},
		{"arguments without end", "*1048576\r\n$4\r\nSADD\r\n", strings.Repeat("$1\r\na\r\n", 1024), badTooBigRequest, limit + 256<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := testutil.Dial(t, a.Addr())
			nc := bad.NetConn()
			var sent atomic.Int64
			done := make(chan struct{})
			writer := make(chan struct{})
			go func() {
				defer close(writer)
				nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
				n, err := nc.Write([]byte(tc.head))
				sent.Add(int64(n))
				for err == nil {
					select {
					case <-done:
						return
					default:
					}
					n, err = nc.Write([]byte(tc.chunk))
					sent.Add(int64(n))
				}
			}()
			got, err := bad.ReadTimeout(10 * time.Second)
			close(done)
			<-writer
			if err != nil || string(got) != tc.want {
				t.Fatalf("after %d bytes: got %q, %v; want %q", sent.Load(), got, err, tc.want)
			}
			// The writer keeps going until it notices, so this bounds
			// how far the proxy read, not exactly where it stopped.
			if s := sent.Load(); s > int64(tc.cutoff)+int64(8<<20) {
				t.Fatalf("error only after %d bytes were sent", s)
			}
			badExpectClosed(t, bad)
			t.Logf("cut off with %q; the client had sent %d bytes", strings.TrimSpace(string(got)), sent.Load())
		})
	}
	badCheckWorks(t, good, badKey+":good", "still here")
}

// TestBadInputLongStatusLine has a Lua script make Redis send a status and
// an error line far longer than any buffer. They are valid RESP and must
// reach the client byte for byte without breaking the shared upstream
// connection other clients use.
func TestBadInputLongStatusLine(t *testing.T) {
	a, r := badStart(t, nil)
	direct := testutil.Dial(t, r.Addr)
	c := testutil.Dial(t, a.Addr())
	other := testutil.Dial(t, a.Addr())
	badCheckWorks(t, other, badKey+":other", "start")
	errsBefore := a.Server().Stats.UpstreamErrors.Load()
	for _, script := range []string{
		"return redis.status_reply(string.rep('x', 200000))",
		"return redis.error_reply('ERR ' .. string.rep('y', 200000))",
		"return {redis.status_reply(string.rep('z', 100000)), 1}",
	} {
		want := direct.Do("EVAL", script, "0")
		if len(want) < 100000 {
			t.Fatalf("redis-server replied %.60q", want)
		}
		// Pipelined behind and ahead of other commands on the same client.
		c.Write(append(append(upstream.AppendCommand(nil, "ECHO", "before"),
			upstream.AppendCommand(nil, "EVAL", script, "0")...),
			upstream.AppendCommand(nil, "ECHO", "after")...))
		if got := string(c.Read()); got != "$6\r\nbefore\r\n" {
			t.Fatalf("before: %q", got)
		}
		if got := c.Read(); !bytes.Equal(got, want) {
			t.Fatalf("%s: proxy replied %.60q (%d bytes), redis-server %.60q (%d bytes)", script, got, len(got), want, len(want))
		}
		if got := string(c.Read()); got != "$5\r\nafter\r\n" {
			t.Fatalf("after: %q", got)
		}
		badCheckWorks(t, other, badKey+":other", script)
	}
	if n := a.Server().Stats.UpstreamErrors.Load(); n != errsBefore {
		t.Fatalf("%d upstream errors: the long line broke the upstream connection", n-errsBefore)
	}
}
