package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
