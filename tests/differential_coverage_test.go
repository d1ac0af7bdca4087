package tests

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// dtCommandNames returns the distinct command names (first arguments,
// upper-cased) of the scripts, and the distinct "COMMAND SUBCOMMAND" pairs
// of container commands.
func dtCommandNames(scripts []dtScript) (names, subs []string) {
	containers := map[string]bool{"OBJECT": true, "SCRIPT": true, "FUNCTION": true, "XGROUP": true,
		"XINFO": true, "PUBSUB": true, "CLIENT": true, "COMMAND": true, "MEMORY": true, "LATENCY": true}
	seen, seenSub := map[string]bool{}, map[string]bool{}
	for _, s := range scripts {
		for _, c := range s.cmds {
			n := strings.ToUpper(c[0])
			seen[n] = true
			if containers[n] && len(c) > 1 {
				seenSub[n+" "+strings.ToUpper(c[1])] = true
			}
		}
	}
	for n := range seen {
		names = append(names, n)
	}
	for n := range seenSub {
		subs = append(subs, n)
	}
	sort.Strings(names)
	sort.Strings(subs)
	return names, subs
}

// dtNormalize makes replies that legitimately differ comparable: HELLO
// carries the connection id.
func dtNormalize(cmd []string, b []byte) []byte {
	if strings.EqualFold(cmd[0], "hello") {
		return testutil.Normalize(b, "id", "version")
	}
	return b
}

// dtRun runs a script on c, one command at a time or as one write.
func dtRun(t *testing.T, c *testutil.Conn, s dtScript, pipelined bool) [][]byte {
	t.Helper()
	replies := make([][]byte, 0, len(s.cmds))
	if pipelined {
		var req []byte
		for _, cmd := range s.cmds {
			req = upstream.AppendCommand(req, cmd...)
		}
		c.Write(req)
		for range s.cmds {
			replies = append(replies, c.Read())
		}
		return replies
	}
	for _, cmd := range s.cmds {
		replies = append(replies, c.Do(cmd...))
	}
	return replies
}

// dtCompare fails on the first reply that differs.
func dtCompare(t *testing.T, s dtScript, direct, proxied [][]byte) {
	t.Helper()
	for i, cmd := range s.cmds {
		d, p := dtNormalize(cmd, direct[i]), dtNormalize(cmd, proxied[i])
		if !bytes.Equal(d, p) {
			t.Fatalf("script %q command %d %s: replies differ\n direct: %s\n  proxy: %s",
				s.name, i, dtShow(cmd), dtQuote(d), dtQuote(p))
		}
	}
}

// dtShow abbreviates a command for failure messages.
func dtShow(cmd []string) string {
	var b strings.Builder
	for i, a := range cmd {
		if i > 0 {
			b.WriteByte(' ')
		}
		if len(a) > 80 {
			a = a[:80] + "..."
		}
		b.WriteString(strconv.Quote(a))
	}
	return b.String()
}

// dtQuote quotes a reply, abbreviated when huge.
func dtQuote(b []byte) string {
	if len(b) > 600 {
		return fmt.Sprintf("%q... (%d bytes)", b[:600], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func TestDifferentialCommandCoverage(t *testing.T) {
	names, subs := dtCommandNames(dtScripts())
	const want = 150
	if len(names) < want {
		t.Fatalf("differential scripts use %d distinct commands, want at least %d: %v", len(names), want, names)
	}
	t.Logf("differential scripts use %d distinct commands (%d container subcommands)", len(names), len(subs))
}

func TestDifferentialScripts(t *testing.T) {
	r, a := dtStart(t)
	admin := testutil.Dial(t, r.Addr)
	scripts := dtScripts()
	for _, proto := range []int{2, 3} {
		for _, mode := range []string{"sequential", "pipelined"} {
			pipelined := mode == "pipelined"
			for _, s := range scripts {
				t.Run(fmt.Sprintf("resp%d/%s/%s", proto, mode, s.name), func(t *testing.T) {
					dc := testutil.Dial(t, r.Addr)
					pc := testutil.Dial(t, a.Addr())
					if proto == 3 {
						dh, ph := dtHello3(t, dc), dtHello3(t, pc)
						if d, p := testutil.Normalize(dh, "id", "version"), testutil.Normalize(ph, "id", "version"); !bytes.Equal(d, p) {
							t.Fatalf("HELLO 3 differs\n direct: %q\n  proxy: %q", d, p)
						}
					}
					dtReset(t, admin)
					direct := dtRun(t, dc, s, pipelined)
					dtReset(t, admin)
					proxied := dtRun(t, pc, s, pipelined)
					dtCompare(t, s, direct, proxied)
				})
			}
		}
	}
}

// TestDifferentialDeterministic guards the corpus itself: run twice
// directly, every reply is the same, so a difference through the proxy is
// the proxy's.
func TestDifferentialDeterministic(t *testing.T) {
	r := testutil.StartRedis(t)
	admin := testutil.Dial(t, r.Addr)
	for _, proto := range []int{2, 3} {
		for _, s := range dtScripts() {
			dtReset(t, admin)
			first := dtRun(t, dtDial(t, r.Addr, proto), s, false)
			dtReset(t, admin)
			second := dtRun(t, dtDial(t, r.Addr, proto), s, false)
			for i, cmd := range s.cmds {
				if d, p := dtNormalize(cmd, first[i]), dtNormalize(cmd, second[i]); !bytes.Equal(d, p) {
					t.Fatalf("resp%d script %q command %d %s is not deterministic:\n first: %s\nsecond: %s",
						proto, s.name, i, dtShow(cmd), dtQuote(d), dtQuote(p))
				}
			}
		}
	}
}

// dtStep is one step of a multi-client scenario: client who writes lines
// (as one write), then read frames are read from it (-1: one per line), and
// when blocked > 0 the step waits until Redis reports that many clients
// blocked in a command.
type dtStep struct {
	who     int
	lines   []string
	read    int
	blocked int
}

// dtSend writes lines as one write and reads one reply per line.
func dtSend(who int, lines ...string) dtStep { return dtStep{who: who, lines: lines, read: -1} }

// dtBlock writes lines and reads nothing yet: the client blocks. The step
// ends when Redis has blocked clients blocked in commands.
func dtBlock(who, blocked int, lines ...string) dtStep {
	return dtStep{who: who, lines: lines, blocked: blocked}
}

// dtExpect reads n frames that client who did not ask for (pub/sub
// messages) or that answer an earlier write (a blocked command).
func dtExpect(who, n int) dtStep { return dtStep{who: who, read: n} }

// dtFrame is one frame a scenario received.
type dtFrame struct {
	step, who int
	cmd       string
	frame     []byte
}

// dtRunSteps runs steps with clients connected to addr speaking proto;
// redisAddr is the real server, asked how many clients are blocked.
func dtRunSteps(t *testing.T, addr, redisAddr string, proto, clients int, steps []dtStep) []dtFrame {
	t.Helper()
	cs := make([]*testutil.Conn, clients)
	for i := range cs {
		cs[i] = dtDial(t, addr, proto)
	}
	var admin *testutil.Conn
	var out []dtFrame
	for i, st := range steps {
		c := cs[st.who]
		var req []byte
		for _, l := range st.lines {
			req = upstream.AppendCommand(req, dtArgs(l)...)
		}
		if len(req) > 0 {
			c.Write(req)
		}
		n := st.read
		if n < 0 {
			n = len(st.lines)
		}
		for k := 0; k < n; k++ {
			what := "(unsolicited)"
			if st.read < 0 {
				what = st.lines[k]
			}
			b, err := c.ReadTimeout(10 * time.Second)
			if err != nil {
				t.Fatalf("%s step %d client %d %s: %v", addr, i, st.who, what, err)
			}
			out = append(out, dtFrame{step: i, who: st.who, cmd: what, frame: b})
		}
		if st.blocked > 0 {
			if admin == nil {
				admin = testutil.Dial(t, redisAddr)
			}
			dtAwaitBlocked(t, admin, st.blocked)
		}
	}
	return out
}

// dtCompareSteps runs steps against Redis directly and through the proxy,
// on an emptied server each time, and compares every frame byte for byte.
// It returns the proxy's frames.
func dtCompareSteps(t *testing.T, r *testutil.Redis, a *app.App, proto, clients int, steps []dtStep) []dtFrame {
	t.Helper()
	admin := testutil.Dial(t, r.Addr)
	dtReset(t, admin)
	direct := dtRunSteps(t, r.Addr, r.Addr, proto, clients, steps)
	dtReset(t, admin)
	proxied := dtRunSteps(t, a.Addr(), r.Addr, proto, clients, steps)
	if len(direct) != len(proxied) {
		t.Fatalf("resp%d: %d frames directly, %d through the proxy", proto, len(direct), len(proxied))
	}
	for i := range direct {
		d, p := direct[i], proxied[i]
		if dn, pn := dtNormalize(dtArgs(d.cmd), d.frame), dtNormalize(dtArgs(p.cmd), p.frame); !bytes.Equal(dn, pn) {
			t.Fatalf("resp%d step %d client %d %s: frames differ\n direct: %s\n  proxy: %s",
				proto, d.step, d.who, d.cmd, dtQuote(dn), dtQuote(pn))
		}
	}
	return proxied
}
