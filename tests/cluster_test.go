package tests

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"slices"
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

// Redis Cluster upstreams (SPEC §9): a 3-master cluster with a replica per
// master on loopback. A workspace is one hash slot (its name is the keys'
// hash tag), so every command and domain script of a workspace runs on one
// master; the proxy routes by slot, follows MOVED and ASK, and reads the
// slot map again when it changes.

// clusterWorkspaces are 36 workspaces, spread over the masters by slot.
func clusterWorkspaces() []string {
	var ws []string
	for i := 0; i < 36; i++ {
		ws = append(ws, fmt.Sprintf("team%02d", i))
	}
	return ws
}

func clusterStart(t *testing.T) (*testutil.Cluster, *app.App) {
	t.Helper()
	cl := testutil.StartCluster(t, 3, 1)
	cfg := faultConfig(t, cl.URL())
	a := testutil.StartProxy(t, cfg)
	return cl, a
}

// clusterReset empties every master: keys, scripts, functions.
func clusterReset(t *testing.T, cl *testutil.Cluster) {
	t.Helper()
	for _, m := range cl.Masters(t) {
		dtReset(t, testutil.Dial(t, m.Addr))
	}
}

// clusterDial connects to the proxy in workspace ws (keyless commands such
// as KEYS, SCAN and DBSIZE then go to the workspace's master).
func clusterDial(t *testing.T, a *app.App, ws string, proto int) *testutil.Conn {
	t.Helper()
	c := dtDial(t, a.Addr(), proto)
	if got := c.DoS("WORKSPACE", ws); got != "+OK\r\n" {
		t.Fatalf("WORKSPACE %s: %q", ws, got)
	}
	return c
}

// inWorkspace rewrites a script's keys and channels from the default
// workspace into ws.
func inWorkspace(s dtScript, ws string) dtScript {
	out := dtScript{name: s.name}
	for _, cmd := range s.cmds {
		n := make([]string, len(cmd))
		for i, a := range cmd {
			n[i] = strings.ReplaceAll(a, "{default}", "{"+ws+"}")
		}
		out.cmds = append(out.cmds, n)
	}
	return out
}

// clusterDiffers are the commands whose replies a cluster gives its own
// way: databases other than 0 do not exist, WAIT sees the replicas, and
// what describes the server describes one node.
var clusterDiffers = map[string]bool{
	"select": true, "move": true, "swapdb": true, "wait": true, "info": true, "copy": true,
	"client": true, "config": true, "debug": true, "memory": true, "object": true, "hello": true,
	"role": true, "lastsave": true, "command": true, "latency": true, "slowlog": true, "acl": true,
	"function": true, "fcall": true, "fcall_ro": true, "script": true, "eval": true, "evalsha": true, "eval_ro": true, "evalsha_ro": true,
	"publish": true, "pubsub": true, "spublish": true, "flushdb": true, "flushall": true, "dbsize": true, "time": true,
}

// clusterUnordered are the commands whose replies list a hash table's
// elements in its own order.
var clusterUnordered = map[string]bool{
	"keys": true, "scan": true, "sunion": true, "smembers": true, "sinter": true, "sdiff": true, "hkeys": true,
	"hvals": true, "hgetall": true, "sscan": true, "hscan": true, "srandmember": true, "spop": true, "hrandfield": true,
}

// sortedLines is b's lines in order, for comparing unordered replies.
func sortedLines(b []byte) []byte {
	lines := bytes.Split(b, []byte("\r\n"))
	slices.SortFunc(lines, bytes.Compare)
	return bytes.Join(lines, []byte("\n"))
}

// TestClusterDifferentialScripts runs the differential corpus through the
// proxy on a cluster, each script in its own workspace (36 workspaces over
// 3 masters), against a standalone redis-server: every reply is the same
// except those of clusterDiffers, which are counted.
func TestClusterDifferentialScripts(t *testing.T) {
	cl, a := clusterStart(t)
	r := testutil.StartRedis(t)
	admin := testutil.Dial(t, r.Addr)
	wss := clusterWorkspaces()
	perMaster := map[string]int{}
	for _, ws := range wss {
		perMaster[cl.SlotOwner(t, upstream.TagSlot(ws)).Addr]++
	}
	t.Logf("workspaces per master: %v", perMaster)
	if len(perMaster) != 3 {
		t.Fatalf("workspaces on %d masters, want 3", len(perMaster))
	}
	same, differ, scripts := 0, map[string]int{}, 0
	used := map[string]bool{}
	scriptsAll := dtScripts()
	for k, s0 := range scriptsAll {
		for _, proto := range []int{2, 3} {
			// Each script runs in two workspaces (RESP2 in one, RESP3 in
			// another), so every workspace gets some.
			ws := wss[(k+(proto-2)*len(scriptsAll))%len(wss)]
			used[ws] = true
			s := inWorkspace(s0, ws)
			pipelined := proto == 3
			dtReset(t, admin)
			direct := dtRun(t, dtDial(t, r.Addr, proto), s, pipelined)
			clusterReset(t, cl)
			proxied := dtRun(t, clusterDial(t, a, ws, proto), s, pipelined)
			scripts++
			after := "" // a command that differed as a cluster's do: what follows may too
			for i, cmd := range s.cmds {
				d, p := dtNormalize(cmd, direct[i]), dtNormalize(cmd, proxied[i])
				name := strings.ToLower(cmd[0])
				if clusterUnordered[name] {
					// Two servers order a hash table differently (each
					// seeds its hash function at random).
					d, p = sortedLines(d), sortedLines(p)
				}
				if bytes.Equal(d, p) {
					same++
					continue
				}
				if clusterDiffers[name] {
					differ[name]++
					after = name
					continue
				}
				if after != "" {
					differ["after "+after]++
					continue
				}
				t.Errorf("resp%d script %q (workspace %s) command %d %s: replies differ\n direct: %s\n  proxy: %s",
					proto, s.name, ws, i, dtShow(cmd), dtQuote(d), dtQuote(p))
			}
		}
	}
	t.Logf("%d script runs in %d workspaces: %d replies identical; replies that differ as a cluster's do: %v", scripts, len(used), same, differ)
	if len(used) < 30 {
		t.Errorf("the scripts ran in %d workspaces, want 30 or more", len(used))
	}
}

// clusterDomainScript is every domain command family in one workspace.
var clusterDomainScript = [][]string{
	{"TODO.REPLACE", `[{"content":"plan","status":"pending"},{"content":"build","status":"in_progress"}]`},
	{"TODO.ADD", "test", "STATUS", "pending"},
	{"TODO.LIST"},
	{"FILE.WRITE", "/src/a.txt", "hello\nworld\n"},
	{"FILE.APPEND", "/src/a.txt", "more\n"},
	{"FILE.READ", "/src/a.txt"},
	{"FILE.GET", "/src/a.txt"},
	{"FILE.GETRANGE", "/src/a.txt", "0", "4"},
	{"FILE.STAT", "/src/a.txt"},
	{"FILE.LS", "/src"},
	{"FILE.GLOB", "*.txt"},
	{"FILE.GREP", "world"},
	{"FILE.EDIT", "/src/a.txt", "world", "there"},
	{"FILE.GET", "/src/a.txt"},
	{"FILE.BEGIN", "/big.bin"},
	{"FILE.DEL", "/src/a.txt"},
	{"FILE.LS", "/"},
	{"LOCK.ACQUIRE", "res", "30000", "OWNER", "me"},
	{"LOCK.INFO", "res"},
	{"CACHE.SET", "search", "h1", "result"},
	{"CACHE.GET", "search", "h1"},
	{"CACHE.GET", "search", "h2"},
	{"EVENTS.READ", "COUNT", "100"},
	{"WS.INFO"},
}

// clusterMask hides what differs from one run to the next (timestamps,
// ids, remaining TTLs, upload ids): every run of digits, every 24-digit
// hex id.
var clusterMask = regexp.MustCompile(`[0-9a-f]{24}|[0-9]+`)

// TestClusterDomainCommands runs every domain command family in 36
// workspaces through the proxy on a cluster and on a standalone Redis:
// the replies are the same, up to numbers.
func TestClusterDomainCommands(t *testing.T) {
	_, a := clusterStart(t)
	r := testutil.StartRedis(t)
	single := testutil.StartProxy(t, faultConfig(t, r.URL()))
	for _, ws := range clusterWorkspaces() {
		for _, proto := range []int{2, 3} {
			cc, sc := clusterDial(t, a, ws, proto), clusterDial(t, single, ws, proto)
			for i, cmd := range clusterDomainScript {
				got, want := cc.Do(cmd...), sc.Do(cmd...)
				if len(got) > 0 && got[0] == '-' {
					t.Logf("%s resp%d %s: %q", ws, proto, dtShow(cmd), got)
				}
				if !bytes.Equal(clusterMask.ReplaceAll(got, nil), clusterMask.ReplaceAll(want, nil)) {
					t.Errorf("%s resp%d command %d %s:\n cluster: %q\n  single: %q", ws, proto, i, dtShow(cmd), got, want)
				}
			}
			// The lock's token, to release it and run the script again.
			for _, c := range []*testutil.Conn{cc, sc} {
				info := string(c.Do("LOCK.INFO", "res"))
				tok := clusterToken(info)
				if got := c.DoS("LOCK.RELEASE", "res", tok); got != ":1\r\n" {
					t.Errorf("%s LOCK.RELEASE res %s: %q (info %q)", ws, tok, got, info)
				}
			}
		}
	}
}

// clusterToken finds the token in a LOCK.INFO reply.
func clusterToken(info string) string {
	i := strings.Index(info, "token")
	if i < 0 {
		return "0"
	}
	m := regexp.MustCompile(`[:$][0-9]+\r\n([0-9]+)?`).FindStringSubmatch(info[i+len("token")+2:])
	if m == nil {
		return "0"
	}
	if m[1] != "" {
		return m[1]
	}
	return strings.TrimPrefix(strings.TrimSuffix(m[0], "\r\n"), ":")
}

// clusterLoad writes through the proxy in every workspace and records each
// acknowledged write; every reply must be a real one.
type clusterLoad struct {
	mu     sync.Mutex
	acked  map[string]string
	errs   map[string]int
	ok     atomic.Int64
	stop   atomic.Bool
	wg     sync.WaitGroup
	domain atomic.Int64
}

func startClusterLoad(t *testing.T, a *app.App, workers int) *clusterLoad {
	l := &clusterLoad{acked: map[string]string{}, errs: map[string]int{}}
	wss := clusterWorkspaces()
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func(w int) {
			defer l.wg.Done()
			c := testutil.Dial(t, a.Addr())
			for i := 0; !l.stop.Load(); i++ {
				ws := wss[(w+i)%len(wss)]
				key := fmt.Sprintf("deepagents:{%s}:kv:load:w%d:%d", ws, w, i)
				val := strconv.Itoa(i)
				var req []byte
				req = upstream.AppendCommand(req, "SET", key, val)
				req = upstream.AppendCommand(req, "GET", key)
				req = upstream.AppendCommand(req, "INCR", "deepagents:{"+ws+"}:kv:load:count")
				replies, err := faultRoundTrip(c, req, 3)
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				for _, r := range replies {
					if r[0] == '-' {
						l.mu.Lock()
						l.errs[strings.TrimSpace(string(r))]++
						l.mu.Unlock()
					}
				}
				if string(replies[0]) == "+OK\r\n" {
					if want := fmt.Sprintf("$%d\r\n%s\r\n", len(val), val); string(replies[1]) != want {
						l.mu.Lock()
						l.errs[fmt.Sprintf("GET after SET: %q", replies[1])]++
						l.mu.Unlock()
					}
					l.ok.Add(1)
					l.mu.Lock()
					l.acked[key] = val
					l.mu.Unlock()
				}
				if i%10 == 0 {
					// A domain command too: a script on the workspace's slot.
					if got := c.DoS("CACHE.SET", "load", strconv.Itoa(i), val); got[0] == '-' {
						l.mu.Lock()
						l.errs["CACHE.SET: "+strings.TrimSpace(got)]++
						l.mu.Unlock()
					} else {
						l.domain.Add(1)
					}
				}
			}
		}(w)
	}
	return l
}

// finish stops the load and checks every acknowledged write through a
// fresh connection (the proxy routes each read to the key's owner now).
func (l *clusterLoad) finish(t *testing.T, a *app.App, what string) {
	t.Helper()
	l.stop.Store(true)
	l.wg.Wait()
	c := testutil.Dial(t, a.Addr())
	lost := 0
	for k, v := range l.acked {
		if got := c.DoS("GET", k); got != fmt.Sprintf("$%d\r\n%s\r\n", len(v), v) {
			lost++
			if lost <= 5 {
				t.Errorf("%s: acknowledged %s=%s, now %q", what, k, v, got)
			}
		}
	}
	t.Logf("%s: %d writes acknowledged, %d domain commands, %d lost; error replies: %v", what, len(l.acked), l.domain.Load(), lost, l.errs)
	if len(l.errs) > 0 {
		t.Errorf("%s: clients saw error replies: %v", what, l.errs)
	}
}

// TestClusterReshardUnderLoad moves slots with redis-cli --cluster reshard
// and moves the slots of single workspaces key by key (ASK on the way)
// while clients write in every workspace: no client sees an error and no
// acknowledged write is lost.
func TestClusterReshardUnderLoad(t *testing.T) {
	cl, a := clusterStart(t)
	l := startClusterLoad(t, a, 8)
	time.Sleep(300 * time.Millisecond)
	masters := cl.Masters(t)
	start := time.Now()
	okBefore := l.ok.Load()
	for i, ws := range clusterWorkspaces()[:6] {
		slot := upstream.TagSlot(ws)
		owner := cl.SlotOwner(t, slot)
		to := masters[(i+1)%len(masters)]
		if to == owner {
			to = masters[(i+2)%len(masters)]
		}
		cl.MoveSlot(t, slot, to)
	}
	moved := time.Since(start)
	cl.Reshard(t, masters[0], masters[1], 500)
	cl.Reshard(t, masters[1], masters[2], 500)
	resharded := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	rate := float64(l.ok.Load()-okBefore) / time.Since(start).Seconds()
	t.Logf("6 workspace slots moved in %v, 1000 slots resharded by redis-cli by %v; %.0f acknowledged writes/s meanwhile",
		moved.Round(time.Millisecond), resharded.Round(time.Millisecond), rate)
	l.finish(t, a, "reshard")
}

// TestClusterMasterFailover fails a master over to its replica (CLUSTER
// FAILOVER, as for maintenance) under load: the proxy follows the new
// master and no acknowledged write is lost.
func TestClusterMasterFailover(t *testing.T) {
	cl, a := clusterStart(t)
	l := startClusterLoad(t, a, 8)
	time.Sleep(300 * time.Millisecond)
	var replica *testutil.Redis
	masters := map[*testutil.Redis]bool{}
	for _, m := range cl.Masters(t) {
		masters[m] = true
	}
	for _, n := range cl.Nodes {
		if !masters[n] {
			replica = n
			break
		}
	}
	start := time.Now()
	okBefore := l.ok.Load()
	cl.Failover(t, replica)
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	rate := float64(l.ok.Load()-okBefore) / time.Since(start).Seconds()
	t.Logf("failover to %s took %v; %.0f acknowledged writes/s meanwhile", replica.Addr, took.Round(time.Millisecond), rate)
	l.finish(t, a, "failover")
}

// TestClusterForgedRedirect: a script's error reply can say anything,
// MOVED and ASK included. The proxy follows redirects only to nodes the
// cluster lists: a forged one reaches the client as the script's error,
// and the address it names is never dialled.
func TestClusterForgedRedirect(t *testing.T) {
	_, a := clusterStart(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dialled atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			c.Close()
		}
	}()
	c := clusterDial(t, a, "team01", 2)
	key := "deepagents:{team01}:kv:x"
	for _, kind := range []string{"MOVED", "ASK"} {
		msg := fmt.Sprintf("%s %d %s", kind, upstream.KeySlot([]byte(key)), ln.Addr())
		got := c.DoS("EVAL", "return redis.error_reply(ARGV[1])", "1", key, msg)
		if got != "-"+msg+"\r\n" {
			t.Errorf("forged %s: %q, want the script's error", kind, got)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := dialled.Load(); n > 0 {
		t.Errorf("the proxy dialled the address a forged redirect named (%d connections)", n)
	}
	if got := c.DoS("SET", key, "1"); got != "+OK\r\n" {
		t.Errorf("SET after the forged redirects: %q", got)
	}
}
