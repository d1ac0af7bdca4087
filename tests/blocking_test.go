package tests

// Blocking-command tests (SPEC §3: a blocked client never stalls another
// client). Blocking commands run on a dedicated upstream connection for
// their duration; their replies, wake-ups and timeouts must be those of
// Redis, and a client that leaves while blocked must not take an element
// with it.

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// bkMaxGetLatency is the acceptance bound for a GET while another client
// is blocked.
const bkMaxGetLatency = 50 * time.Millisecond

// TestBlockingDoesNotDelayOthers is the acceptance line: while clients
// wait in BLPOP k 2, another client's GET returns in under 50 ms.
func TestBlockingDoesNotDelayOthers(t *testing.T) {
	r, a := dtStart(t)
	direct := testutil.Dial(t, r.Addr)
	for _, proto := range []int{2, 3} {
		t.Run("resp"+strconv.Itoa(proto), func(t *testing.T) {
			list := dtKV + "bk:list"
			key := dtKV + "bk:key"
			if got := direct.DoS("SET", key, "v"); got != "+OK\r\n" {
				t.Fatalf("SET: %q", got)
			}
			getter := dtDial(t, a.Addr(), proto)
			if got := getter.DoS("GET", key); got != "$1\r\nv\r\n" { // warm up
				t.Fatalf("GET: %q", got)
			}
			// Several blocked clients, so a shared connection stuck
			// behind any of them would show.
			blocked := make([]*testutil.Conn, 4)
			for i := range blocked {
				blocked[i] = dtDial(t, a.Addr(), proto)
				blocked[i].Send("BLPOP", list, "2")
			}
			dtAwaitBlocked(t, direct, len(blocked))
			var worst time.Duration
			for i := 0; i < 20; i++ {
				start := time.Now()
				got := getter.DoS("GET", key)
				d := time.Since(start)
				if got != "$1\r\nv\r\n" {
					t.Fatalf("GET while others are blocked: %q", got)
				}
				worst = max(worst, d)
			}
			if n := dtInfoInt(t, direct, "clients", "blocked_clients"); n != len(blocked) {
				t.Fatalf("only %d of %d clients were still blocked during the GETs", n, len(blocked))
			}
			if worst >= bkMaxGetLatency {
				t.Fatalf("a GET took %v while %d clients were blocked in BLPOP, want < %v", worst, len(blocked), bkMaxGetLatency)
			}
			t.Logf("slowest GET while %d clients were blocked: %v", len(blocked), worst)
			// Serve the blocked clients instead of waiting out their
			// timeout; each gets one element.
			args := []string{"RPUSH", list}
			for i := range blocked {
				args = append(args, "e"+strconv.Itoa(i))
			}
			direct.Do(args...)
			var got []string
			for _, c := range blocked {
				got = append(got, string(c.Read()))
			}
			sort.Strings(got)
			for i, g := range got {
				want := fmt.Sprintf("*2\r\n$%d\r\n%s\r\n$2\r\ne%d\r\n", len(list), list, i)
				if g != want {
					t.Fatalf("blocked client replies %q, want one each of e0..e%d", got, len(blocked)-1)
				}
			}
		})
	}
}

// TestBlockingMatchesRedis runs multi-client blocking scenarios directly
// and through the proxy and compares every frame.
func TestBlockingMatchesRedis(t *testing.T) {
	r, a := dtStart(t)
	write := func(who int, lines ...string) dtStep { return dtStep{who: who, lines: lines} }
	scenarios := []struct {
		name    string
		clients int
		steps   []dtStep
	}{
		{"blpop-served-by-lpush", 2, []dtStep{
			dtBlock(0, 1, "BLPOP @l 0"),
			dtSend(1, "LPUSH @l v"),
			dtExpect(0, 1),
			dtSend(0, "LLEN @l"),
		}},
		{"brpop-second-key", 2, []dtStep{
			dtBlock(0, 1, "BRPOP @a @b 5"),
			dtSend(1, "RPUSH @b x y"),
			dtExpect(0, 1),
			dtSend(0, "LRANGE @b 0 -1"),
		}},
		{"brpoplpush", 2, []dtStep{
			dtBlock(0, 1, "BRPOPLPUSH @src @dst 0"),
			dtSend(1, "LPUSH @src x"),
			dtExpect(0, 1),
			dtSend(0, "LRANGE @dst 0 -1", "EXISTS @src"),
		}},
		{"blmove", 2, []dtStep{
			dtBlock(0, 1, "BLMOVE @src @dst RIGHT LEFT 0"),
			dtSend(1, "RPUSH @src x y"),
			dtExpect(0, 1),
			dtSend(0, "LRANGE @src 0 -1", "LRANGE @dst 0 -1"),
		}},
		{"blmpop", 2, []dtStep{
			dtBlock(0, 1, "BLMPOP 0 2 @a @b LEFT COUNT 2"),
			dtSend(1, "RPUSH @b 1 2 3"),
			dtExpect(0, 1),
			dtSend(0, "LRANGE @b 0 -1"),
		}},
		{"bzpopmin", 2, []dtStep{
			dtBlock(0, 1, "BZPOPMIN @z 0"),
			dtSend(1, "ZADD @z 2 b 1 a"),
			dtExpect(0, 1),
			dtSend(0, "ZRANGE @z 0 -1 WITHSCORES"),
		}},
		{"bzpopmax", 2, []dtStep{
			dtBlock(0, 1, "BZPOPMAX @z1 @z 0"),
			dtSend(1, "ZADD @z 2.5 b 1 a"),
			dtExpect(0, 1),
		}},
		{"bzmpop", 2, []dtStep{
			dtBlock(0, 1, "BZMPOP 0 1 @z MIN COUNT 5"),
			dtSend(1, "ZADD @z 2 b 1 a"),
			dtExpect(0, 1),
		}},
		{"xread-block", 2, []dtStep{
			dtBlock(0, 1, "XREAD BLOCK 0 STREAMS @s $"),
			dtSend(1, "XADD @s 1-1 f v"),
			dtExpect(0, 1),
			dtBlock(0, 1, "XREAD BLOCK 0 COUNT 5 STREAMS @s @s2 1-1 0-0"),
			dtSend(1, "XADD @s2 2-1 g w"),
			dtExpect(0, 1),
		}},
		{"xreadgroup-block", 2, []dtStep{
			dtSend(0, "XGROUP CREATE @s g $ MKSTREAM"),
			dtBlock(0, 1, "XREADGROUP GROUP g c BLOCK 0 STREAMS @s >"),
			dtSend(1, "XADD @s 1-1 f v"),
			dtExpect(0, 1),
			dtSend(0, "XPENDING @s g"),
		}},
		{"pipelined-set-blpop-get-with-data", 1, []dtStep{
			dtSend(0, "RPUSH @l a", "SET @k 1", "BLPOP @l 1", "GET @k"),
		}},
		{"pipelined-set-blpop-get-served-later", 2, []dtStep{
			dtBlock(0, 1, "SET @k 1", "BLPOP @l 0", "GET @k"),
			dtSend(1, "RPUSH @l a"),
			dtExpect(0, 3),
		}},
		{"commands-sent-while-blocked", 2, []dtStep{
			dtBlock(0, 1, "BLPOP @l 0"),
			write(0, "SET @k while", "GET @k"),
			dtSend(1, "EXISTS @k", "RPUSH @l a"),
			dtExpect(0, 3),
		}},
		{"fifo-among-blocked-clients", 3, []dtStep{
			dtBlock(0, 1, "BLPOP @l 0"),
			dtBlock(2, 2, "BLPOP @l 0"),
			dtSend(1, "RPUSH @l first second"),
			dtExpect(0, 1),
			dtExpect(2, 1),
		}},
		{"blocking-while-watching", 2, []dtStep{
			dtSend(0, "WATCH @w"),
			dtBlock(0, 1, "BLPOP @l 0"),
			dtSend(1, "RPUSH @l a"),
			dtExpect(0, 1),
			dtSend(0, "MULTI", "INCR @w", "EXEC"),
			dtSend(0, "WATCH @w"),
			dtBlock(0, 1, "BLPOP @l 0"),
			dtSend(1, "SET @w 10", "RPUSH @l b"),
			dtExpect(0, 1),
			dtSend(0, "MULTI", "INCR @w", "EXEC", "GET @w"),
		}},
		{"blocking-inside-multi-does-not-block", 1, []dtStep{
			dtSend(0, "MULTI", "BLPOP @l 0", "BZPOPMIN @z 0", "XREAD BLOCK 0 STREAMS @s 0-0", "EXEC"),
		}},
		{"timeouts", 1, []dtStep{
			dtSend(0, "BLPOP @l 0.05"),
			dtSend(0, "BRPOPLPUSH @l @d 0.05"),
			dtSend(0, "BLMOVE @l @d LEFT LEFT 0.05"),
			dtSend(0, "BZPOPMIN @z 0.05"),
			dtSend(0, "BLMPOP 0.05 1 @l LEFT"),
			dtSend(0, "XREAD BLOCK 50 STREAMS @s 0-0"),
		}},
		{"errors", 1, []dtStep{
			dtSend(0, "BLPOP @l"),
			dtSend(0, "BLPOP @l -1"),
			dtSend(0, "BLPOP @l abc"),
			dtSend(0, "SET @str x", "BLPOP @str 0", "BZPOPMIN @str 0"),
			dtSend(0, "XREAD BLOCK abc STREAMS @s 0-0"),
		}},
	}
	for _, proto := range []int{2, 3} {
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("resp%d/%s", proto, sc.name), func(t *testing.T) {
				dtCompareSteps(t, r, a, proto, sc.clients, sc.steps)
			})
		}
	}
}

// TestBlockingTimeout: a blocking command with a timeout answers nil after
// about that long, in the client's protocol, even when its timeout is much
// longer than the proxy's upstream read timeout.
func TestBlockingTimeout(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := testutil.ProxyConfig(t, r.URL())
	cfg.Upstream.ReadTimeout = config.D(100 * time.Millisecond)
	a := testutil.StartProxy(t, cfg)
	nilArray := map[int]string{2: "*-1\r\n", 3: "_\r\n"}
	nilBulk := map[int]string{2: "$-1\r\n", 3: "_\r\n"}
	cases := []struct {
		args []string
		want map[int]string
		wait time.Duration
	}{
		{[]string{"BLPOP", dtKV + "to:l", "0.1"}, nilArray, 100 * time.Millisecond},
		{[]string{"BLPOP", dtKV + "to:l", "0.5"}, nilArray, 500 * time.Millisecond}, // 5x the read timeout
		{[]string{"BZPOPMIN", dtKV + "to:z", "0.1"}, nilArray, 100 * time.Millisecond},
		// Redis 7.0 answers a timed-out BLMOVE with a null array.
		{[]string{"BLMOVE", dtKV + "to:l", dtKV + "to:d", "LEFT", "RIGHT", "0.1"}, nilArray, 100 * time.Millisecond},
		{[]string{"GET", dtKV + "to:nope"}, nilBulk, 0},
		{[]string{"XREAD", "BLOCK", "100", "STREAMS", dtKV + "to:s", "0-0"}, nilArray, 100 * time.Millisecond},
	}
	for _, proto := range []int{2, 3} {
		c := dtDial(t, a.Addr(), proto)
		for _, tc := range cases {
			start := time.Now()
			got := c.DoS(tc.args...)
			took := time.Since(start)
			if got != tc.want[proto] {
				t.Fatalf("resp%d %v: got %q, want %q", proto, tc.args, got, tc.want[proto])
			}
			// Redis checks timeouts on its event-loop ticks (hz 10), so
			// it may answer up to ~100 ms late; never early.
			if took < tc.wait-20*time.Millisecond || took > tc.wait+time.Second {
				t.Fatalf("resp%d %v answered after %v, want about %v", proto, tc.args, took, tc.wait)
			}
		}
		// BLPOP 0 waits past the read timeout until served.
		pusher := testutil.Dial(t, r.Addr)
		list := dtKV + "to:forever"
		c.Send("BLPOP", list, "0")
		dtAwaitBlocked(t, pusher, 1)
		time.Sleep(3 * 100 * time.Millisecond) // outlast the read timeout on purpose
		pusher.Do("RPUSH", list, "late")
		want := fmt.Sprintf("*2\r\n$%d\r\n%s\r\n$4\r\nlate\r\n", len(list), list)
		if got := string(c.Read()); got != want {
			t.Fatalf("resp%d BLPOP 0 served after the read timeout: got %q, want %q", proto, got, want)
		}
	}
}

// TestBlockingClientDisconnect: a client that leaves while blocked must
// not swallow an element pushed afterwards. The proxy notices the client
// leaving, closes the upstream connection it blocked on, and Redis drops
// the blocked call before the push.
func TestBlockingClientDisconnect(t *testing.T) {
	r, a := dtStart(t)
	direct := testutil.Dial(t, r.Addr)
	cases := []struct {
		name  string
		block []string
		push  []string
		check []string
		want  string
	}{
		{"blpop", []string{"BLPOP", dtKV + "dc:l", "0"},
			[]string{"LPUSH", dtKV + "dc:l", "v"},
			[]string{"LRANGE", dtKV + "dc:l", "0", "-1"}, "*1\r\n$1\r\nv\r\n"},
		{"brpop-two-keys", []string{"BRPOP", dtKV + "dc:a", dtKV + "dc:b", "0"},
			[]string{"RPUSH", dtKV + "dc:b", "v"},
			[]string{"LRANGE", dtKV + "dc:b", "0", "-1"}, "*1\r\n$1\r\nv\r\n"},
		{"blmove", []string{"BLMOVE", dtKV + "dc:src", dtKV + "dc:dst", "LEFT", "RIGHT", "0"},
			[]string{"RPUSH", dtKV + "dc:src", "v"},
			[]string{"LRANGE", dtKV + "dc:src", "0", "-1"}, "*1\r\n$1\r\nv\r\n"},
		{"brpoplpush", []string{"BRPOPLPUSH", dtKV + "dc:src2", dtKV + "dc:dst2", "0"},
			[]string{"RPUSH", dtKV + "dc:src2", "v"},
			[]string{"EXISTS", dtKV + "dc:dst2"}, ":0\r\n"},
		{"bzpopmin", []string{"BZPOPMIN", dtKV + "dc:z", "0"},
			[]string{"ZADD", dtKV + "dc:z", "1", "m"},
			[]string{"ZCARD", dtKV + "dc:z"}, ":1\r\n"},
	}
	for _, proto := range []int{2, 3} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("resp%d/%s", proto, tc.name), func(t *testing.T) {
				dtReset(t, direct)
				dtAwait(t, 5*time.Second, "earlier clients to be gone", func() bool {
					return a.Server().Clients() == 0
				})
				c := dtDial(t, a.Addr(), proto)
				c.Send(tc.block...)
				dtAwaitBlocked(t, direct, 1)
				c.Close()
				// Wait for the proxy to notice: Redis no longer has the
				// blocked call, and the session is gone.
				dtAwaitBlocked(t, direct, 0)
				dtAwait(t, 5*time.Second, "the proxy to drop the client", func() bool {
					return a.Server().Clients() == 0
				})
				pusher := testutil.Dial(t, a.Addr())
				defer pusher.Close()
				pusher.Do(tc.push...)
				if got := pusher.DoS(tc.check...); got != tc.want {
					t.Fatalf("after the blocked client left and %v: %v = %q, want %q (the element went to a client that was gone)",
						tc.push, tc.check, got, tc.want)
				}
			})
		}
	}
}

// TestBlockingManyClients: many clients blocked at once each get a
// dedicated wait and are all served; the proxy keeps answering others.
func TestBlockingManyClients(t *testing.T) {
	r, a := dtStart(t)
	direct := testutil.Dial(t, r.Addr)
	const n = 50
	cs := make([]*testutil.Conn, n)
	for i := range cs {
		cs[i] = dtDial(t, a.Addr(), 2+i%2)
		cs[i].Send("BLPOP", dtKV+"many:"+strconv.Itoa(i), "0")
	}
	dtAwaitBlocked(t, direct, n)
	other := testutil.Dial(t, a.Addr())
	if got := other.DoS("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING while %d clients are blocked: %q", n, got)
	}
	if got := other.DoS("SET", dtKV+"many:x", "1"); got != "+OK\r\n" {
		t.Fatalf("SET while %d clients are blocked: %q", n, got)
	}
	for i := n - 1; i >= 0; i-- {
		other.Do("RPUSH", dtKV+"many:"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	for i, c := range cs {
		key := dtKV + "many:" + strconv.Itoa(i)
		v := "v" + strconv.Itoa(i)
		want := fmt.Sprintf("*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(v), v)
		if got := string(c.Read()); got != want {
			t.Fatalf("client %d: got %q, want %q", i, got, want)
		}
	}
	if !strings.HasPrefix(other.DoS("DBSIZE"), ":") {
		t.Fatal("DBSIZE after the wake-ups failed")
	}
}
