package proxy

import (
	"time"

	"github.com/tidwall/redcon"
	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
)

// checkBatch runs access control over a batch before anything is sent:
// refused commands get their error in their place and are not forwarded.
// SCAN without a confined MATCH is rewritten to stay in the workspace.
func (s *session) checkBatch(cmds []command) {
	p := s.srv.policy.Load()
	s.rewrite = s.rewrite[:0]
	s.planned, s.evKeys, s.slowAhead = false, s.evKeys[:0], false
	// Follow MULTI through the batch: what may be queued differs.
	multi := s.inMulti
	admin := s.ident.Role == policy.RoleAdmin
	for i := range cmds {
		// What follows a command that may take time runs later than
		// it is planned.
		s.slowAhead = s.slowAhead || i > 0 && domain.MayTakeTime(cmds[i-1].cmd)
		c := &cmds[i]
		c.deny, c.hidden, c.wrap, c.evLo, c.evHi, c.txEv = "", 0, false, 0, 0, nil
		c.cmd = keyspace.Lookup(c.Args[0])
		c.sub = c.cmd.Sub(c.Args)
		s.srv.Stats.Families.Add(s.id, int(c.sub.Family()), 1)
		lc := localOf(c.cmd)
		if multi {
			switch {
			case isTxEnd(c.cmd):
				multi = false
			case lc != nil && lc.immediate:
				multi = false
				continue // QUIT, RESET: answered at once, as Redis does
			}
		} else if c.cmd == cmdMulti && len(c.Args) == 1 {
			multi = true
		}
		if !s.authed {
			switch {
			case c.cmd == cmdAuth, c.cmd == cmdHello:
				s.checkLater(cmds[i+1:])
				return
			case c.cmd != cmdQuit:
				c.deny = s.refused(wire.ErrNoAuthRequired)
			}
			continue
		}
		if p.Limits.On {
			if c.deny = s.srv.rates.Take(&p.Limits, &s.ident, 1, float64(len(c.Raw)), time.Now()); c.deny != "" {
				s.srv.Stats.RateLimited.Add(1)
				s.refused(c.deny)
				continue
			}
		}
		info := c.sub
		if info == nil {
			if s.ident.Role != policy.RoleAdmin && p.Mode != policy.Off {
				c.deny = policy.UnknownCommand(c.Args)
			}
			continue
		}
		if msg := policy.ConnRefusal(info, c.Args); msg != "" {
			c.deny = s.refused(msg)
			continue
		}
		if multi && c.cmd != cmdMulti && !isTxEnd(c.cmd) {
			if msg := multiRefusal(c, admin); msg != "" {
				c.deny = s.refused(msg)
				continue
			}
		}
		if c.cmd == cmdSelect {
			if c.deny = p.SelectRefusal(&s.ident, c.Args, s.node().DB()); c.deny != "" {
				s.refused(c.deny)
				continue
			}
		}
		if !info.ArityOK(len(c.Args)) { // the proxy's own commands too (RESET x), as Redis
			c.deny = policy.WrongArity(info.Name)
			continue
		}
		if info.Has(keyspace.Local) {
			// Answered by the session itself (PING, HELLO, WORKSPACE ...).
			// Subcommands resolve to their own entries, so CLIENT KILL is
			// checked like any admin command.
			if lc != nil && lc.identity {
				// AUTH, HELLO, WORKSPACE: what follows runs as the
				// identity they leave.
				s.checkLater(cmds[i+1:])
				return
			}
			continue
		}
		// A key keyword given twice is refused (Redis's key spec and the command
		// read it differently); a form Redis finds no keys in either (ErrKeys)
		// goes on with none, for the role checks and then Redis's own error.
		if err := keyspace.Extract(info, c.Args, &s.acc); err == keyspace.ErrAmbiguous && s.ident.Role != policy.RoleAdmin {
			c.deny = s.refused(wire.ErrKeysAmbiguous)
			continue
		}
		v, msg := p.Check(&s.ident, info, c.Args, &s.acc)
		switch v {
		case policy.Refuse:
			c.deny = s.refused(msg)
			continue
		case policy.WarnOK:
			s.srv.Stats.Warned.Add(1)
			s.srv.warnSampled(msg, s.ident.Name())
		}
		if e := domainEntry(c.cmd); multi && e != nil {
			if msg := s.queueDomain(c, e); msg != "" {
				c.deny = msg
			}
			continue
		}
		if p.Writes.Any && len(s.acc.Written) > 0 && p.Mode != policy.Off {
			s.planWrite(c, p, multi, s.tconn != nil)
		}
		if info == cmdScan && s.ident.Role != policy.RoleAdmin && p.Mode != policy.Off {
			start := len(s.rewrite)
			var rewritten bool
			s.rewrite, rewritten, c.deny = p.ConfineScan(s.rewrite, c.Args, s.ident.Workspace)
			if rewritten {
				c.Raw, c.off = s.rewrite[start:len(s.rewrite):len(s.rewrite)], -1
			}
		}
	}
}

// denyPending marks a command that follows an AUTH, HELLO or WORKSPACE in
// its batch: it is checked once that command has run, as the identity it
// leaves (Redis runs a pipelined command after AUTH as the new user).
// It never reaches a client: exec and execTunnel check such a command again
// before anything else.
const denyPending = "\x00pending"

func (s *session) checkLater(rest []command) {
	for k := range rest {
		rest[k].deny = denyPending
	}
}

// checkAuth verifies credentials, rate-limited per user name, per
// connection and (for clients beyond loopback) per address, and switches
// the identity on success. Every sidecar client is 127.0.0.1, so a limit per
// address there would let one client's wrong passwords lock out everyone:
// failures count against the name tried and the connection trying it. It
// logs failures without the secret.
func (s *session) checkAuth(user, pass []byte) bool {
	p := s.srv.policy.Load()
	if len(p.Users) == 0 {
		// No users configured: like a Redis without a password, the
		// default user accepts anything.
		return eqFold(user, "default")
	}
	u := p.Users[string(user)]
	keys := policy.AuthBuckets(u, s.id, s.nc.RemoteAddr())
	if !s.srv.limiter.Allow(keys...) {
		s.authLimited = true
		return false
	}
	ok := u != nil && u.Check(pass)
	if !ok {
		s.authFailed = true
		s.srv.limiter.Fail(keys...)
		s.srv.Stats.AuthFailures.Add(1)
		s.log.Warn("auth failed", zap.String("user", string(user)), zap.String("remote", s.nc.RemoteAddr().String()))
		return false
	}
	s.dreq.Enter(s.ident.Workspace, p.FirstWorkspace(u), s.ident.User != u)
	s.ident = policy.Identity{User: u, Role: u.Role, Workspace: p.FirstWorkspace(u)}
	s.authed = true
	return true
}

// workspace answers WORKSPACE [name]: the current workspace, or a switch
// to another one the user is allowed.
func (s *session) workspace(args [][]byte) {
	if len(args) == 0 {
		s.out = redcon.AppendBulkString(s.out, s.ident.Workspace)
		return
	}
	if len(args) > 1 {
		s.out = wire.AppendArity(s.out, "workspace")
		return
	}
	ws := string(args[0])
	if msg := s.srv.policy.Load().WorkspaceRefusal(&s.ident, ws); msg != "" {
		s.out = wire.AppendError(s.out, msg)
		return
	}
	s.dreq.Enter(s.ident.Workspace, ws, false)
	s.ident.Workspace = ws
	s.out = redcon.AppendOK(s.out)
}

// refused counts a refusal by its code and returns it.
func (s *session) refused(msg string) string { s.srv.Stats.Refused(s.id, msg); return msg }

// abortedMulti answers a command while the client's MULTI was aborted by a
// refused command: Redis would discard the transaction at EXEC, so the
// proxy already discarded it upstream and plays the rest locally.
func (s *session) abortedMulti(c *command) {
	switch {
	case c.deny != "":
		s.out = wire.AppendError(s.out, c.deny)
	case c.cmd == cmdExec:
		s.aborted = false
		s.out = wire.AppendError(s.out, wire.ErrExecAbort)
	case c.cmd == cmdDiscard:
		s.aborted = false
		s.out = redcon.AppendOK(s.out)
	case c.cmd == cmdMulti:
		s.out = wire.AppendError(s.out, wire.ErrNestedMulti)
	case c.cmd == cmdQuit:
		s.out = redcon.AppendOK(s.out)
		s.quit = true
	case c.cmd == cmdReset:
		// Redis runs RESET at once, leaving MULTI.
		s.aborted = false
		s.local(c)
	case c.cmd == cmdWatch:
		s.out = wire.AppendError(s.out, "ERR WATCH inside MULTI is not allowed")
	case c.cmd == nil:
		// Redis rejects unknown commands when queueing, not at EXEC.
		s.out = wire.AppendError(s.out, policy.UnknownCommand(c.Args))
	default:
		s.out = append(s.out, "+QUEUED\r\n"...)
	}
}

// refuse answers a refused command; inside MULTI it also aborts the
// transaction upstream, as Redis would at EXEC.
func (s *session) refuse(c *command) {
	s.out = wire.AppendError(s.out, c.deny)
	if s.inMulti && s.pinned != nil {
		_, err := s.pinned.Query("DISCARD")
		s.inMulti, s.watching = false, false
		// A refused EXEC or DISCARD ends the transaction, as in Redis;
		// anything else leaves the client in a MULTI that EXEC aborts.
		s.aborted = !isTxEnd(c.cmd)
		s.unpin(err == nil)
	}
}
