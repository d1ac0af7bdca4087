package proxy

import (
	"bytes"
	"time"

	"github.com/agentproxy/agentproxy/fencing"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
)

// Plain writes get the domain's safety (policy.Writes): a write to a key a
// lock may guard runs as the fenced-write script, which checks the lock
// atomically with the write (and applies the TTL policy); a write that no
// lock can guard but that has TTL rules is followed, in the same upstream
// batch, by the PEXPIREs that apply them (their replies are not the
// client's); a successful write to an evented kind emits an event per key
// once Redis acknowledged it. A write none of this applies to is forwarded
// as sent: planning costs it a kind lookup and, when its workspace holds a
// lock, a map read per resource of its key.

// planWrite plans command c, which passed policy and writes s.acc.Written.
func (s *session) planWrite(c *command, p *policy.Policy, full bool) {
	s.wplan = fencing.Write{Args: c.Args, Raw: c.Raw, Keys: s.acc.Keys, Written: s.acc.Written, WS: s.ident.Workspace,
		Actor: s.ident.Name(), Proto: s.proto, Held: s.dreq.Locks, Full: full,
		Blocking: c.cmd.Has(keyspace.Blocking) || c.cmd.Has(keyspace.BlockingIfArg)}
	c.evLo = len(s.evKeys)
	var pl fencing.Plan
	s.rewrite, s.evKeys, pl = fencing.PlanWrite(s.rewrite, s.evKeys, &s.wplan, p, s.srv.locks, &s.wscratch)
	if s.srv.opts.OnWrite == nil {
		s.evKeys = s.evKeys[:c.evLo]
	}
	c.evHi = len(s.evKeys)
	if pl.Deny != "" {
		c.deny = pl.Deny
		return
	}
	if pl.Raw != nil {
		c.Raw, c.off, c.hidden, c.wrap = pl.Raw, -1, pl.Hidden, pl.Wrap
	}
	s.planned = s.planned || pl.Raw != nil || c.evHi > c.evLo
}

// replies is how many replies cmds get from Redis (hidden ones included).
func replies(cmds []command) int {
	n := 0
	for k := range cmds {
		n += 1 + cmds[k].hidden
	}
	return n
}

// afterWrites post-processes the replies of planned commands cmds that
// start at out[start:], with s.ends their end offsets (err: the call
// failed after them): the replies of the hidden TTL commands are cut, a
// wrapped write that met NOSCRIPT is run again with its script's source,
// successful evented writes emit their events. Afterwards s.ends holds one
// end per command answered.
func (s *session) afterWrites(cmds []command, start int, err error) {
	if s.quit {
		return
	}
	prev, w, e, answered := start, start, 0, 0
	for k := range cmds {
		c := &cmds[k]
		n := 1 + c.hidden
		if e+n > len(s.ends) {
			break
		}
		reply := s.out[prev:s.ends[e]]
		if c.wrap && bytes.HasPrefix(reply, []byte("-NOSCRIPT")) {
			reply = s.rerunFull(c)
		}
		if c.evHi > c.evLo && len(reply) > 0 && reply[0] != '-' {
			s.emitWrites(c)
		}
		w += copy(s.out[w:], reply)
		s.ends[answered] = w
		prev, e = s.ends[e+n-1], e+n
		answered++
	}
	s.ends = s.ends[:answered]
	if err == nil {
		s.out = s.out[:w]
		return
	}
	// The rest failed: one error per command, however many replies each
	// would have had.
	s.out = s.out[:w]
	msg := wire.CallError(err)
	for k := answered; k < len(cmds); k++ {
		s.out = wire.AppendError(s.out, msg)
	}
}

// rerunFull sends a wrapped write again as EVAL (Redis had lost the
// script) and returns its reply.
func (s *session) rerunFull(c *command) []byte {
	req := fencing.FullForm(c.Raw)
	conn := s.srv.pool.Shared(s.proto)
	if req == nil || conn == nil {
		return []byte("-" + wire.ErrTryAgainNotSent + "\r\n")
	}
	mark, saved := len(s.out), s.ends
	s.ends = nil
	s.doPayload(conn, req, 1, 0, false)
	s.ends = saved
	reply := append([]byte(nil), s.out[mark:]...)
	s.out = s.out[:mark]
	return reply
}

// emitWrites hands the keys an evented command wrote to the emitter.
func (s *session) emitWrites(c *command) {
	p := s.srv.policy.Load()
	ws := s.ident.Workspace
	n := len(p.Grammar.WorkspacePrefix(ws))
	del := c.sub.Name == "del" || c.sub.Name == "unlink" || c.sub.Name == "getdel"
	now := time.Now().UnixMilli()
	for _, i := range s.evKeys[c.evLo:c.evHi] {
		key := c.Args[i]
		_, kind := p.Grammar.KeyKind(key, ws)
		if kind < 0 {
			continue
		}
		s.srv.opts.OnWrite(Write{WS: ws, Actor: s.ident.Name(), Cmd: c.sub.Name, Kind: p.Grammar.KindNames()[kind],
			Resource: string(key[n:]), Delete: del, TS: now})
	}
}

// Write is a key written by an acknowledged plain write (Options.OnWrite).
type Write struct {
	WS, Actor, Cmd, Kind, Resource string
	Delete                         bool
	TS                             int64
}
