package testutil

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
