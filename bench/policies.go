package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The cost of the plain-write policies (fencing, TTL rules, events): more
// agentproxy processes against the same Redis, each with one policy on,
// measured with pipelined SET in the same interleaved rounds as the default
// agentproxy; and the write → subscriber propagation of events under load.

const modePol = "policies" // pipelined SET against the policy targets

// polTarget is an agentproxy started with a config file of its own.
type polTarget struct {
	name, desc, toml string
}

// polTargets are compared with "agentproxy" (the default config: kv is a
// fenced kind, no lock is held, no TTL rules, no events), which is the
// "unguarded kind without TTL rules" case.
var polTargets = []polTarget{
	{"ap-nopolicy", "policies off: no fenced kinds, no TTL rules, no events", "[fencing]\nkinds = []\n"},
	{"ap-guarded", "every kv write checked by the fenced-write script ([fencing] strict)", "[fencing]\nkinds = [\"kv\"]\nstrict = true\n"},
	{"ap-ttl", "kv writes under a TTL rule (default 1h, max 24h), applied by the script", "[[ttl]]\nkind = \"kv\"\ndefault = \"1h\"\nmax = \"24h\"\n"},
	{"ap-evented", "an event (PUBLISH + XADD) per kv write ([events] plain_writes)", "[events]\nplain_writes = [\"kv\"]\n"},
}

// setupPolicies starts the policy targets.
func (h *harness) setupPolicies(ctx context.Context, bin string, rport int) error {
	if !h.cfg.policies || h.cfg.proxyCmd != "" {
		return nil
	}
	value := strings.Repeat("x", h.cfg.valueSize)
	for _, pt := range polTargets {
		conf := filepath.Join(h.dir, pt.name+".toml")
		if err := os.WriteFile(conf, []byte(pt.toml), 0o644); err != nil {
			return err
		}
		saved := h.cfg.extraArgs
		h.cfg.extraArgs = strings.TrimSpace("--config " + conf + " " + saved)
		p, addr, err := h.startProxy(ctx, bin, rport)
		h.cfg.extraArgs = saved
		if err != nil {
			return fmt.Errorf("%s: %w", pt.name, err)
		}
		p.name = pt.name
		h.targets[pt.name] = &target{name: pt.name, addr: addr, p: p}
		if err := probe(addr, h.key("probe-"+pt.name), value); err != nil {
			return fmt.Errorf("%s does not execute the benchmark commands: %w", pt.name, err)
		}
		h.polNames = append(h.polNames, pt.name)
	}
	h.logf("bench: policy targets %s", strings.Join(h.polNames, ", "))
	return nil
}

// measurePolicies runs round r of the policy comparison.
func (h *harness) measurePolicies(ctx context.Context, r int) error {
	if len(h.polNames) == 0 {
		return nil
	}
	names := append([]string{tAP}, h.polNames...)
	if r == 0 {
		warm := runSpec{"warmup", "SET", h.cfg.clients, h.cfg.pipeline, max(h.cfg.nPol/10, 1000)}
		for _, name := range h.polNames {
			if _, err := h.runOne(ctx, h.targets[name], warm); err != nil {
				return fmt.Errorf("warm-up %s: %w", name, err)
			}
		}
	}
	k := r % len(names)
	order := append(append([]string{}, names[k:]...), names[:k]...)
	s := runSpec{modePol, "SET", h.cfg.clients, h.cfg.pipeline, h.cfg.nPol}
	for _, name := range order {
		res, err := h.runOne(ctx, h.targets[name], s)
		if err != nil {
			return fmt.Errorf("round %d, policies, %s: %w", r+1, name, err)
		}
		key := resKey{s.mode, s.cmd, name}
		h.results[key] = append(h.results[key], res)
		h.logf("  round %d/%d  %-11s %s  %-11s %9.0f req/s  cpu %s µs/req  redis cpu %s µs/req",
			r+1, h.cfg.rounds, s.mode, s.cmd, name, res.rps, fmtF(res.cpuPerReq, 2), fmtF(res.upPerReq, 2))
	}
	return nil
}

// propagation is the event latency measured by measurePropagation.
type propagation struct {
	load                  string
	n                     int
	ackP50, ackP99        float64 // µs from the write's reply to the event's arrival
	sendP50, sendP99      float64 // µs from sending the write
	loadRPS               float64
	missed                int
	idleAckP50, idleAck99 float64
}

// measurePropagation measures, through ap-evented, how long an event takes
// from a plain write to a subscriber (subscribed through the proxy): first
// with no other traffic, then while redis-benchmark writes at full speed
// through the same proxy.
func (h *harness) measurePropagation(ctx context.Context) error {
	t := h.targets["ap-evented"]
	if t == nil {
		return nil
	}
	n := max(h.cfg.nPol/100, 500)
	idle, err := h.propagationProbe(ctx, t.addr, n)
	if err != nil {
		return fmt.Errorf("event propagation (idle): %w", err)
	}
	// Load: unpipelined SETs from many clients, until the probe is done.
	lctx, cancel := context.WithCancel(ctx)
	host, port, _ := strings.Cut(t.addr, ":")
	const loadClients = 20
	load := exec.CommandContext(lctx, "redis-benchmark", "-h", host, "-p", port, "-c", strconv.Itoa(loadClients), "-n", "100000000",
		"-r", strconv.Itoa(h.cfg.keyspace), "-q", "SET", h.key("__rand_int__"), strings.Repeat("x", h.cfg.valueSize))
	load.SysProcAttr = childProcAttr()
	load.WaitDelay = 2 * time.Second
	if err := load.Start(); err != nil {
		cancel()
		return err
	}
	time.Sleep(time.Second) // let the load settle
	raddr := h.targets[tRedis].addr
	before, _ := setCalls(raddr)
	t0 := time.Now()
	busy, err := h.propagationProbe(ctx, t.addr, n)
	after, _ := setCalls(raddr)
	elapsed := time.Since(t0)
	cancel()
	_ = load.Wait()
	if load.ProcessState != nil {
		h.childCPU += load.ProcessState.UserTime() + load.ProcessState.SystemTime()
	}
	if err != nil {
		return fmt.Errorf("event propagation (under load): %w", err)
	}
	busy.load = fmt.Sprintf("redis-benchmark -c %d -P 1 SET through the same proxy", loadClients)
	busy.loadRPS = float64(after-before) / elapsed.Seconds()
	busy.idleAckP50, busy.idleAck99 = idle.ackP50, idle.ackP99
	h.prop = &busy
	h.logf("  events: idle ack→event p50 %.0f µs p99 %.0f µs; under load (%.0f writes/s) p50 %.0f µs p99 %.0f µs",
		idle.ackP50, idle.ackP99, busy.loadRPS, busy.ackP50, busy.ackP99)
	return nil
}

// setCalls reads how many SETs Redis at addr has run (INFO commandstats).
func setCalls(addr string) (int64, error) {
	rc, err := dialRESP(addr, 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	s, err := rc.do("INFO", "commandstats")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_set:calls="); ok {
			v, _, _ = strings.Cut(v, ",")
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, nil
}

// propagationProbe writes n probe keys one at a time (about 1 ms apart)
// and times each one's event on a subscriber connection.
func (h *harness) propagationProbe(ctx context.Context, addr string, n int) (propagation, error) {
	var res propagation
	sub, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return res, err
	}
	defer sub.Close()
	channel := h.cfg.prefix + ":{" + h.cfg.workspace + "}:events"
	fmt.Fprintf(sub, "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", len(channel), channel)
	br := bufio.NewReaderSize(sub, 1<<20)
	_ = sub.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 6; i++ { // *3 $9 subscribe $n channel :1
		if _, err := br.ReadString('\n'); err != nil {
			return res, fmt.Errorf("SUBSCRIBE: %w", err)
		}
	}
	_ = sub.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = sub.SetReadDeadline(time.Now()) })
	defer stop()

	sent := make([]time.Time, n)
	acked := make([]time.Time, n)
	got := make([]time.Time, n)
	var mu sync.Mutex
	marker := `"resource":"kv:probe:ev:`
	done := make(chan error, 1)
	go func() {
		seen := 0
		for seen < n {
			line, err := br.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				done <- err
				return
			}
			i := strings.Index(string(line), marker)
			if i < 0 {
				continue
			}
			rest := string(line[i+len(marker):])
			j := strings.IndexByte(rest, '"')
			k, err := strconv.Atoi(rest[:max(j, 0)])
			if err != nil || k < 0 || k >= n {
				continue
			}
			now := time.Now()
			mu.Lock()
			if got[k].IsZero() {
				got[k] = now
				seen++
			}
			mu.Unlock()
		}
		done <- nil
	}()

	w, err := dialRESP(addr, 5*time.Second)
	if err != nil {
		return res, err
	}
	defer w.Close()
	_ = w.c.SetDeadline(time.Time{})
	for i := 0; i < n; i++ {
		key := h.key("probe:ev:" + strconv.Itoa(i))
		sent[i] = time.Now()
		r, err := w.do("SET", key, "v")
		acked[i] = time.Now()
		if err != nil {
			return res, err
		}
		if r != "+OK" {
			return res, fmt.Errorf("probe SET answered %q", r)
		}
		time.Sleep(time.Millisecond)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	select {
	case err := <-done:
		if err != nil && err != io.EOF {
			return res, err
		}
	case <-time.After(5 * time.Second):
	}
	_ = sub.SetReadDeadline(time.Now())
	mu.Lock()
	defer mu.Unlock()
	var ack, snd []float64
	for i := 0; i < n; i++ {
		if got[i].IsZero() {
			res.missed++
			continue
		}
		ack = append(ack, float64(got[i].Sub(acked[i]))/float64(time.Microsecond))
		snd = append(snd, float64(got[i].Sub(sent[i]))/float64(time.Microsecond))
	}
	if len(ack) == 0 {
		return res, fmt.Errorf("no probe event arrived (of %d)", n)
	}
	slices.Sort(ack)
	slices.Sort(snd)
	pct := func(xs []float64, p float64) float64 { return xs[min(int(p*float64(len(xs))), len(xs)-1)] }
	res.n = n
	res.ackP50, res.ackP99 = pct(ack, 0.5), pct(ack, 0.99)
	res.sendP50, res.sendP99 = pct(snd, 0.5), pct(snd, 0.99)
	return res, nil
}

// reportPolicies prints the policy table and the propagation figures.
func (h *harness) reportPolicies(w io.Writer) {
	if len(h.polNames) == 0 {
		return
	}
	c := h.cfg
	fmt.Fprintf(w, "\nPLAIN-WRITE POLICIES (pipelined SET -P %d -c %d, -n %d; same Redis, same rounds)\n", c.pipeline, c.clients, c.nPol)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\treq/s\tvs off\tcpu ap\tredis cpu\twhat\t")
	off, _ := h.med(modePol, "SET", "ap-nopolicy", rpsOf)
	rows := append([]string{tAP}, h.polNames...)
	descs := map[string]string{tAP: "the default config: kv is fenced, no lock held (a registry lookup), no TTL rules, no events"}
	for _, pt := range polTargets {
		descs[pt.name] = pt.desc
	}
	for _, name := range rows {
		r, bad := h.med(modePol, "SET", name, rpsOf)
		cpu, _ := h.med(modePol, "SET", name, cpuOf)
		up, _ := h.med(modePol, "SET", name, upOf)
		v := fmtF(r, 0)
		if bad {
			v += "!"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", name, v, fmtF(ratio(r, off), 3), fmtF(cpu, 2), fmtF(up, 2), descs[name])
	}
	tw.Flush()
	def, _ := h.med(modePol, "SET", tAP, rpsOf)
	verdict := "FAIL"
	if ratio(def, off) >= 0.95 {
		verdict = "pass"
	}
	fmt.Fprintf(w, "  unguarded kind without TTL rules vs policies off: %s (want >= 0.95) %s\n", fmtF(ratio(def, off), 3), verdict)
	if p := h.prop; p != nil {
		fmt.Fprintf(w, "\nEVENT PROPAGATION (plain SET → subscriber through the proxy, %d probe writes, µs)\n", p.n)
		fmt.Fprintf(w, "  idle:        write acknowledged → event  p50 %s  p99 %s\n", fmtF(p.idleAckP50, 0), fmtF(p.idleAck99, 0))
		fmt.Fprintf(w, "  under load:  write acknowledged → event  p50 %s  p99 %s;  write sent → event p50 %s  p99 %s\n",
			fmtF(p.ackP50, 0), fmtF(p.ackP99, 0), fmtF(p.sendP50, 0), fmtF(p.sendP99, 0))
		fmt.Fprintf(w, "  load: %s, %.0f SETs/s reached Redis meanwhile", p.load, p.loadRPS)
		if p.missed > 0 {
			fmt.Fprintf(w, "; %d probe events missed", p.missed)
		}
		verdict := "FAIL"
		if p.ackP99 <= 2000 {
			verdict = "pass"
		}
		fmt.Fprintf(w, "\n  p99 under load %s µs (goal <= 2000) %s\n", fmtF(p.ackP99, 0), verdict)
	}
}
