package fencing

import (
	"bytes"
	"strings"
	"sync/atomic"

	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
	"github.com/agentproxy/agentproxy/upstream"
)

// A blocking write (BLPOP, BLMOVE, XREADGROUP ... BLOCK, ...) cannot run in
// the fenced-write script, so it is checked when it is sent; but it writes
// when it unblocks, which may be after a lock was taken on what it waits
// for. So that it cannot take the holder's data, the blocking writes this
// proxy has waiting in Redis are registered with the keys of fenced kinds
// they write: an acquire of a lock that guards one of them first unblocks
// it (CLIENT UNBLOCK ... ERROR, which does nothing to a command Redis has
// already served), and its client gets LOCKED.

// Blocked is one blocking write waiting in Redis.
type Blocked struct {
	r      *Registry
	keys   []blockedKey
	kick   func() // unblocks it in Redis
	kicked atomic.Pointer[string]
}

type blockedKey struct{ ws, rest string }

// register adds b as waiting on k, unless a live lock (or an acquire in
// flight) guards k: then it returns that resource.
func (r *Registry) register(b *Blocked, k blockedKey) (string, bool) {
	sh := r.shardOf([]byte(k.ws))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if res, locked := r.guardingLocked(sh, k); locked {
		return res, true
	}
	if sh.waiting == nil {
		sh.waiting = map[string][]*Blocked{}
	}
	sh.waiting[k.ws] = append(sh.waiting[k.ws], b)
	b.keys = append(b.keys, k)
	return "", false
}

// guardingLocked is the live resource that guards k, if any (sh locked).
func (r *Registry) guardingLocked(sh *shard, k blockedKey) (string, bool) {
	now, m := r.now().UnixMilli(), sh.m[k.ws]
	for i := nextGuard(k.rest, 0); i >= 0; i = nextGuard(k.rest, i+1) {
		if e, ok := m[k.rest[:i]]; ok && e.live(now) {
			return k.rest[:i], true
		}
	}
	return "", false
}

// guards reports whether a lock on resource guards the key part rest.
func guards(resource, rest string) bool {
	return rest == resource || strings.HasPrefix(rest, resource) && rest[len(resource)] == ':'
}

// Done unregisters b (nil: nothing to do) once its command answered.
func (b *Blocked) Done() {
	if b == nil {
		return
	}
	for _, k := range b.keys {
		sh := b.r.shardOf([]byte(k.ws))
		sh.mu.Lock()
		list := sh.waiting[k.ws]
		for i, o := range list {
			if o == b {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(sh.waiting, k.ws)
		} else {
			sh.waiting[k.ws] = list
		}
		sh.mu.Unlock()
	}
	b.keys = nil
}

// Kicked is the resource whose lock unblocked b, or "".
func (b *Blocked) Kicked() string {
	if b == nil {
		return ""
	}
	if r := b.kicked.Load(); r != nil {
		return *r
	}
	return ""
}

// FixReply turns the reply of b's command, out[mark:], into LOCKED when a
// lock unblocked it (Redis answered UNBLOCKED: it did not run).
func (b *Blocked) FixReply(out []byte, mark int) []byte {
	if res := b.Kicked(); res != "" && bytes.HasPrefix(out[mark:], []byte("-UNBLOCKED")) {
		return wire.AppendError(out[:mark], "LOCKED resource '"+res+"' was locked while this command waited; it did not run: retry after the lock ends")
	}
	return out
}

// kick unblocks the blocked writes of ws that a lock on resource guards,
// and returns once Redis has.
func (r *Registry) kick(ws, resource string) {
	sh := r.shardOf([]byte(ws))
	var list []*Blocked
	sh.mu.Lock()
	for _, b := range sh.waiting[ws] {
		for _, k := range b.keys {
			if k.ws == ws && guards(resource, k.rest) && b.kicked.CompareAndSwap(nil, &resource) {
				list = append(list, b)
				break
			}
		}
	}
	sh.mu.Unlock()
	for _, b := range list {
		b.kick()
	}
}

// BlockOn registers the blocking command args (table entry info), about to
// be sent on conn, under p, with the keys of fenced kinds it writes; a
// shared connection of pool carries the CLIENT UNBLOCK that kicks it. It
// returns nil when it writes no such key, and the refusal when a lock (or
// an acquire in flight) already guards one.
func (r *Registry) BlockOn(p *policy.Policy, info *keyspace.Command, args [][]byte, conn *upstream.Conn, pool *upstream.Pool) (*Blocked, string) {
	var acc keyspace.Access
	if !p.Writes.Any || p.Mode == policy.Off || keyspace.Extract(info, args, &acc) != nil {
		return nil, ""
	}
	var b *Blocked
	for _, i := range acc.Written {
		ws, kind, n := p.Grammar.Split(args[i])
		if kind < 0 || !p.Writes.Fence[kind] {
			continue
		}
		if b == nil {
			// Its id is asked now: once it blocks, the question would
			// queue behind it.
			id, err := conn.RedisID()
			if err != nil {
				return nil, "TRYAGAIN the blocking command was not sent: its connection could not be registered for the lock check"
			}
			b = &Blocked{r: r, kick: func() {
				if ctl := pool.Shared(2); ctl != nil {
					ctl.Query("CLIENT", "UNBLOCK", id, "ERROR")
				}
			}}
		}
		if res, locked := r.register(b, blockedKey{string(ws), string(args[i][n:])}); locked {
			b.Done()
			return nil, "LOCKED resource '" + res + "' is locked: a blocking command cannot write what a lock guards; retry after the lock ends"
		}
	}
	return b, ""
}
