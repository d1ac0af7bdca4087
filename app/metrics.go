package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentproxy/agentproxy/internal/obs"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/proxy"
)

// statsCollector exports the proxy's labelled counters and latency
// histograms (internal/obs): labels are command families and refusal codes
// from fixed lists, never keys or anything a client sent.
type statsCollector struct{ st *proxy.Stats }

var (
	familyDesc = prometheus.NewDesc("agentproxy_family_commands_total",
		"Commands received from clients, by command family (Redis's data-type and purpose categories, the agent domain's families).",
		[]string{"family"}, nil)
	refusedDesc = prometheus.NewDesc("agentproxy_refused_total",
		"Commands refused in place of Redis, by error code (NOPERM, BADKEY, FENCED, LOCKED, CONFLICT, ...).", []string{"code"}, nil)
	clientLatencyDesc = prometheus.NewDesc("agentproxy_client_latency_seconds",
		"Time from a client's batch read to its replies written, for batches that did not block.", nil, nil)
	upstreamLatencyDesc = prometheus.NewDesc("agentproxy_upstream_latency_seconds",
		"Time from a batch sent to Redis to its last reply, for commands that do not block.", nil, nil)
)

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- familyDesc
	ch <- refusedDesc
	ch <- clientLatencyDesc
	ch <- upstreamLatencyDesc
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	for i, f := range keyspace.Families {
		ch <- prometheus.MustNewConstMetric(familyDesc, prometheus.CounterValue, float64(c.st.Families.Read(i)), f)
	}
	for i, code := range obs.Codes {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(c.st.Refusals.Read(i)), code)
	}
	ch <- constHistogram(clientLatencyDesc, &c.st.Client)
	ch <- constHistogram(upstreamLatencyDesc, &c.st.Upstream)
}

func constHistogram(d *prometheus.Desc, h *obs.Histogram) prometheus.Metric {
	b, count, sum := h.Read()
	cum := make(map[float64]uint64, len(obs.Bounds))
	var n uint64
	for i, le := range obs.Bounds {
		n += b[i]
		cum[le] = n
	}
	return prometheus.MustNewConstHistogram(d, count, sum, cum)
}
