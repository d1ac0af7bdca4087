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

// InflightMax bounds how long an acquire in flight (sent, its reply not yet
// seen) keeps its resource "may be locked" when its end is never reported
// (a transaction left open); past it the lock events still tell.
const InflightMax = time.Minute

// Registry is safe for concurrent use; readers take no lock.
type Registry struct {
	snap   atomic.Pointer[locks] // immutable; replaced on every change
	mu     sync.Mutex            // serialises writers
	synced atomic.Bool
	now    func() time.Time
}

// locks maps workspace → resource → what is known of its lock. A
// workspace's map is immutable once published; a change copies that
// workspace's map and the outer one, never the others.
type locks map[string]map[string]entry

// entry is one resource: the lock's expiry (unix ms, margin included; 0:
// not known to be locked), the newest fencing token heard of (0: unknown),
// and the acquires in flight for it since when.
type entry struct {
	exp      int64
	tok      int64
	inflight int32
	since    int64
}

func (e entry) live(now int64) bool {
	return e.exp >= now || (e.inflight > 0 && now < e.since+InflightMax.Milliseconds())
}

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
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.snap.Load()
	m := make(locks, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	res := make(map[string]entry, len(old[ws])+1)
	for k, v := range old[ws] {
		res[k] = v
	}
	e := f(res[resource])
	if e.exp == 0 && e.inflight == 0 {
		delete(res, resource)
	} else {
		res[resource] = e
	}
	if len(res) == 0 {
		delete(m, ws)
	} else {
		m[ws] = res
	}
	r.snap.Store(&m)
}

// Purge drops the locks past their expiry and in-flight marks past
// InflightMax.
func (r *Registry) Purge() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().UnixMilli()
	old := *r.snap.Load()
	m := make(locks, len(old))
	for ws, res := range old {
		c := make(map[string]entry, len(res))
		for k, e := range res {
			if e.live(now) {
				c[k] = e
			}
		}
		if len(c) > 0 {
			m[ws] = c
		}
	}
	r.snap.Store(&m)
}

// Reset forgets every lock (before reloading them), keeping the acquires
// in flight.
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := locks{}
	for ws, res := range *r.snap.Load() {
		for k, e := range res {
			if e.inflight > 0 {
				if m[ws] == nil {
					m[ws] = map[string]entry{}
				}
				m[ws][k] = entry{inflight: e.inflight, since: e.since}
			}
		}
	}
	r.snap.Store(&m)
}

// MayBeLocked reports whether a lock may guard the key whose part after
// "<prefix>:{ws}:" is rest (e.g. "kv:doc:part1", guarded by the resources
// "kv", "kv:doc" and "kv:doc:part1"). It allocates nothing.
func (r *Registry) MayBeLocked(ws, rest []byte) bool {
	if !r.synced.Load() {
		return true
	}
	res := (*r.snap.Load())[string(ws)]
	if len(res) == 0 {
		return false
	}
	now := r.now().UnixMilli()
	for i := 0; i <= len(rest); i++ {
		if i == len(rest) || rest[i] == ':' {
			if e, ok := res[string(rest[:i])]; ok && e.live(now) {
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
