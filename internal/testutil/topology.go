package testutil

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This file starts multi-process Redis topologies for tests: a master and a
// replica watched by three Sentinels, and a Redis Cluster, with helpers to
// fail over, reshard and move single slots while a test runs.

// --- control client ---------------------------------------------------------

// redisError is an error reply ("-ERR ...") from a server.
type redisError string

func (e redisError) Error() string { return string(e) }

// ctl sends one command to addr on a fresh connection and returns the
// decoded RESP2 reply: string, int64, []any or nil. A top-level error reply
// is returned as a redisError error; nested ones (in arrays) as values.
// Topology helpers use it for control commands because, unlike Conn, it
// needs no testing.TB and parses replies.
func ctl(addr string, args ...string) (any, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	b := append([]byte{'*'}, strconv.Itoa(len(args))...)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = append(b, strconv.Itoa(len(a))...)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	if _, err := nc.Write(b); err != nil {
		return nil, err
	}
	v, err := readRESP(bufio.NewReader(nc))
	if err != nil {
		return nil, err
	}
	if e, ok := v.(redisError); ok {
		return nil, e
	}
	return v, nil
}

// readRESP decodes one RESP2 value.
func readRESP(br *bufio.Reader) (any, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("bad RESP line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return redisError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readRESP(br); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported RESP type %q", line)
}

// mustCtl is ctl failing the test on any error.
func mustCtl(t testing.TB, addr string, args ...string) any {
	t.Helper()
	v, err := ctl(addr, args...)
	if err != nil {
		t.Fatalf("%s %v: %v", addr, args, err)
	}
	return v
}

// str is v as a string ("" if it is not one).
func str(v any) string {
	s, _ := v.(string)
	return s
}

// pairs turns a flat [k1 v1 k2 v2 ...] reply into a map.
func pairs(v any) map[string]string {
	a, _ := v.([]any)
	m := make(map[string]string, len(a)/2)
	for i := 0; i+1 < len(a); i += 2 {
		m[str(a[i])] = fmt.Sprint(a[i+1])
	}
	return m
}

// role is the first element of ROLE ("master", "slave", "sentinel"), or
// "" if addr does not answer.
func role(addr string) string {
	v, err := ctl(addr, "ROLE")
	if err != nil {
		return ""
	}
	a, _ := v.([]any)
	if len(a) == 0 {
		return ""
	}
	return str(a[0])
}

// infoField returns one field of INFO section on addr ("" if missing).
func infoField(addr, section, field string) string {
	v, err := ctl(addr, "INFO", section)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(str(v), "\r\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return rest
		}
	}
	return ""
}

// waitUntil polls cond every 50 ms until it reports true, failing the test
// after timeout with the last status cond gave.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running reports whether the server process is up (not Stopped).
func (r *Redis) running() bool { return r.cmd != nil }

// dumpLogsOnFailure logs the tail of each file when the test has failed.
func dumpLogsOnFailure(t testing.TB, files ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- tail of %s:\n%s", f, b)
		}
	})
}

// --- Sentinel ---------------------------------------------------------------

// SentinelSetup is a master, one replica and three redis-sentinel processes
// monitoring them, all on loopback. Master and Replica are the servers as
// started: after a Failover the roles are swapped (use MasterAddr and
// RedisAt). Restarting a server with Start keeps its data (appendonly) and
// its original command line, so a restarted Replica asks to replicate the
// original master again until the Sentinels reconfigure it.
type SentinelSetup struct {
	Master, Replica *Redis
	// Sentinels are the sentinel addresses ("127.0.0.1:port").
	Sentinels []string
	// Name is the monitored master's name.
	Name string
}

// Sentinel is another name for SentinelSetup.
type Sentinel = SentinelSetup

// StartSentinelSetup starts a master and a replica (extra arguments are
// passed to both redis-servers; the Sentinels are configured without
// auth-pass, so no requirepass) and three Sentinels monitoring the master
// as name with quorum 2, and waits until every Sentinel knows the master,
// the in-sync replica and the two other Sentinels, so that a failover can
// start at once. Everything is killed when the test ends.
func StartSentinelSetup(t testing.TB, name string, extra ...string) *SentinelSetup {
	t.Helper()
	bin := NeedBinary(t, "redis-sentinel", "redis-sentinel")
	RedisServerPath(t)
	logs := t.TempDir()
	s := &SentinelSetup{Name: name}
	s.Master = StartRedis(t, append([]string{"--appendonly", "yes", "--repl-diskless-sync-delay", "0",
		"--logfile", filepath.Join(logs, "master.log")}, extra...)...)
	s.Replica = StartRedis(t, append([]string{"--appendonly", "yes", "--repl-diskless-sync-delay", "0",
		"--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port),
		"--logfile", filepath.Join(logs, "replica.log")}, extra...)...)
	logFiles := []string{filepath.Join(logs, "master.log"), filepath.Join(logs, "replica.log")}
	// The Sentinels discover replicas from the master's INFO, which they
	// ask for at once and then only every 10 s: the replica must be
	// attached before they start. (No diskless-sync delay, so this takes
	// milliseconds, not 5 s.)
	waitUntil(t, 15*time.Second, "replica in sync", func() (bool, string) {
		st := infoField(s.Replica.Addr, "replication", "master_link_status")
		return st == "up", "master_link_status:" + st
	})

	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	})
	used := map[int]bool{s.Master.Port: true, s.Replica.Port: true}
	for i := 0; i < 3; i++ {
		port := FreePort(t)
		for used[port] {
			port = FreePort(t)
		}
		used[port] = true
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		logFile := filepath.Join(dir, "sentinel.log")
		text := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			"dir " + dir,
			"logfile " + logFile,
			"sentinel resolve-hostnames no",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", name, s.Master.Port),
			fmt.Sprintf("sentinel down-after-milliseconds %s 1000", name),
			fmt.Sprintf("sentinel failover-timeout %s 5000", name),
			fmt.Sprintf("sentinel parallel-syncs %s 1", name),
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, conf)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-sentinel: %v", err)
		}
		procs = append(procs, cmd)
		logFiles = append(logFiles, logFile)
		s.Sentinels = append(s.Sentinels, "127.0.0.1:"+strconv.Itoa(port))
	}
	dumpLogsOnFailure(t, logFiles...)
	for _, addr := range s.Sentinels {
		waitUntil(t, 10*time.Second, "sentinel "+addr+" to start", func() (bool, string) {
			v, err := ctl(addr, "PING")
			return err == nil && v == "PONG", fmt.Sprint(err)
		})
	}
	waitUntil(t, 30*time.Second, "sentinels to know master, replica and each other", s.ready)
	return s
}

// ready reports whether every Sentinel sees the master, a healthy replica
// and the two other Sentinels.
func (s *SentinelSetup) ready() (bool, string) {
	for _, addr := range s.Sentinels {
		m, err := s.masterFrom(addr)
		if err != nil || m != s.Master.Addr {
			return false, fmt.Sprintf("%s: master %q %v", addr, m, err)
		}
		v, err := ctl(addr, "SENTINEL", "REPLICAS", s.Name)
		if err != nil {
			return false, fmt.Sprintf("%s: replicas: %v", addr, err)
		}
		good := false
		list, _ := v.([]any)
		for _, e := range list {
			r := pairs(e)
			if r["name"] == s.Replica.Addr && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				good = true
			}
		}
		if !good {
			return false, fmt.Sprintf("%s: replicas %v", addr, v)
		}
		v, err = ctl(addr, "SENTINEL", "SENTINELS", s.Name)
		if err != nil {
			return false, fmt.Sprintf("%s: sentinels: %v", addr, err)
		}
		n := 0
		list, _ = v.([]any)
		for _, e := range list {
			if pairs(e)["flags"] == "sentinel" {
				n++
			}
		}
		if n != len(s.Sentinels)-1 {
			return false, fmt.Sprintf("%s knows %d healthy sentinels", addr, n)
		}
	}
	return true, ""
}

// masterFrom asks the Sentinel at addr for the master's address.
func (s *SentinelSetup) masterFrom(addr string) (string, error) {
	v, err := ctl(addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name)
	if err != nil {
		return "", err
	}
	a, _ := v.([]any)
	if len(a) != 2 {
		return "", fmt.Errorf("get-master-addr-by-name: %v", v)
	}
	return net.JoinHostPort(str(a[0]), str(a[1])), nil
}

// URL is the redis-sentinel:// URL of the setup.
func (s *SentinelSetup) URL() string {
	return "redis-sentinel://" + strings.Join(s.Sentinels, ",") + "/" + s.Name
}

// MasterAddr is the master's address according to the first Sentinel that
// answers.
func (s *SentinelSetup) MasterAddr(t testing.TB) string {
	t.Helper()
	var last error
	for _, addr := range s.Sentinels {
		m, err := s.masterFrom(addr)
		if err == nil {
			return m
		}
		last = err
	}
	t.Fatalf("no sentinel knows master %s: %v", s.Name, last)
	return ""
}

// RedisAt returns the server (Master or Replica) listening on addr, or nil.
func (s *SentinelSetup) RedisAt(addr string) *Redis {
	switch addr {
	case s.Master.Addr:
		return s.Master
	case s.Replica.Addr:
		return s.Replica
	}
	return nil
}

// Failover makes the Sentinels promote the replica (SENTINEL FAILOVER,
// retried for 10 s while they answer INPROG or NOGOODSLAVE), waits until
// every Sentinel reports the new master and it answers ROLE as master, and
// returns its address.
func (s *SentinelSetup) Failover(t testing.TB) (newMaster string) {
	t.Helper()
	old := s.MasterAddr(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := ctl(s.Sentinels[0], "SENTINEL", "FAILOVER", s.Name)
		if err == nil {
			break
		}
		retry := strings.HasPrefix(err.Error(), "INPROG") || strings.HasPrefix(err.Error(), "NOGOODSLAVE")
		if !retry || time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER %s: %v", s.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitUntil(t, 20*time.Second, "failover of "+s.Name, func() (bool, string) {
		var addrs []string
		for _, addr := range s.Sentinels {
			m, err := s.masterFrom(addr)
			if err != nil {
				return false, err.Error()
			}
			addrs = append(addrs, m)
		}
		for _, m := range addrs {
			if m == old || m != addrs[0] {
				return false, fmt.Sprintf("sentinels report %v (old %s)", addrs, old)
			}
		}
		if r := role(addrs[0]); r != "master" {
			return false, fmt.Sprintf("%s has role %q", addrs[0], r)
		}
		newMaster = addrs[0]
		return true, ""
	})
	return newMaster
}

// --- Cluster ----------------------------------------------------------------

// Cluster is a Redis Cluster on loopback, created with redis-cli.
type Cluster struct {
	// Nodes are all the servers, in the order they were started.
	Nodes []*Redis
	seeds []string
	cli   string
}

// clusterPort picks a free port whose cluster bus port (port+10000) is free
// too and not used by another node.
func clusterPort(t testing.TB, used map[int]bool) int {
	t.Helper()
	for i := 0; i < 500; i++ {
		p := FreePort(t)
		bus := p + 10000
		if bus > 65535 || used[p] || used[bus] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(bus))
		if err != nil {
			continue
		}
		ln.Close()
		used[p], used[bus] = true, true
		return p
	}
	t.Fatal("no free pair of ports (port, port+10000)")
	return 0
}

// StartCluster starts masters*(1+replicasPerMaster) cluster-enabled
// redis-servers (extra arguments are passed to each), joins them with
// redis-cli --cluster create and waits until every node reports the cluster
// ok with the same slot map. Each node keeps its data and nodes.conf in its
// own directory, so Stop and Start restart it as the same node. All are
// killed when the test ends. masters must be at least 3.
func StartCluster(t testing.TB, masters, replicasPerMaster int, extra ...string) *Cluster {
	t.Helper()
	RedisServerPath(t)
	c := &Cluster{cli: NeedBinary(t, "redis-cli", "redis-tools")}
	used := map[int]bool{}
	var addrs, logs []string
	for i := 0; i < masters*(1+replicasPerMaster); i++ {
		port := clusterPort(t, used)
		r := &Redis{Dir: t.TempDir(), t: t, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port)}
		logFile := filepath.Join(r.Dir, "redis.log")
		r.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "yes", "--dir", r.Dir, "--protected-mode", "no", "--logfile", logFile,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes-" + strconv.Itoa(port) + ".conf",
			"--cluster-node-timeout", "1500", "--repl-diskless-sync-delay", "0"}, extra...)
		r.Start()
		t.Cleanup(r.Stop)
		c.Nodes = append(c.Nodes, r)
		addrs = append(addrs, r.Addr)
		logs = append(logs, logFile)
	}
	dumpLogsOnFailure(t, logs...)
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	c.runCLI(t, args...)
	c.WaitOK(t)
	for _, m := range c.Masters(t) {
		c.seeds = append(c.seeds, m.Addr)
	}
	return c
}

// runCLI runs redis-cli with args (60 s at most) and fails the test with
// its output if it fails.
func (c *Cluster) runCLI(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// URL is the redis-cluster:// URL listing the masters the cluster was
// created with.
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.seeds, ",") }

// node returns the node listening on addr, or nil.
func (c *Cluster) node(addr string) *Redis {
	for _, r := range c.Nodes {
		if r.Addr == addr {
			return r
		}
	}
	return nil
}

// Masters returns the running nodes whose ROLE is master.
func (c *Cluster) Masters(t testing.TB) []*Redis {
	t.Helper()
	var out []*Redis
	for _, r := range c.Nodes {
		if r.running() && role(r.Addr) == "master" {
			out = append(out, r)
		}
	}
	return out
}

// NodeID is r's cluster node ID (CLUSTER MYID).
func (c *Cluster) NodeID(t testing.TB, r *Redis) string {
	t.Helper()
	return str(mustCtl(t, r.Addr, "CLUSTER", "MYID"))
}

// slotRange is one entry of CLUSTER SLOTS: slots start..end served by the
// master at addr.
type slotRange struct {
	start, end int
	master     string
}

// clusterSlots reads the slot map as the node at addr sees it, sorted.
func clusterSlots(addr string) ([]slotRange, error) {
	v, err := ctl(addr, "CLUSTER", "SLOTS")
	if err != nil {
		return nil, err
	}
	list, _ := v.([]any)
	var out []slotRange
	for _, e := range list {
		a, _ := e.([]any)
		if len(a) < 3 {
			return nil, fmt.Errorf("bad CLUSTER SLOTS entry %v", e)
		}
		start, _ := a[0].(int64)
		end, _ := a[1].(int64)
		m, _ := a[2].([]any)
		if len(m) < 2 {
			return nil, fmt.Errorf("bad CLUSTER SLOTS entry %v", e)
		}
		port, _ := m[1].(int64)
		out = append(out, slotRange{int(start), int(end), net.JoinHostPort(str(m[0]), strconv.FormatInt(port, 10))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out, nil
}

// SlotOwner is the master serving slot according to the first running node.
func (c *Cluster) SlotOwner(t testing.TB, slot int) *Redis {
	t.Helper()
	for _, r := range c.Nodes {
		if !r.running() {
			continue
		}
		ranges, err := clusterSlots(r.Addr)
		if err != nil {
			t.Fatalf("CLUSTER SLOTS on %s: %v", r.Addr, err)
		}
		for _, sr := range ranges {
			if slot >= sr.start && slot <= sr.end {
				if n := c.node(sr.master); n != nil {
					return n
				}
				t.Fatalf("slot %d is served by unknown node %s", slot, sr.master)
			}
		}
		t.Fatalf("slot %d is not served according to %s", slot, r.Addr)
	}
	t.Fatal("no cluster node is running")
	return nil
}

// WaitOK waits until every running node reports cluster_state:ok, knows
// all nodes, and they all agree on which master serves each of the 16384
// slots, and until every running replica of a running master is in sync
// (so that a failover can start at once).
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	waitUntil(t, 30*time.Second, "cluster state ok on all nodes", c.ok)
}

// ok is the condition of WaitOK.
func (c *Cluster) ok() (bool, string) {
	want, wantView := "", ""
	for _, r := range c.Nodes {
		if !r.running() {
			continue
		}
		v, err := ctl(r.Addr, "CLUSTER", "INFO")
		if err != nil {
			return false, fmt.Sprintf("%s: %v", r.Addr, err)
		}
		info := str(v)
		if !strings.Contains(info, "cluster_state:ok\r\n") {
			return false, r.Addr + " not ok"
		}
		if !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))+"\r\n") {
			return false, r.Addr + " does not know all nodes"
		}
		ranges, err := clusterSlots(r.Addr)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", r.Addr, err)
		}
		var b strings.Builder
		n := 0
		for _, sr := range ranges {
			fmt.Fprintf(&b, "%d-%d:%s ", sr.start, sr.end, sr.master)
			n += sr.end - sr.start + 1
		}
		if n != 16384 {
			return false, fmt.Sprintf("%s serves %d slots", r.Addr, n)
		}
		if want == "" {
			want = b.String()
		} else if b.String() != want {
			return false, fmt.Sprintf("slot maps differ: %s\nvs %s", want, b.String())
		}
		view, err := c.nodesView(r.Addr)
		if err != nil {
			return false, err.Error()
		}
		if wantView == "" {
			wantView = view
		} else if view != wantView {
			return false, fmt.Sprintf("nodes disagree on roles: %s\nvs %s", wantView, view)
		}
		v, err = ctl(r.Addr, "ROLE")
		if err != nil {
			return false, fmt.Sprintf("%s: %v", r.Addr, err)
		}
		if a, _ := v.([]any); len(a) >= 4 && str(a[0]) == "slave" {
			port, _ := a[2].(int64)
			m := c.node(net.JoinHostPort(str(a[1]), strconv.FormatInt(port, 10)))
			if m != nil && m.running() && str(a[3]) != "connected" {
				return false, fmt.Sprintf("replica %s is %s to %s", r.Addr, str(a[3]), m.Addr)
			}
		}
	}
	return true, ""
}

// nodesView summarizes CLUSTER NODES on addr as the sorted list of
// "node-id role master-id", and fails if addr's cluster bus link to a
// running node is down (messages such as a manual failover's would be
// dropped).
func (c *Cluster) nodesView(addr string) (string, error) {
	v, err := ctl(addr, "CLUSTER", "NODES")
	if err != nil {
		return "", fmt.Errorf("%s: %v", addr, err)
	}
	var view []string
	for _, line := range strings.Split(strings.TrimSpace(str(v)), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return "", fmt.Errorf("%s: bad CLUSTER NODES line %q", addr, line)
		}
		nodeAddr, _, _ := strings.Cut(f[1], "@")
		flags := "," + f[2] + ","
		if !strings.Contains(flags, ",myself,") && f[7] != "connected" {
			if n := c.node(nodeAddr); n != nil && n.running() {
				return "", fmt.Errorf("%s: link to %s is %s", addr, nodeAddr, f[7])
			}
		}
		roleName := "master"
		if strings.Contains(flags, ",slave,") {
			roleName = "slave"
		}
		view = append(view, f[0]+" "+roleName+" "+f[3])
	}
	sort.Strings(view)
	return strings.Join(view, "; "), nil
}

// Reshard moves slots slots from one master to another with redis-cli
// --cluster reshard (keys included) and waits for the cluster to settle.
func (c *Cluster) Reshard(t testing.TB, from, to *Redis, slots int) {
	t.Helper()
	c.WaitOK(t) // redis-cli refuses to reshard a cluster that does not agree
	c.runCLI(t, "--cluster", "reshard", from.Addr,
		"--cluster-from", c.NodeID(t, from), "--cluster-to", c.NodeID(t, to),
		"--cluster-slots", strconv.Itoa(slots), "--cluster-yes")
	c.WaitOK(t)
}

// MoveSlot migrates one slot, keys included, from its current master to
// the master to, the way redis-cli does it: SETSLOT IMPORTING on to,
// MIGRATING on the owner, MIGRATE the keys 100 at a time, then SETSLOT NODE
// on every master; then it waits for the cluster to agree. Clients keep
// working meanwhile (with ASK redirections), so it can run under load.
func (c *Cluster) MoveSlot(t testing.TB, slot int, to *Redis) {
	t.Helper()
	from := c.SlotOwner(t, slot)
	if from == to {
		return
	}
	s := strconv.Itoa(slot)
	fromID, toID := c.NodeID(t, from), c.NodeID(t, to)
	mustCtl(t, to.Addr, "CLUSTER", "SETSLOT", s, "IMPORTING", fromID)
	mustCtl(t, from.Addr, "CLUSTER", "SETSLOT", s, "MIGRATING", toID)
	for {
		keys, _ := mustCtl(t, from.Addr, "CLUSTER", "GETKEYSINSLOT", s, "100").([]any)
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(to.Port), "", "0", "10000", "KEYS"}
		for _, k := range keys {
			args = append(args, str(k))
		}
		mustCtl(t, from.Addr, args...)
	}
	// The new owner first, then the old one, then the others (as the
	// Redis cluster specification says), so that no node points clients
	// back at the old owner once it has let go.
	mustCtl(t, to.Addr, "CLUSTER", "SETSLOT", s, "NODE", toID)
	mustCtl(t, from.Addr, "CLUSTER", "SETSLOT", s, "NODE", toID)
	for _, m := range c.Masters(t) {
		if m != to && m != from {
			mustCtl(t, m.Addr, "CLUSTER", "SETSLOT", s, "NODE", toID)
		}
	}
	waitUntil(t, 30*time.Second, fmt.Sprintf("slot %d to move to %s", slot, to.Addr), func() (bool, string) {
		for _, r := range c.Nodes {
			if !r.running() {
				continue
			}
			ranges, err := clusterSlots(r.Addr)
			if err != nil {
				return false, err.Error()
			}
			for _, sr := range ranges {
				if slot >= sr.start && slot <= sr.end && sr.master != to.Addr {
					return false, fmt.Sprintf("%s says %s", r.Addr, sr.master)
				}
			}
		}
		return true, ""
	})
	c.WaitOK(t)
}

// Failover promotes replica with CLUSTER FAILOVER (resent every 2 s while
// it has not happened: the request is fire-and-forget), waits until it answers ROLE as master and the
// cluster is ok on all nodes.
func (c *Cluster) Failover(t testing.TB, replica *Redis) {
	t.Helper()
	mustCtl(t, replica.Addr, "CLUSTER", "FAILOVER")
	resend := time.Now().Add(2 * time.Second)
	waitUntil(t, 20*time.Second, "cluster failover to "+replica.Addr, func() (bool, string) {
		r := role(replica.Addr)
		if r == "master" {
			return true, ""
		}
		if time.Now().After(resend) {
			resend = time.Now().Add(2 * time.Second)
			if _, err := ctl(replica.Addr, "CLUSTER", "FAILOVER"); err != nil {
				return false, "resend CLUSTER FAILOVER: " + err.Error()
			}
		}
		return false, "role " + r
	})
	c.WaitOK(t)
}

// --- hash slots -------------------------------------------------------------

// crc16 is CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no
// reflection, as the Redis cluster specification uses.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Slot is the Redis Cluster hash slot of key: CRC16 of the key modulo
// 16384, or of its hash tag, the part between the first "{" and the next
// "}" when that is not empty.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16([]byte(key)) & 16383)
}
