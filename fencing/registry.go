// Package fencing guards plain writes with the domain's locks (SPEC §6).
// A lock on resource R guards the keys <prefix>:{ws}:R and
// <prefix>:{ws}:R:*; a plain write to a key of a guarded kind is checked,
// atomically with it, by the fenced-write script. Checking every write in
// Redis would cost a script per write, so the proxy keeps a Registry of the
// resources that may be locked: a write whose key no lock can guard keeps
// the plain fast path, and the cost of the lookup when a workspace holds no
// lock is one map read.
//
// The registry learns locks from this proxy's own lock commands (at once)
// and from the lock events every proxy's scripts publish on the workspaces'
// event channels (a pattern subscription), after loading the locks that
// exist when it (re)connects. Until it has loaded them, and whenever its
// subscription is down, every guarded write takes the script. Entries stay
// a margin past their expiry (clock skew): a false "may be locked" costs a
// script; a false "unlocked" would let a write past a lock, and is possible
// only in the moment between another proxy's LOCK.ACQUIRE and its event
// reaching this one (Fencing.Strict closes it).
package fencing

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentproxy/agentproxy/policy"
)

// Margin is how long past its expiry a lock is still assumed possible.
const Margin = 2 * time.Second

// InflightMax bounds how long an acquire in flight (sent, its reply not yet
// seen) keeps its resource "may be locked" when its end is never reported
// (a transaction left open); past it the lock events still tell.
const InflightMax = time.Minute

// Registry is safe for concurrent use. Its entries live in shards by
// workspace, each behind a read-write lock, so a change costs one map write
// however many locks exist; a read takes no lock while nothing is locked.
type Registry struct {
	shards [shardCount]shard
	n      atomic.Int64 // entries in all shards
	synced atomic.Bool
	now    func() time.Time
}

const shardCount = 32

// shard maps workspace → resource → what is known of its lock.
type shard struct {
	mu      sync.RWMutex
	m       map[string]map[string]entry
	waiting map[string][]*Blocked // workspace → blocking writes waiting in Redis
}

// entry is one resource: the lock's expiry (unix ms, margin included; 0:
// not known to be locked), the newest fencing token heard of (0: unknown),
// and the acquires in flight for it since when.
type entry struct {
	exp      int64
	tok      int64
	inflight int32
	since    int64
}

// shardOf picks ws's shard (FNV-1a), allocating nothing.
func (r *Registry) shardOf(ws []byte) *shard {
	h := uint32(2166136261)
	for _, c := range ws {
		h = (h ^ uint32(c)) * 16777619
	}
	return &r.shards[h%shardCount]
}

func (e entry) live(now int64) bool {
	return e.exp >= now || (e.inflight > 0 && now < e.since+InflightMax.Milliseconds())
}

// NewRegistry returns a registry that is not synced yet.
func NewRegistry() *Registry {
	r := &Registry{now: time.Now}
	for i := range r.shards {
		r.shards[i].m = map[string]map[string]entry{}
	}
	return r
}

// Synced reports whether the registry knows every lock (loaded and
// subscribed).
func (r *Registry) Synced() bool { return r.synced.Load() }

// SetSynced says the registry is (or no longer is) complete.
func (r *Registry) SetSynced(ok bool) { r.synced.Store(ok) }

// Acquiring records that an acquire of resource is about to be sent: until
// its Done, writes to what it guards take the script, so none slips in
// between the lock taking effect in Redis and its reply reaching here.
func (r *Registry) Acquiring(ws, resource string) {
	now := r.now().UnixMilli()
	r.change(ws, resource, func(e entry) entry {
		e.inflight++
		e.since = now
		return e
	})
	r.kick(ws, resource)
}

// Done ends an Acquiring (after Acquired, if the acquire took the lock).
func (r *Registry) Done(ws, resource string) {
	r.change(ws, resource, func(e entry) entry {
		if e.inflight > 0 {
			e.inflight--
		}
		return e
	})
}

// Acquired records that resource of ws is locked with token (0: unknown)
// until expiresAt (unix ms; 0: unknown, assumed for a minute). News of an
// older token than one already heard of changes nothing: the reports of
// different sessions and of the lock events arrive in any order.
func (r *Registry) Acquired(ws, resource string, token, expiresAt int64) {
	if expiresAt <= 0 {
		expiresAt = r.now().Add(time.Minute).UnixMilli()
	}
	exp := expiresAt + Margin.Milliseconds()
	r.change(ws, resource, func(e entry) entry {
		switch {
		case token > e.tok:
			e.tok, e.exp = token, exp
		case token == e.tok || token == 0:
			e.exp = max(e.exp, exp)
		}
		return e
	})
	r.kick(ws, resource) // taken through another proxy: as soon as heard of
}

// Released records that the lock with token on resource of ws is released.
// A release of an older token than the newest heard of is stale (that lock
// was taken over since) and changes nothing.
func (r *Registry) Released(ws, resource string, token int64) {
	r.change(ws, resource, func(e entry) entry {
		if token >= e.tok {
			e.exp, e.tok = 0, token
		}
		return e
	})
}

// change applies f to one resource's entry, dropping entries left with
// nothing to say.
func (r *Registry) change(ws, resource string, f func(entry) entry) {
	sh := r.shardOf([]byte(ws))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	res := sh.m[ws]
	old, had := res[resource]
	e := f(old)
	switch {
	case e.exp == 0 && e.inflight == 0:
		if had {
			delete(res, resource)
			r.n.Add(-1)
			if len(res) == 0 {
				delete(sh.m, ws)
			}
		}
	default:
		if res == nil {
			res = map[string]entry{}
			sh.m[ws] = res
		}
		res[resource] = e
		if !had {
			r.n.Add(1)
		}
	}
}

// Purge drops the locks past their expiry and in-flight marks past
// InflightMax.
func (r *Registry) Purge() {
	now := r.now().UnixMilli()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for ws, res := range sh.m {
			for k, e := range res {
				if !e.live(now) {
					delete(res, k)
					r.n.Add(-1)
				}
			}
			if len(res) == 0 {
				delete(sh.m, ws)
			}
		}
		sh.mu.Unlock()
	}
}

// Reset forgets every lock (before reloading them), keeping the acquires
// in flight.
func (r *Registry) Reset() {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for ws, res := range sh.m {
			for k, e := range res {
				if e.inflight > 0 {
					res[k] = entry{inflight: e.inflight, since: e.since}
				} else {
					delete(res, k)
					r.n.Add(-1)
				}
			}
			if len(res) == 0 {
				delete(sh.m, ws)
			}
		}
		sh.mu.Unlock()
	}
}

// MayBeLocked reports whether a lock may guard the key whose part after
// "<prefix>:{ws}:" is rest (e.g. "kv:doc:part1", guarded by the resources
// "kv", "kv:doc" and "kv:doc:part1"). It allocates nothing.
func (r *Registry) MayBeLocked(ws, rest []byte) bool {
	if !r.synced.Load() {
		return true
	}
	if r.n.Load() == 0 {
		return false
	}
	sh := r.shardOf(ws)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	res := sh.m[string(ws)]
	if len(res) == 0 {
		return false
	}
	now := r.now().UnixMilli()
	for i := nextGuard(rest, 0); i >= 0; i = nextGuard(rest, i+1) {
		if e, ok := res[string(rest[:i])]; ok && e.live(now) {
			return true
		}
	}
	return false
}

// nextGuard is the end of the next prefix of rest, from from on, that names
// a resource guarding it (it ends at a ':' or at the end: "kv:a:b" → kv,
// kv:a, kv:a:b), or -1 past the last.
func nextGuard[T ~string | ~[]byte](rest T, from int) int {
	for i := from; i < len(rest); i++ {
		if rest[i] == ':' {
			return i
		}
	}
	if from <= len(rest) {
		return len(rest)
	}
	return -1
}

// Idle reports whether no write under rules w can need a plan now: its only
// rules are fenced kinds, the registry is synced and knows no lock (nor
// acquire in flight), and the connection holds no token (held).
func (r *Registry) Idle(w *policy.Writes, held map[string]int64) bool {
	return w.OnlyFence && len(held) == 0 && r.n.Load() == 0 && r.synced.Load()
}

// Count is the number of resources known to be (possibly) locked.
func (r *Registry) Count() int { return int(r.n.Load()) }
