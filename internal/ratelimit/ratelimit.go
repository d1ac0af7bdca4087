// Package ratelimit is token buckets by name (a user, a workspace), two per
// name: one for commands, one for bytes. A rate is per second; a bucket
// holds burst seconds at its rate. A caller takes an amount from both;
// past either bucket it is told how long to wait, and nothing is taken.
package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// Limiter holds the buckets of one dimension (users or workspaces). The
// zero value is ready. Rate 0 means no limit.
type Limiter struct {
	once   sync.Once
	seed   maphash.Seed
	shards [16]shard
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*pair
}

type pair struct {
	tokens [2]float64
	last   time.Time
}

// maxBuckets bounds memory per shard: past it, full (idle) buckets are
// dropped.
const maxBuckets = 8192

// Wait says how long until a Take would pass (0: it passed) and whether
// the first bucket (commands) is the one short.
type Wait struct {
	Wait  time.Duration
	First bool
}

func (l *Limiter) shard(name string) *shard {
	l.once.Do(func() { l.seed = maphash.MakeSeed() })
	return &l.shards[maphash.String(l.seed, name)%uint64(len(l.shards))]
}

func capacity(n, rate float64, burst time.Duration) float64 {
	c := rate * burst.Seconds()
	if c < n {
		c = n // one batch larger than the burst still passes once full
	}
	return c
}

// Take2 takes n1 from name's first bucket (rate1) and n2 from its second
// (rate2), both holding burst at their rate, or nothing.
func (l *Limiter) Take2(name string, n1, rate1, n2, rate2 float64, burst time.Duration, now time.Time) Wait {
	if rate1 <= 0 && rate2 <= 0 {
		return Wait{}
	}
	n, rate := [2]float64{n1, n2}, [2]float64{rate1, rate2}
	sh := l.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.buckets == nil {
		sh.buckets = map[string]*pair{}
	}
	b := sh.buckets[name]
	if b == nil {
		if len(sh.buckets) >= maxBuckets {
			sh.gc(now, rate, burst)
		}
		b = &pair{last: now}
		for i := range b.tokens {
			b.tokens[i] = capacity(n[i], rate[i], burst)
		}
		sh.buckets[name] = b
	}
	elapsed := now.Sub(b.last).Seconds()
	if elapsed < 0 {
		elapsed = 0
	}
	b.last = now
	var w Wait
	for i := range b.tokens {
		if rate[i] <= 0 {
			continue
		}
		b.tokens[i] += elapsed * rate[i]
		if c := capacity(n[i], rate[i], burst); b.tokens[i] > c {
			b.tokens[i] = c
		}
		if b.tokens[i] < n[i] {
			if d := time.Duration((n[i] - b.tokens[i]) / rate[i] * float64(time.Second)); d > w.Wait {
				w = Wait{Wait: d, First: i == 0}
			}
		}
	}
	if w.Wait > 0 {
		return w
	}
	for i := range b.tokens {
		if rate[i] > 0 {
			b.tokens[i] -= n[i]
		}
	}
	return Wait{}
}

// Take takes n from name's first bucket of the given rate.
func (l *Limiter) Take(name string, n, rate float64, burst time.Duration, now time.Time) time.Duration {
	return l.Take2(name, n, rate, 0, 0, burst, now).Wait
}

// Give2 returns what a Take2 took (when a later check refused the
// command).
func (l *Limiter) Give2(name string, n1, rate1, n2, rate2 float64) {
	sh := l.shard(name)
	sh.mu.Lock()
	if b := sh.buckets[name]; b != nil {
		if rate1 > 0 {
			b.tokens[0] += n1
		}
		if rate2 > 0 {
			b.tokens[1] += n2
		}
	}
	sh.mu.Unlock()
}

// Give returns n taken from name's first bucket.
func (l *Limiter) Give(name string, n float64) { l.Give2(name, n, 1, 0, 0) }

func (sh *shard) gc(now time.Time, rate [2]float64, burst time.Duration) {
	for k, b := range sh.buckets {
		full := true
		for i := range b.tokens {
			if rate[i] > 0 && b.tokens[i]+now.Sub(b.last).Seconds()*rate[i] < rate[i]*burst.Seconds() {
				full = false
			}
		}
		if full {
			delete(sh.buckets, k)
		}
	}
	// Still crowded (many names busy at once): drop arbitrary ones, so
	// that inserting stays cheap; a dropped bucket starts full again.
	for k := range sh.buckets {
		if len(sh.buckets) < maxBuckets*3/4 {
			break
		}
		delete(sh.buckets, k)
	}
}
