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

// Block registers the blocking write args (written: its written keys) of
// the fenced kinds under p, before it is sent; kick unblocks it in Redis.
// It returns nil when it writes no key of a fenced kind, and the refusal
// when a lock (or an acquire in flight) already guards one.
func (r *Registry) Block(p *policy.Policy, args [][]byte, written []int, kick func()) (*Blocked, string) {
	var b *Blocked
	for _, i := range written {
		ws, kind, n := p.Grammar.Split(args[i])
		if kind < 0 || !p.Writes.Fence[kind] {
			continue
		}
		if b == nil {
			b = &Blocked{r: r, kick: kick}
		}
		if res, locked := r.register(b, blockedKey{string(ws), string(args[i][n:])}); locked {
			b.Done()
			return nil, "LOCKED resource '" + res + "' is locked: a blocking command cannot write what a lock guards; retry after the lock ends"
		}
	}
	return b, ""
}

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
	for i := 0; i <= len(k.rest); i++ {
		if i == len(k.rest) || k.rest[i] == ':' {
			if e, ok := m[k.rest[:i]]; ok && e.live(now) {
				return k.rest[:i], true
			}
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
	sh.mu.Lock()
	var list []*Blocked
	if len(sh.waiting) > 0 {
		list = kickLocked(sh, ws, resource, nil)
	}
	sh.mu.Unlock()
	for _, b := range list {
		b.kick()
	}
}

// kickLocked collects the blocked writes of ws that a lock on resource
// guards (sh locked); the caller kicks them once it has unlocked.
func kickLocked(sh *shard, ws, resource string, out []*Blocked) []*Blocked {
	for _, b := range sh.waiting[ws] {
		for _, k := range b.keys {
			if k.ws == ws && guards(resource, k.rest) && b.kicked.CompareAndSwap(nil, &resource) {
				out = append(out, b)
				break
			}
		}
	}
	return out
}

// BlockOn registers the blocking command args (table entry info), about to
// be sent on conn, under p; a shared connection of pool carries the CLIENT
// UNBLOCK that kicks it. See Block.
func (r *Registry) BlockOn(p *policy.Policy, info *keyspace.Command, args [][]byte, conn *upstream.Conn, pool *upstream.Pool) (*Blocked, string) {
	var acc keyspace.Access
	if !p.Writes.Any || p.Mode == policy.Off || keyspace.Extract(info, args, &acc) != nil {
		return nil, ""
	}
	written := acc.Written
	fenced := false
	for _, i := range written {
		_, kind, _ := p.Grammar.Split(args[i])
		fenced = fenced || kind >= 0 && p.Writes.Fence[kind]
	}
	if !fenced {
		return nil, ""
	}
	id, err := conn.RedisID()
	if err != nil {
		return nil, "TRYAGAIN the blocking command was not sent: its connection could not be registered for the lock check"
	}
	return r.Block(p, args, written, func() {
		if ctl := pool.Shared(2); ctl != nil {
			ctl.Query("CLIENT", "UNBLOCK", id, "ERROR")
		}
	})
}
