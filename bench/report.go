package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
)

var nan = math.NaN()

func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return nan
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func fmtF(x float64, prec int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, x)
}

func fmtSigned(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f", x)
}

// med returns the median of one field over the rounds of (mode, cmd, target),
// and whether any of those runs saw error replies.
func (h *harness) med(mode, cmd, target string, field func(runResult) float64) (float64, bool) {
	rs := h.results[resKey{mode, cmd, target}]
	xs := make([]float64, 0, len(rs))
	bad := false
	for _, r := range rs {
		xs = append(xs, field(r))
		bad = bad || r.srvErr != ""
	}
	return median(xs), bad
}

func rpsOf(r runResult) float64 { return r.rps }
func cpuOf(r runResult) float64 { return r.cpuPerReq }
func upOf(r runResult) float64  { return r.upPerReq }
func p50Of(r runResult) float64 { return r.p50us }
func p99Of(r runResult) float64 { return r.p99us }

func ratio(a, b float64) float64 {
	if b == 0 {
		return nan
	}
	return a / b
}

type check struct {
	what string
	got  float64
	ok   bool
	want string
}

// report prints the tables. It is called with whatever rounds completed.
func (h *harness) report(w io.Writer) {
	c := h.cfg
	fmt.Fprintf(w, "\nagentproxy benchmark: %s\n", h.versions())
	fmt.Fprintf(w, "%d complete round(s), median shown; keys %s (keyspace %d, preloaded), %d-byte values\n",
		h.rounds, h.key("__rand_int__"), c.keyspace, c.valueSize)
	if c.procs > 0 {
		fmt.Fprintf(w, "agentproxy GOMAXPROCS=%d (twemproxy is single-threaded; -proxy-procs 0 gives Go's default)\n", c.procs)
	}
	if c.extraArgs != "" {
		fmt.Fprintf(w, "agentproxy extra args: %s\n", c.extraArgs)
	}
	if h.enforcement != "" {
		fmt.Fprintf(w, "agentproxy keyspace enforcement: %s\n", h.enforcement)
	}
	if len(h.results) == 0 {
		fmt.Fprintln(w, "no measurements; nothing to report")
		h.printNotes(w)
		return
	}

	modes := []struct{ mode, label string }{
		{modePipe, fmt.Sprintf("pipelined -P %d -c %d", c.pipeline, c.clients)},
		{modePlain, fmt.Sprintf("unpipelined -P 1 -c %d", c.clients)},
	}
	var checks []check
	anyBad := false
	mark := func(s string, bad bool) string {
		if bad {
			anyBad = true
			return s + "!"
		}
		return s
	}

	fmt.Fprintf(w, "\nTHROUGHPUT (requests/s) and PROXY CPU (µs of process CPU per request)\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tcmd\tredis\ttwemproxy\tagentproxy\tap/redis\tap/twem\tcpu twem\tcpu ap\tcpu ap/twem\t")
	for _, m := range modes {
		for _, cmd := range []string{"SET", "GET"} {
			r, bR := h.med(m.mode, cmd, tRedis, rpsOf)
			t, bT := h.med(m.mode, cmd, tTwem, rpsOf)
			a, bA := h.med(m.mode, cmd, tAP, rpsOf)
			ct, _ := h.med(m.mode, cmd, tTwem, cpuOf)
			ca, _ := h.med(m.mode, cmd, tAP, cpuOf)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", m.label, cmd,
				mark(fmtF(r, 0), bR), mark(fmtF(t, 0), bT), mark(fmtF(a, 0), bA),
				fmtF(ratio(a, r), 2), fmtF(ratio(a, t), 2), fmtF(ct, 2), fmtF(ca, 2), fmtF(ratio(ca, ct), 2))
			if m.mode == modePipe {
				checks = append(checks,
					check{fmt.Sprintf("pipelined %s throughput agentproxy/redis", cmd), ratio(a, r), ratio(a, r) >= 0.8, ">= 0.80"},
					check{fmt.Sprintf("pipelined %s throughput agentproxy/twemproxy", cmd), ratio(a, t), ratio(a, t) >= 1.3, ">= 1.30"})
			}
			checks = append(checks, check{fmt.Sprintf("%s %s CPU per request agentproxy/twemproxy", m.mode, cmd), ratio(ca, ct), ratio(ca, ct) <= 1.0, "<= 1.00"})
		}
	}
	tw.Flush()

	if h.targets[tBase] != nil {
		fmt.Fprintf(w, "\nAGENTPROXY vs BASELINE (-baseline-bin %s; new/old, 1.00 = same)\n", c.baseBin)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tcmd\tbaseline\tagentproxy\tthroughput new/old\tcpu old\tcpu new\tcpu new/old\t")
		for _, m := range modes {
			for _, cmd := range []string{"SET", "GET"} {
				b, bB := h.med(m.mode, cmd, tBase, rpsOf)
				a, bA := h.med(m.mode, cmd, tAP, rpsOf)
				cb, _ := h.med(m.mode, cmd, tBase, cpuOf)
				ca, _ := h.med(m.mode, cmd, tAP, cpuOf)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", m.label, cmd, mark(fmtF(b, 0), bB), mark(fmtF(a, 0), bA),
					fmtF(ratio(a, b), 3), fmtF(cb, 2), fmtF(ca, 2), fmtF(ratio(ca, cb), 3))
			}
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\nUPSTREAM redis-server CPU (µs per request; shows how well each path batches upstream)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tcmd\tdirect\tvia twemproxy\tvia agentproxy\t")
	for _, m := range modes {
		for _, cmd := range []string{"SET", "GET"} {
			r, _ := h.med(m.mode, cmd, tRedis, upOf)
			t, _ := h.med(m.mode, cmd, tTwem, upOf)
			a, _ := h.med(m.mode, cmd, tAP, upOf)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", m.label, cmd, fmtF(r, 2), fmtF(t, 2), fmtF(a, 2))
		}
	}
	tw.Flush()

	fmt.Fprintf(w, "\nLATENCY (µs; 1 client, no pipelining, -n %d; added = over direct redis)\n", c.nLat)
	fmt.Fprintln(w, "  rb = redis-benchmark (8 µs histogram buckets); go = harness client (ns timer, used for the targets)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cmd\ttarget\trb p50\trb p99\trb +p50\trb +p99\tgo p50\tgo p99\tgo +p50\tgo +p99\t")
	for _, cmd := range []string{"SET", "GET"} {
		r50, _ := h.med(modeLat, cmd, tRedis, p50Of)
		r99, _ := h.med(modeLat, cmd, tRedis, p99Of)
		g50, _ := h.med(modeLatGo, cmd, tRedis, p50Of)
		g99, _ := h.med(modeLatGo, cmd, tRedis, p99Of)
		for _, name := range targetNames {
			p50, bad := h.med(modeLat, cmd, name, p50Of)
			p99, _ := h.med(modeLat, cmd, name, p99Of)
			q50, _ := h.med(modeLatGo, cmd, name, p50Of)
			q99, _ := h.med(modeLatGo, cmd, name, p99Of)
			add := [4]string{}
			if name != tRedis {
				add = [4]string{fmtSigned(p50 - r50), fmtSigned(p99 - r99), fmtSigned(q50 - g50), fmtSigned(q99 - g99)}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", cmd, name,
				mark(fmtF(p50, 0), bad), fmtF(p99, 0), add[0], add[1], fmtF(q50, 1), fmtF(q99, 1), add[2], add[3])
			if name == tAP {
				checks = append(checks,
					check{fmt.Sprintf("%s added p50 latency, go client (µs)", cmd), q50 - g50, q50-g50 <= 30, "<= 30"},
					check{fmt.Sprintf("%s added p99 latency, go client (µs)", cmd), q99 - g99, q99-g99 <= 100, "<= 100"})
			}
		}
	}
	tw.Flush()

	h.reportPolicies(w)

	fmt.Fprintf(w, "\nSPEC §14 TARGETS (this machine, this run)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	pass := 0
	for _, ch := range checks {
		verdict := "FAIL"
		switch {
		case math.IsNaN(ch.got):
			verdict = "n/a"
		case ch.ok:
			verdict = "pass"
			pass++
		}
		fmt.Fprintf(tw, "  %s\t%s\t(want %s)\t%s\n", ch.what, fmtF(ch.got, 2), ch.want, verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "  %d/%d targets met\n", pass, len(checks))
	if anyBad {
		fmt.Fprintln(w, "\n! = redis-benchmark saw error replies in that cell; the number is not a valid measurement (see notes)")
	}
	h.printNotes(w)
}

func (h *harness) printNotes(w io.Writer) {
	if len(h.notes) == 0 {
		return
	}
	fmt.Fprintln(w, "\nnotes:")
	seen := map[string]bool{}
	for _, n := range h.notes {
		if !seen[n] {
			seen[n] = true
			fmt.Fprintln(w, "  - "+strings.TrimSpace(n))
		}
	}
}
