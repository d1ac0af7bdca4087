// Package ratelimit is token buckets by name (a user, a workspace): rate
// per second, burst in seconds at the rate. A caller takes an amount; past
// the bucket it is told how long to wait, and nothing is taken.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter holds the buckets of one dimension (users or workspaces). The
// zero value is ready; Rate 0 means no limit.
type Limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds memory: past it, full (idle) buckets are dropped.
const maxBuckets = 100000

// Take takes n from name's bucket of the given rate (per second) and
// burst (seconds at the rate). It returns 0, or how long until n would be
// there (then nothing is taken).
func (l *Limiter) Take(name string, n, rate float64, burst time.Duration, now time.Time) time.Duration {
	if rate <= 0 {
		return 0
	}
	capacity := rate * burst.Seconds()
	if capacity < n {
		capacity = n // one batch larger than the burst still passes once full
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	b := l.buckets[name]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.gc(now, rate, capacity)
		}
		b = &bucket{tokens: capacity, last: now}
		l.buckets[name] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * rate
	if b.tokens > capacity {
		b.tokens = capacity
	}
	b.last = now
	if b.tokens < n {
		return time.Duration((n - b.tokens) / rate * float64(time.Second))
	}
	b.tokens -= n
	return 0
}

// Give returns n taken from name (when a later check refused the batch).
func (l *Limiter) Give(name string, n float64) {
	l.mu.Lock()
	if b := l.buckets[name]; b != nil {
		b.tokens += n
	}
	l.mu.Unlock()
}

func (l *Limiter) gc(now time.Time, rate, capacity float64) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*rate >= capacity {
			delete(l.buckets, k)
		}
	}
}
