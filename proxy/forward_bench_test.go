package proxy_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// forwarder is a client that sends a fixed request and reads n replies into
// a fixed buffer, so the test process allocates nothing of its own.
type forwarder struct {
	nc  net.Conn
	req []byte
	n   int
	buf []byte
	f   upstream.Framer
}

func newForwarder(tb testing.TB, addr string, n int, args ...string) *forwarder {
	tb.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	var req []byte
	for i := 0; i < n; i++ {
		req = upstream.AppendCommand(req, args...)
	}
	return &forwarder{nc: nc, req: req, n: n, buf: make([]byte, 64<<10)}
}

// roundTrip writes the batch and reads its replies; it returns the first.
func (f *forwarder) roundTrip(tb testing.TB) []byte {
	if _, err := f.nc.Write(f.req); err != nil {
		tb.Fatal(err)
	}
	got, w, r := 0, 0, 0
	first := -1
	for got < f.n {
		if r == w {
			m, err := f.nc.Read(f.buf[w:])
			if err != nil {
				tb.Fatal(err)
			}
			w += m
		}
		n, done, err := f.f.Scan(f.buf[r:w])
		if err != nil {
			tb.Fatal(err)
		}
		r += n
		if done {
			if first < 0 {
				first = r
			}
			got++
			continue
		}
		if r < w { // partial line: read more behind it
			m, err := f.nc.Read(f.buf[w:])
			if err != nil {
				tb.Fatal(err)
			}
			w += m
		}
	}
	return f.buf[:first]
}

func startForwarding(tb testing.TB) string {
	tb.Helper()
	r := testutil.StartRedis(tb)
	// Enforcement on, as in production: the check is part of the cost.
	cfg := testutil.EnforcingConfig(tb, r.URL())
	cfg.Keyspace.DefaultWorkspace = "bench"
	a := testutil.StartProxy(tb, cfg)
	c := testutil.Dial(tb, a.Addr())
	c.Do("SET", "deepagents:{bench}:kv:k", "value-of-some-length")
	return a.Addr()
}

// TestForwardGETAllocatesNothing checks the SPEC §14 target: zero
// allocations per forwarded GET in steady state, counted over the whole
// process (client, session, upstream reader).
func TestForwardGETAllocatesNothing(t *testing.T) {
	addr := startForwarding(t)
	for _, n := range []int{1, 16} {
		f := newForwarder(t, addr, n, "GET", "deepagents:{bench}:kv:k")
		for i := 0; i < 2000; i++ { // warm up: buffers reach their size
			f.roundTrip(t)
		}
		if got := f.roundTrip(t); !bytes.Equal(got, []byte("$20\r\nvalue-of-some-length\r\n")) {
			t.Fatalf("reply %q", got)
		}
		allocs := testing.AllocsPerRun(2000, func() { f.roundTrip(t) })
		t.Logf("pipeline %d: %.3f allocations per batch", n, allocs)
		// Background goroutines (timers, the runtime) may allocate now and
		// then; a per-command allocation would show as >= 1 per batch.
		if allocs >= 0.5 {
			t.Fatalf("pipeline %d: %.3f allocations per batch, want 0", n, allocs)
		}
	}
}

func benchForward(b *testing.B, n int) {
	addr := startForwarding(b)
	f := newForwarder(b, addr, n, "GET", "deepagents:{bench}:kv:k")
	for i := 0; i < 1000; i++ {
		f.roundTrip(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f.roundTrip(b)
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "cmds/s")
}

// BenchmarkForwardGET: one client, no pipelining (latency-bound).
func BenchmarkForwardGET(b *testing.B) { benchForward(b, 1) }

// BenchmarkForwardGETPipelined16: one client, batches of 16.
func BenchmarkForwardGETPipelined16(b *testing.B) { benchForward(b, 16) }
