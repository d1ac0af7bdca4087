// Package membudget bounds the memory the proxy holds on behalf of clients:
// requests still arriving and replies not yet delivered. Buffers take from
// one proxy-wide Budget as they grow past their small initial size and give
// back when they shrink. Past the budget, a large holder is cut at once and
// a small one waits for room (briefly), so one client that sends or pulls a
// lot cannot take the memory every other client needs.
package membudget

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Budget is a byte budget shared by all clients. A nil *Budget allows
// everything.
type Budget struct {
	limit int64
	used  atomic.Int64
	peak  atomic.Int64
	// Cuts counts holders refused because they were large or waited too
	// long; Waits counts holders that had to wait for room.
	Cuts  atomic.Int64
	Waits atomic.Int64
}

// New returns a budget of limit bytes.
func New(limit int64) *Budget { return &Budget{limit: limit} }

// Limit is the budget's size.
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// Used is the bytes taken now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Peak is the most ever taken at once.
func (b *Budget) Peak() int64 {
	if b == nil {
		return 0
	}
	return b.peak.Load()
}

// TryTake takes n bytes if they fit.
func (b *Budget) TryTake(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			for {
				p := b.peak.Load()
				if u+n <= p || b.peak.CompareAndSwap(p, u+n) {
					return true
				}
			}
		}
	}
}

// Give returns n bytes.
func (b *Budget) Give(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.used.Add(-n)
}

// Large reports whether a holder of held bytes is one of the largest: more
// than an eighth of the budget. Such holders are cut rather than made to
// wait, since waiting would keep the memory they hold from everyone.
func (b *Budget) Large(held int64) bool { return b != nil && held > b.limit/8 }

// Take takes n more bytes for a holder that has held already. A large
// holder (after taking) is refused at once when they do not fit; a small
// one waits up to wait for room. It reports whether the bytes were taken;
// false means the holder should be cut.
func (b *Budget) Take(held, n int64, wait time.Duration) bool {
	if b.TryTake(n) {
		return true
	}
	if b.Large(held+n) || wait <= 0 {
		b.Cuts.Add(1)
		return false
	}
	b.Waits.Add(1)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if b.TryTake(n) {
			return true
		}
	}
	b.Cuts.Add(1)
	return false
}

// Default sizes a budget to the machine: a quarter of the memory limit
// (the cgroup's, else physical memory), from 64 MiB to 4 GiB.
func Default() int64 {
	limit := memoryLimit()
	b := limit / 4
	if b < 64<<20 {
		b = 64 << 20
	}
	if b > 4<<30 {
		b = 4 << 30
	}
	return b
}

// memoryLimit is the cgroup memory limit, else MemTotal, else 1 GiB.
func memoryLimit() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(f); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < 1<<50 {
				return n
			}
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err == nil && kb > 0 {
					return kb << 10
				}
			}
		}
	}
	return 1 << 30
}
