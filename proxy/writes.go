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

// planWrite plans command c, which passed policy and writes s.acc.Written,
// queued in MULTI (multi) or sent down a tunnel.
func (s *session) planWrite(c *command, p *policy.Policy, multi, tunnel bool) {
	if !multi && !s.slowAhead && s.srv.locks.Idle(p.Writes, s.dreq.Locks) {
		return // the fast path: no lock anywhere, nothing else to apply
	}
	s.wplan = fencing.Write{Args: c.Args, Raw: c.Raw, Keys: s.acc.Keys, Written: s.acc.Written, WS: s.ident.Workspace,
		Actor: s.ident.Name(), Proto: s.proto, Held: s.dreq.Locks, Full: multi || tunnel,
		Blocking: c.cmd.Has(keyspace.Blocking) || c.cmd.Has(keyspace.BlockingIfArg), Check: multi || s.slowAhead}
	c.evLo = len(s.evKeys)
	var pl fencing.Plan
	s.rewrite, s.evKeys, pl = fencing.PlanWrite(s.rewrite, s.evKeys, &s.wplan, p, s.srv.locks, &s.wscratch)
	if s.srv.opts.OnWrite == nil || tunnel {
		s.evKeys = s.evKeys[:c.evLo]
	}
	c.evHi = len(s.evKeys)
	if multi && c.evHi > c.evLo {
		// Queued, it has not run: its events wait for EXEC's reply.
		c.txEv = s.writesOf(c, p)
		s.evKeys, c.evHi = s.evKeys[:c.evLo], c.evLo
	}
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
	// The replies are compacted in place (what is kept never moves
	// forward), unless a write must be run again: its new reply may be
	// longer than the one it replaces, so the replies are read from a copy.
	src, base := s.out, 0
	if s.rerunNeeded(cmds, start) {
		src, base = append([]byte(nil), s.out[start:]...), start
	}
	out := s.out[:start]
	prev, e, answered := start, 0, 0
	for k := range cmds {
		c := &cmds[k]
		n := 1 + c.hidden
		if e+n > len(s.ends) {
			break
		}
		reply := src[prev-base : s.ends[e]-base]
		next := s.ends[e+n-1]
		mark := len(out)
		if c.wrap && isNoScript(reply) {
			s.out = out
			s.rerunFull(c)
			out = s.out
		} else {
			out = append(out, reply...)
		}
		if c.wrap {
			s.srv.Stats.RefusedReply(s.id, out[mark:])
		}
		if c.evHi > c.evLo && !fencing.WroteNothing(c.sub.Name, c.Args, out[mark:]) {
			s.emitWrites(c)
		}
		s.ends[answered] = len(out)
		prev, e = next, e+n
		answered++
	}
	s.out = out
	s.ends = s.ends[:answered]
	if err == nil {
		return
	}
	// The rest failed: one error per command, however many replies each
	// would have had.
	msg := wire.CallError(err)
	for k := answered; k < len(cmds); k++ {
		s.out = wire.AppendError(s.out, msg)
	}
}

func isNoScript(reply []byte) bool { return bytes.HasPrefix(reply, []byte("-NOSCRIPT")) }

// rerunNeeded reports whether a wrapped write among cmds met NOSCRIPT.
func (s *session) rerunNeeded(cmds []command, start int) bool {
	prev, e := start, 0
	for k := range cmds {
		n := 1 + cmds[k].hidden
		if e+n > len(s.ends) {
			return false
		}
		if cmds[k].wrap && isNoScript(s.out[prev:s.ends[e]]) {
			return true
		}
		prev, e = s.ends[e+n-1], e+n
	}
	return false
}

// rerunFull sends a wrapped write again as EVAL (Redis had lost the
// script) and appends its reply to out.
func (s *session) rerunFull(c *command) {
	req := fencing.FullForm(c.Raw)
	conn := s.pinned // its database, its transaction state
	if conn == nil {
		conn = s.node().Shared(s.proto)
	}
	if req == nil || conn == nil {
		s.out = wire.AppendError(s.out, wire.ErrTryAgainNotSent)
		return
	}
	saved := s.ends
	s.ends = nil
	s.doPayload(conn, req, 1, 0, false)
	s.ends = saved
}

// emitWrites hands the keys an evented command wrote to the emitter.
func (s *session) emitWrites(c *command) {
	g, now := s.srv.policy.Load().Grammar, time.Now().UnixMilli()
	for _, i := range s.evKeys[c.evLo:c.evHi] {
		if w, ok := fencing.EventOf(g, c.sub.Name, s.ident.Name(), c.Args[i], now); ok {
			s.srv.opts.OnWrite(w)
		}
	}
}

// writesOf lists the events of c's evented keys.
func (s *session) writesOf(c *command, p *policy.Policy) []fencing.Written {
	var ws []fencing.Written
	for _, i := range s.evKeys[c.evLo:c.evHi] {
		if w, ok := fencing.EventOf(p.Grammar, c.sub.Name, s.ident.Name(), c.Args[i], 0); ok {
			ws = append(ws, w)
		}
	}
	return ws
}
