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
)

// Margin is how long past its expiry a lock is still assumed possible.
const Margin = 2 * time.Second

// Registry is safe for concurrent use; readers take no lock.
type Registry struct {
	snap   atomic.Pointer[locks] // immutable; replaced on every change
	mu     sync.Mutex            // serialises writers
	synced atomic.Bool
	now    func() time.Time
}

// locks maps workspace → resource → expiry (unix ms, margin included).
type locks map[string]map[string]int64

// NewRegistry returns a registry that is not synced yet.
func NewRegistry() *Registry {
	r := &Registry{now: time.Now}
	r.snap.Store(&locks{})
	return r
}

// Synced reports whether the registry knows every lock (loaded and
// subscribed).
func (r *Registry) Synced() bool { return r.synced.Load() }

// SetSynced says the registry is (or no longer is) complete.
func (r *Registry) SetSynced(ok bool) { r.synced.Store(ok) }

// Acquired records that resource of ws is locked until expiresAt (unix ms;
// 0: unknown, assumed for a minute).
func (r *Registry) Acquired(ws, resource string, expiresAt int64) {
	if expiresAt <= 0 {
		expiresAt = r.now().Add(time.Minute).UnixMilli()
	}
	r.update(func(m locks) {
		res := m[ws]
		if res == nil {
			res = map[string]int64{}
			m[ws] = res
		}
		res[resource] = expiresAt + Margin.Milliseconds()
	})
}

// Released records that resource of ws is no longer locked.
func (r *Registry) Released(ws, resource string) {
	r.update(func(m locks) {
		if res := m[ws]; res != nil {
			delete(res, resource)
			if len(res) == 0 {
				delete(m, ws)
			}
		}
	})
}

// Purge drops the locks past their expiry.
func (r *Registry) Purge() {
	now := r.now().UnixMilli()
	r.update(func(m locks) {
		for ws, res := range m {
			for k, exp := range res {
				if exp < now {
					delete(res, k)
				}
			}
			if len(res) == 0 {
				delete(m, ws)
			}
		}
	})
}

// Reset forgets every lock (before reloading them).
func (r *Registry) Reset() {
	r.mu.Lock()
	r.snap.Store(&locks{})
	r.mu.Unlock()
}

// update applies f to a copy of the snapshot and publishes it.
func (r *Registry) update(f func(locks)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.snap.Load()
	m := make(locks, len(old)+1)
	for ws, res := range old {
		c := make(map[string]int64, len(res))
		for k, v := range res {
			c[k] = v
		}
		m[ws] = c
	}
	f(m)
	r.snap.Store(&m)
}

// MayBeLocked reports whether a lock may guard the key whose part after
// "<prefix>:{ws}:" is rest (e.g. "kv:doc:part1", guarded by the resources
// "kv", "kv:doc" and "kv:doc:part1"). It allocates nothing.
func (r *Registry) MayBeLocked(ws string, rest []byte) bool {
	if !r.synced.Load() {
		return true
	}
	res := (*r.snap.Load())[ws]
	if len(res) == 0 {
		return false
	}
	now := r.now().UnixMilli()
	for i := 0; i <= len(rest); i++ {
		if i == len(rest) || rest[i] == ':' {
			if exp, ok := res[string(rest[:i])]; ok && exp >= now {
				return true
			}
		}
	}
	return false
}

// Count is the number of resources known to be (possibly) locked.
func (r *Registry) Count() int {
	n := 0
	for _, res := range *r.snap.Load() {
		n += len(res)
	}
	return n
}
