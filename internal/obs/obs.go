// Package obs holds the proxy's hot-path instruments: latency histograms
// with fixed buckets and counters by command family and by refusal code.
// They are plain atomics, sharded so that sessions on different cores
// rarely share a cache line; the metrics endpoint reads and sums the shards
// (app exports them to Prometheus). Recording never allocates and takes no
// lock.
package obs

import (
	"sync/atomic"
	"time"
)

// epoch anchors Now: time.Since of a time with a monotonic reading reads
// only the monotonic clock, half the cost of time.Now (which also reads the
// wall clock).
var epoch = time.Now()

// Now is a monotonic timestamp in nanoseconds, for measuring intervals.
func Now() int64 { return int64(time.Since(epoch)) }

// Shards is how many copies of each instrument there are; a session
// records into the one its id selects.
const Shards = 8

// Bounds are the upper bounds of the latency buckets, in seconds: from a
// pipelined round trip on loopback (50 µs) to a blocking command's wait.
var Bounds = [...]float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

var boundsNS = func() (b [len(Bounds)]int64) {
	for i, s := range Bounds {
		b[i] = int64(s * 1e9)
	}
	return b
}()

// Histogram counts durations in the buckets of Bounds.
type Histogram struct{ sh [Shards]histShard }

type histShard struct {
	n   [len(Bounds) + 1]atomic.Uint64 // the last: above every bound
	sum atomic.Int64                   // nanoseconds
	_   [40]byte                       // to 192 bytes: shards on their own cache lines
}

// Since records the time from start (a Now) to now in shard.
func (h *Histogram) Since(shard, start int64) { h.Observe(shard, time.Duration(Now()-start)) }

// Observe records d in shard (any int; reduced modulo Shards).
func (h *Histogram) Observe(shard int64, d time.Duration) {
	s := &h.sh[uint64(shard)%Shards]
	ns := int64(d)
	i := 0
	for i < len(boundsNS) && ns > boundsNS[i] {
		i++
	}
	s.n[i].Add(1)
	s.sum.Add(ns)
}

// Read returns the observations so far: per bucket (not cumulative, the
// last above every bound), their count and their sum in seconds.
func (h *Histogram) Read() (buckets [len(Bounds) + 1]uint64, count uint64, sum float64) {
	var ns int64
	for k := range h.sh {
		s := &h.sh[k]
		for i := range s.n {
			buckets[i] += s.n[i].Load()
		}
		ns += s.sum.Load()
	}
	for _, n := range buckets {
		count += n
	}
	return buckets, count, float64(ns) / 1e9
}

// VecLen is how many counters a Vec holds.
const VecLen = 32

// Vec is a set of counters indexed by a small bounded label (a command
// family, a refusal code).
type Vec struct {
	sh [Shards]struct {
		n [VecLen]atomic.Uint64
		_ [64]byte // shards on their own cache lines
	}
}

// Add adds d to counter i (ignored when out of range) in shard.
func (v *Vec) Add(shard int64, i int, d uint64) {
	if uint(i) < VecLen {
		v.sh[uint64(shard)%Shards].n[i].Add(d)
	}
}

// Read returns counter i summed over the shards.
func (v *Vec) Read(i int) uint64 {
	var t uint64
	for k := range v.sh {
		t += v.sh[k].n[i].Load()
	}
	return t
}

// Refusal codes: the first word of the errors the proxy answers in place of
// Redis, bounded so that a metric label never carries user data.
var Codes = []string{"NOPERM", "BADKEY", "FENCED", "LOCKED", "CONFLICT", "CROSSSLOT", "TRYAGAIN", "NOAUTH", "WRONGPASS",
	"TOOLARGE", "ERR", "other"}

// CodeOf is the index in Codes of an error message's code ("NOPERM ...",
// or a reply "-NOPERM ...").
func CodeOf[T string | []byte](msg T) int {
	if len(msg) > 0 && msg[0] == '-' {
		msg = msg[1:]
	}
	end := 0
	for end < len(msg) && msg[end] != ' ' && msg[end] != '\r' {
		end++
	}
	w := msg[:end]
	for i, c := range Codes[:len(Codes)-1] {
		if string(w) == c {
			return i
		}
	}
	return len(Codes) - 1
}

// Stats are a proxy server's counters and instruments, read with atomic
// loads.
type Stats struct {
	Accepted       atomic.Int64
	Rejected       atomic.Int64 // refused at max_clients
	Clients        atomic.Int64
	Commands       atomic.Int64
	Pinned         atomic.Int64 // sessions holding a dedicated connection
	SlowConsumers  atomic.Int64
	Warned         atomic.Int64 // violations forwarded in warn mode
	AuthFailures   atomic.Int64
	ProtocolErrors atomic.Int64
	UpstreamErrors atomic.Int64
	BudgetCuts     atomic.Int64 // clients cut because the memory budget was exhausted
	BulkWaits      atomic.Int64 // bulky batches that waited for a slot of the bulk lane
	DedicatedLimit atomic.Int64 // commands refused at upstream.max_dedicated_per_workspace
	RateLimited    atomic.Int64 // commands refused by [ratelimit]
	Tunnels        atomic.Int64 // sessions in tunnel mode (subscriptions, MONITOR)

	// Families counts commands by the family of their table entry
	// (keyspace.Families); Refusals counts refused commands by code
	// (Codes).
	Families Vec
	Refusals Vec
	// Client is the time from a batch read to its replies written, for
	// batches that did not block; Upstream the time from a batch sent to
	// Redis to its last reply, for commands that do not block.
	Client, Upstream Histogram
}

// Refused counts a refusal with the error msg, from the client of id.
func (st *Stats) Refused(id int64, msg string) { st.Refusals.Add(id, CodeOf(msg), 1) }

// RefusedReply counts an error reply of a script (a domain command, a
// fenced write) when its code is a refusal's (FENCED, LOCKED, NOPERM ...),
// not a plain error or an unreachable upstream.
func (st *Stats) RefusedReply(id int64, reply []byte) {
	if len(reply) == 0 || reply[0] != '-' {
		return
	}
	if i := CodeOf(reply); Codes[i] != "ERR" && Codes[i] != "other" && Codes[i] != "TRYAGAIN" { // TRYAGAIN: Redis down
		st.Refusals.Add(id, i, 1)
	}
}

// RefusedTotal is the number of refusals of every code.
func (st *Stats) RefusedTotal() uint64 {
	var t uint64
	for i := range Codes {
		t += st.Refusals.Read(i)
	}
	return t
}
