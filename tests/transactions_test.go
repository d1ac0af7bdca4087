package tests

// Transaction tests (SPEC §3: MULTI/EXEC/DISCARD/WATCH pin the client to a
// dedicated upstream connection while the state lives). Multi-client
// scenarios run against Redis directly and through the proxy and must give
// the same bytes; concurrent clients on the shared connections must neither
// disturb a transaction nor be disturbed by it; optimistic WATCH loops keep
// their guarantee; the pinned gauge returns to zero.

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// txStep is what one client of a scenario does next: one command, or
// several sent as one write (a pipeline).
type txStep struct {
	who   int // client index
	lines []string
}

func txDo(who int, lines ...string) txStep { return txStep{who: who, lines: lines} }

// txReply is one recorded reply.
type txReply struct {
	step, who int
	cmd       string
	reply     []byte
}

// txRunScenario runs steps with clients connected to addr (proto 2 or 3),
// one command or pipeline at a time in step order, and returns all replies.
// after, when not nil, is called after each step (to check proxy state).
func txRunScenario(t *testing.T, addr string, proto, clients int, steps []txStep, after func(step int)) []txReply {
	t.Helper()
	cs := make([]*testutil.Conn, clients)
	for i := range cs {
		cs[i] = dtDial(t, addr, proto)
	}
	var out []txReply
	for i, st := range steps {
		c := cs[st.who]
		var req []byte
		for _, l := range st.lines {
			req = upstream.AppendCommand(req, dtArgs(l)...)
		}
		c.Write(req)
		for _, l := range st.lines {
			out = append(out, txReply{step: i, who: st.who, cmd: l, reply: c.Read()})
		}
		if after != nil {
			after(i)
		}
	}
	return out
}

// txCompare runs steps directly and through the proxy and compares every
// reply byte for byte. It returns the proxy's replies.
func txCompare(t *testing.T, r *testutil.Redis, a *app.App, proto, clients int, steps []txStep, after func(step int)) []txReply {
	t.Helper()
	admin := testutil.Dial(t, r.Addr)
	dtReset(t, admin)
	direct := txRunScenario(t, r.Addr, proto, clients, steps, nil)
	dtReset(t, admin)
	proxied := txRunScenario(t, a.Addr(), proto, clients, steps, after)
	for i := range direct {
		d, p := direct[i], proxied[i]
		if !bytes.Equal(d.reply, p.reply) {
			t.Fatalf("resp%d step %d client %d %q: replies differ\n direct: %q\n  proxy: %q",
				proto, d.step, d.who, d.cmd, d.reply, p.reply)
		}
	}
	return proxied
}

func txNil(proto int) string {
	if proto == 3 {
		return "_\r\n"
	}
	return "*-1\r\n"
}

// txPinned reads the proxy's pinned-sessions gauge.
func txPinned(a *app.App) int64 { return a.Server().Stats.Pinned.Load() }

func TestTransactionsMatchRedis(t *testing.T) {
	r, a := dtStart(t)
	scenarios := []struct {
		name  string
		steps []txStep
		// unpinnedAfter lists steps after which client 0 holds no
		// connection state, so the gauge must be back to 0.
		unpinnedAfter []int
		// pinnedAfter lists steps after which client 0 holds state.
		pinnedAfter []int
	}{
		{
			name: "exec-nil-after-watched-key-changed",
			steps: []txStep{
				txDo(0, "SET @w 1"),
				txDo(0, "WATCH @w"),
				txDo(0, "GET @w"),
				txDo(1, "SET @w changed"),
				txDo(0, "MULTI"),
				txDo(0, "SET @w mine"),
				txDo(0, "EXEC"),
				txDo(0, "GET @w"),
			},
			pinnedAfter:   []int{1, 2, 3, 4, 5},
			unpinnedAfter: []int{0, 6, 7},
		},
		{
			name: "watch-several-keys-one-changed",
			steps: []txStep{
				txDo(0, "WATCH @w1 @w2 @w3"),
				txDo(1, "HSET @w2 f v"),
				txDo(0, "MULTI"),
				txDo(0, "INCR @w1"),
				txDo(0, "EXEC"),
				txDo(0, "EXISTS @w1"),
			},
			pinnedAfter:   []int{0, 1, 2, 3},
			unpinnedAfter: []int{4, 5},
		},
		{
			name: "watch-other-key-changed-exec-runs",
			steps: []txStep{
				txDo(0, "WATCH @w"),
				txDo(1, "SET @other x"),
				txDo(0, "MULTI"),
				txDo(0, "INCR @w"),
				txDo(0, "EXEC"),
			},
			unpinnedAfter: []int{4},
		},
		{
			name: "watch-then-unwatch",
			steps: []txStep{
				txDo(0, "WATCH @w"),
				txDo(0, "UNWATCH"),
				txDo(1, "SET @w 10"),
				txDo(0, "MULTI"),
				txDo(0, "INCR @w"),
				txDo(0, "EXEC"),
			},
			pinnedAfter:   []int{0},
			unpinnedAfter: []int{1, 2, 5},
		},
		{
			name: "discard-unwatches",
			steps: []txStep{
				txDo(0, "WATCH @w"),
				txDo(0, "MULTI"),
				txDo(0, "SET @w a"),
				txDo(0, "DISCARD"),
				txDo(1, "SET @w b"),
				txDo(0, "MULTI"),
				txDo(0, "SET @w c"),
				txDo(0, "EXEC"),
				txDo(0, "GET @w"),
			},
			unpinnedAfter: []int{3, 4, 7, 8},
		},
		{
			// EXEC or DISCARD without MULTI is an error and leaves the
			// WATCH in place: the later transaction must still abort.
			name: "exec-without-multi-keeps-watch",
			steps: []txStep{
				txDo(0, "WATCH @w"),
				txDo(1, "SET @w x"),
				txDo(0, "EXEC"),
				txDo(0, "DISCARD"),
				txDo(0, "MULTI"),
				txDo(0, "SET @w y"),
				txDo(0, "EXEC"),
				txDo(0, "GET @w"),
			},
			pinnedAfter:   []int{0, 1, 2, 3, 4, 5},
			unpinnedAfter: []int{6, 7},
		},
		{
			name: "nested-multi-and-exec-without-multi",
			steps: []txStep{
				txDo(0, "EXEC"),
				txDo(0, "DISCARD"),
				txDo(0, "MULTI"),
				txDo(0, "MULTI"),
				txDo(0, "INCR @n"),
				txDo(0, "EXEC"),
				txDo(0, "EXEC"),
			},
			pinnedAfter:   []int{2, 3, 4},
			unpinnedAfter: []int{0, 1, 5, 6},
		},
		{
			name: "queued-syntax-error-execabort",
			steps: []txStep{
				txDo(0, "MULTI"),
				txDo(0, "SET @q 1"),
				txDo(0, "INCRBY @q"),
				txDo(0, "NOSUCHCOMMAND @q"),
				txDo(0, "EXEC"),
				txDo(0, "EXISTS @q"),
			},
			unpinnedAfter: []int{4, 5},
		},
		{
			// After a queue-time error the transaction is doomed, but
			// Redis still rejects unknown commands and WATCH at once and
			// runs RESET, which leaves MULTI.
			name: "doomed-multi-watch-reset",
			steps: []txStep{
				txDo(0, "MULTI"),
				txDo(0, "GET"),
				txDo(0, "NOSUCHCOMMAND a"),
				txDo(0, "WATCH @q"),
				txDo(0, "SET @q 1"),
				txDo(0, "RESET"),
				txDo(0, "EXEC"),
				txDo(0, "GET @q"),
				txDo(0, "MULTI", "GET", "DISCARD", "EXISTS @q"),
			},
			unpinnedAfter: []int{5, 6, 7, 8},
		},
		{
			name: "runtime-error-inside-exec",
			steps: []txStep{
				txDo(0, "MULTI"),
				txDo(0, "SET @q notanumber"),
				txDo(0, "INCR @q"),
				txDo(0, "LPUSH @q x"),
				txDo(0, "GET @q"),
				txDo(0, "EXEC"),
			},
			unpinnedAfter: []int{5},
		},
		{
			name: "pipelined-multi-exec-one-write",
			steps: []txStep{
				txDo(0, "SET @p 1", "MULTI", "INCR @p", "INCR @p", "GET @p", "EXEC", "GET @p"),
				txDo(0, "WATCH @p", "MULTI", "SET @p x", "EXEC"),
				txDo(0, "MULTI", "SET @p y", "DISCARD", "GET @p"),
				txDo(0, "MULTI", "SET @p", "EXEC", "GET @p"),
				txDo(1, "WATCH @p", "GET @p", "MULTI", "DEL @p", "EXEC", "EXISTS @p"),
			},
			unpinnedAfter: []int{0, 1, 2, 3, 4},
		},
		{
			name: "pipelined-watch-changed-between-writes",
			steps: []txStep{
				txDo(0, "WATCH @p", "GET @p"),
				txDo(1, "SET @p other"),
				txDo(0, "MULTI", "SET @p mine", "EXEC", "GET @p"),
			},
			pinnedAfter:   []int{0, 1},
			unpinnedAfter: []int{2},
		},
		{
			name: "multi-across-writes",
			steps: []txStep{
				txDo(0, "MULTI", "SET @m 1"),
				txDo(1, "SET @m other"),
				txDo(0, "INCR @m", "GET @m"),
				txDo(1, "GET @m"),
				txDo(0, "EXEC"),
				txDo(1, "GET @m"),
			},
			pinnedAfter:   []int{0, 1, 2, 3},
			unpinnedAfter: []int{4, 5},
		},
	}
	for _, proto := range []int{2, 3} {
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("resp%d/%s", proto, sc.name), func(t *testing.T) {
				after := func(step int) {
					for _, s := range sc.pinnedAfter {
						if s == step {
							if got := txPinned(a); got != 1 {
								t.Fatalf("after step %d: pinned gauge %d, want 1", step, got)
							}
						}
					}
					for _, s := range sc.unpinnedAfter {
						if s == step {
							if got := txPinned(a); got != 0 {
								t.Fatalf("after step %d: pinned gauge %d, want 0 (client still pinned)", step, got)
							}
						}
					}
				}
				txCompare(t, r, a, proto, 2, sc.steps, after)
			})
		}
	}
}

// TestTransactionsExecNilBytes pins the exact bytes of an aborted EXEC, so
// the differential comparison above cannot pass with both sides wrong.
func TestTransactionsExecNilBytes(t *testing.T) {
	_, a := dtStart(t)
	for _, proto := range []int{2, 3} {
		c := dtDial(t, a.Addr(), proto)
		other := dtDial(t, a.Addr(), proto)
		k := dtKV + "nilbytes"
		for _, step := range []struct {
			c    *testutil.Conn
			args []string
			want string
		}{
			{c, []string{"WATCH", k}, "+OK\r\n"},
			{other, []string{"SET", k, "x"}, "+OK\r\n"},
			{c, []string{"MULTI"}, "+OK\r\n"},
			{c, []string{"SET", k, "y"}, "+QUEUED\r\n"},
			{c, []string{"EXEC"}, txNil(proto)},
			{c, []string{"GET", k}, "$1\r\nx\r\n"},
		} {
			if got := step.c.DoS(step.args...); got != step.want {
				t.Fatalf("resp%d %v: got %q, want %q", proto, step.args, got, step.want)
			}
		}
		if got := txPinned(a); got != 0 {
			t.Fatalf("resp%d: pinned gauge %d after EXEC, want 0", proto, got)
		}
	}
}

// txLoad runs background clients doing SET/GET/INCR on their own keys
// through the proxy (shared connections), checking every reply.
type txLoad struct {
	stop   atomic.Bool
	wg     sync.WaitGroup
	ops    atomic.Int64
	mu     sync.Mutex
	errors []string
}

func txStartLoad(t *testing.T, addr string, n int) *txLoad {
	t.Helper()
	l := &txLoad{}
	for i := 0; i < n; i++ {
		c := dtDial(t, addr, 2+i%2)
		l.wg.Add(1)
		go func(i int, c *testutil.Conn) {
			defer l.wg.Done()
			key := fmt.Sprintf("%sload:%d", dtKV, i)
			ctr := fmt.Sprintf("%sload:ctr:%d", dtKV, i)
			for seq := int64(1); !l.stop.Load(); seq++ {
				val := fmt.Sprintf("v%d-%d", i, seq)
				var req []byte
				req = upstream.AppendCommand(req, "SET", key, val)
				req = upstream.AppendCommand(req, "GET", key)
				req = upstream.AppendCommand(req, "INCR", ctr)
				c.Write(req)
				want := []string{"+OK\r\n", fmt.Sprintf("$%d\r\n%s\r\n", len(val), val), ":" + strconv.FormatInt(seq, 10) + "\r\n"}
				for k, w := range want {
					got, err := c.ReadTimeout(10 * time.Second)
					if err != nil || string(got) != w {
						l.mu.Lock()
						l.errors = append(l.errors, fmt.Sprintf("load client %d seq %d reply %d: got %q (%v), want %q", i, seq, k, got, err, w))
						l.mu.Unlock()
						return
					}
				}
				l.ops.Add(3)
			}
		}(i, c)
	}
	return l
}

func (l *txLoad) finish(t *testing.T) {
	t.Helper()
	l.stop.Store(true)
	l.wg.Wait()
	if len(l.errors) > 0 {
		t.Fatalf("background clients saw wrong replies:\n%s", strings.Join(l.errors, "\n"))
	}
	if l.ops.Load() == 0 {
		t.Fatalf("background clients did no work")
	}
}

// TestTransactionsWithConcurrentClients runs transactions while 20 other
// clients hammer the shared connections: every transaction reply is exact,
// and so is every reply of the other clients.
func TestTransactionsWithConcurrentClients(t *testing.T) {
	_, a := dtStart(t)
	load := txStartLoad(t, a.Addr(), 20)
	dtAwait(t, 5*time.Second, "background load to start", func() bool { return load.ops.Load() > 100 })

	for _, proto := range []int{2, 3} {
		c := dtDial(t, a.Addr(), proto)
		other := dtDial(t, a.Addr(), proto)
		k := fmt.Sprintf("%stx:%d", dtKV, proto)
		for i := 0; i < 100; i++ {
			v := strconv.Itoa(i)
			check := func(cc *testutil.Conn, want string, args ...string) {
				t.Helper()
				if got := cc.DoS(args...); got != want {
					t.Fatalf("resp%d iteration %d %v: got %q, want %q", proto, i, args, got, want)
				}
			}
			switch i % 4 {
			case 0: // plain transaction
				check(c, "+OK\r\n", "MULTI")
				check(c, "+QUEUED\r\n", "SET", k, v)
				check(c, "+QUEUED\r\n", "INCR", k)
				check(c, "+QUEUED\r\n", "GET", k)
				n := strconv.Itoa(i + 1)
				check(c, fmt.Sprintf("*3\r\n+OK\r\n:%s\r\n$%d\r\n%s\r\n", n, len(n), n), "EXEC")
			case 1: // watched key changed by another proxy client
				check(c, "+OK\r\n", "WATCH", k)
				check(other, "+OK\r\n", "SET", k, v)
				check(c, "+OK\r\n", "MULTI")
				check(c, "+QUEUED\r\n", "SET", k, "lost")
				check(c, txNil(proto), "EXEC")
				check(c, fmt.Sprintf("$%d\r\n%s\r\n", len(v), v), "GET", k)
			case 2: // watched key untouched
				check(c, "+OK\r\n", "WATCH", k)
				check(c, "+OK\r\n", "MULTI")
				check(c, "+QUEUED\r\n", "SET", k, v)
				check(c, "*1\r\n+OK\r\n", "EXEC")
			case 3: // pipelined transaction in one write
				var req []byte
				for _, cmd := range [][]string{{"MULTI"}, {"SET", k, v}, {"GET", k}, {"EXEC"}} {
					req = upstream.AppendCommand(req, cmd...)
				}
				c.Write(req)
				want := []string{"+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", fmt.Sprintf("*2\r\n+OK\r\n$%d\r\n%s\r\n", len(v), v)}
				for _, w := range want {
					if got := string(c.Read()); got != w {
						t.Fatalf("resp%d iteration %d pipelined: got %q, want %q", proto, i, got, w)
					}
				}
			}
			if got := txPinned(a); got != 0 {
				t.Fatalf("resp%d iteration %d: pinned gauge %d after the transaction, want 0", proto, i, got)
			}
		}
	}
	load.finish(t)
}

// TestTransactionsOptimisticIncr: N clients increment one counter with
// WATCH/GET/MULTI/SET/EXEC retry loops through the proxy. Each successful
// EXEC wrote read+1 under its WATCH, so the values written by successful
// transactions are exactly 1..successes, and the final counter equals the
// number of successes.
func TestTransactionsOptimisticIncr(t *testing.T) {
	r, a := dtStart(t)
	const clients, attempts = 8, 40
	counter := dtKV + "optimistic"
	load := txStartLoad(t, a.Addr(), 4)

	var mu sync.Mutex
	var written []int
	var aborted int
	var failures []string
	var wg sync.WaitGroup
	conns := make([]*testutil.Conn, clients)
	for i := range conns {
		conns[i] = dtDial(t, a.Addr(), 2+i%2)
	}
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int, c *testutil.Conn) {
			defer wg.Done()
			proto := 2 + i%2
			fail := func(format string, args ...any) {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("client %d: ", i)+fmt.Sprintf(format, args...))
				mu.Unlock()
			}
			roundTrip := func(args ...string) string {
				c.Send(args...)
				b, err := c.ReadTimeout(10 * time.Second)
				if err != nil {
					fail("%v: %v", args, err)
					return ""
				}
				return string(b)
			}
			for n := 0; n < attempts; n++ {
				if got := roundTrip("WATCH", counter); got != "+OK\r\n" {
					fail("WATCH: %q", got)
					return
				}
				cur := 0
				switch got := roundTrip("GET", counter); {
				case got == txNil(proto) || got == "$-1\r\n":
				case strings.HasPrefix(got, "$"):
					v, err := strconv.Atoi(strings.TrimSpace(got[strings.Index(got, "\n")+1:]))
					if err != nil {
						fail("GET: %q", got)
						return
					}
					cur = v
				default:
					fail("GET: %q", got)
					return
				}
				if got := roundTrip("MULTI"); got != "+OK\r\n" {
					fail("MULTI: %q", got)
					return
				}
				if got := roundTrip("SET", counter, strconv.Itoa(cur+1)); got != "+QUEUED\r\n" {
					fail("SET: %q", got)
					return
				}
				switch got := roundTrip("EXEC"); got {
				case "*1\r\n+OK\r\n":
					mu.Lock()
					written = append(written, cur+1)
					mu.Unlock()
				case txNil(proto):
					mu.Lock()
					aborted++
					mu.Unlock()
				default:
					fail("EXEC: %q", got)
					return
				}
			}
		}(i, conns[i])
	}
	wg.Wait()
	load.finish(t)
	if len(failures) > 0 {
		t.Fatalf("optimistic clients failed:\n%s", strings.Join(failures, "\n"))
	}
	if len(written)+aborted != clients*attempts {
		t.Fatalf("%d successes + %d aborts, want %d attempts", len(written), aborted, clients*attempts)
	}
	seen := make(map[int]bool, len(written))
	for _, v := range written {
		if seen[v] || v < 1 || v > len(written) {
			t.Fatalf("successful transactions wrote %v: a value repeats or is out of 1..%d (lost update)", written, len(written))
		}
		seen[v] = true
	}
	direct := testutil.Dial(t, r.Addr)
	want := strconv.Itoa(len(written))
	if got := direct.DoS("GET", counter); got != fmt.Sprintf("$%d\r\n%s\r\n", len(want), want) {
		t.Fatalf("final counter %q, want %s (the number of successful EXECs)", got, want)
	}
	t.Logf("%d successful EXECs, %d aborted by WATCH", len(written), aborted)
	if got := txPinned(a); got != 0 {
		t.Fatalf("pinned gauge %d after all transactions, want 0", got)
	}
}
