package proxy

import (
	"bytes"
	"time"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/fencing"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

// The domain commands run through the command table: their entries carry
// a *domain.Entry (registered by the families), and the session hands the
// handler a domain.Req, its narrow view of this connection. The session
// is the request's Upstream.

var _ domain.Upstream = (*session)(nil)

// runDomain runs the domain command info with args.
func (s *session) runDomain(e *domain.Entry, args [][]byte) {
	if e.Feature != "" && s.srv.opts.Disabled[e.Feature] {
		s.out = wire.AppendError(s.out, "ERR "+e.Feature+" is disabled on this proxy (features."+e.Feature+")")
		return
	}
	r := &s.dreq
	s.mark = len(s.out)
	r.Out, r.Proto, r.Workspace, r.Actor = s.out, s.proto, s.ident.Workspace, s.ident.Name()
	r.Grammar, r.Env, r.Up = s.srv.policy.Load().Grammar, s.srv.env, s
	e.Run(r, args)
	s.out = r.Out
	r.Out = nil
	s.srv.Stats.RefusedReply(s.id, s.out[s.mark:])
	s.blocked, r.Waited = s.blocked || r.Waited, false
}

// queueDomain prepares the domain command c (entry e) to be queued inside
// MULTI: the handler runs with Req.InTx, and what it would have sent
// becomes the command to queue. It returns "" or the refusal.
func (s *session) queueDomain(c *command, e *domain.Entry) string {
	if e.Tx == nil {
		return "ERR '" + c.cmd.Name + "' cannot be queued in MULTI: it makes several round trips to Redis; send it outside the transaction"
	}
	s.capture, s.captured = s.capture[:0], 0
	s.dreq.InTx = true
	s.runDomain(e, c.Args[1:])
	s.dreq.InTx = false
	if len(s.out) > s.mark {
		// The handler refused its arguments: a queueing error, which
		// discards the transaction, as Redis does.
		msg := string(bytes.TrimRight(s.out[s.mark+1:], "\r\n"))
		s.out = s.out[:s.mark]
		return msg
	}
	if s.captured != 1 {
		return "ERR '" + c.cmd.Name + "' cannot be queued in MULTI in this form (it would block or make several round trips); send it outside the transaction"
	}
	start := len(s.rewrite)
	s.rewrite = append(s.rewrite, s.capture...)
	c.Raw, c.off, c.tx = s.rewrite[start:len(s.rewrite):len(s.rewrite)], -1, e
	return ""
}

// Shared implements domain.Upstream: a shared connection, with this
// client's output limit and the memory budget.
func (s *session) Shared(r *domain.Req, payload []byte, n int) error {
	if r.InTx {
		s.capture = append(s.capture, payload...)
		s.captured += n
		return nil
	}
	conn := s.node().Shared(s.proto)
	if conn == nil {
		for k := 0; k < n; k++ {
			r.Out = wire.AppendError(r.Out, wire.TryAgainDown(s.node()))
		}
		return upstream.ErrUnavailable
	}
	s.out = r.Out
	err := s.doPayload(conn, payload, n, 0, false)
	r.Out = s.out
	return err
}

// Blocking implements domain.Upstream: one blocking command on a
// connection of its own (EVENTS.READ BLOCK).
func (s *session) Blocking(r *domain.Req, args [][]byte, raw []byte) {
	if r.InTx {
		s.captured += 2 // a blocking command cannot be queued
		return
	}
	s.out = r.Out
	cmd := keyspace.Lookup(args[0])
	s.forwardBlocking(&command{Args: args, Raw: raw, off: -1, cmd: cmd, sub: cmd})
	r.Out = s.out
}

// TakeDedicated implements domain.Upstream.
func (s *session) TakeDedicated() (string, bool) {
	var ws string
	ok := s.takeDedicated(&ws)
	return ws, ok
}

// GiveDedicated implements domain.Upstream.
func (s *session) GiveDedicated(ws string) { s.giveDedicated(ws) }

// Stopping implements domain.Upstream.
func (s *session) Stopping() bool { return s.stopping.Load() }

// txItem is a command queued in the client's MULTI, in order: a domain
// command's reply is finished by its entry's Tx once EXEC answers.
type txItem struct {
	e    *domain.Entry
	args [][]byte
	ev   []fencing.Written // a plain write's events, sent if it succeeds
	sub  *keyspace.Command
}

// queued records a command Redis queued.
func (s *session) queued(c *command) {
	it := txItem{e: c.tx, ev: c.txEv}
	s.txFix = s.txFix || len(c.txEv) > 0
	if len(c.txEv) > 0 {
		it.sub = c.sub
		for _, a := range c.Args {
			it.args = append(it.args, append([]byte(nil), a...))
		}
	}
	if c.tx != nil {
		for _, a := range c.Args[1:] {
			it.args = append(it.args, append([]byte(nil), a...))
		}
		s.txFix = true
	}
	s.txItems = append(s.txItems, it)
}

// finishExec applies the queued domain commands' Tx to their elements of
// EXEC's reply at out[start:end] and returns the new end.
func (s *session) finishExec(start, end int) int {
	if !s.txFix {
		return end
	}
	elems, ok := wire.Elements(s.out[start:end])
	if !ok || len(elems) == 0 || len(elems) != len(s.txItems) {
		return end
	}
	r := &s.dreq
	r.Out, r.Proto, r.Workspace, r.Actor = nil, s.proto, s.ident.Workspace, s.ident.Name()
	r.Grammar, r.Env, r.Up = s.srv.policy.Load().Grammar, s.srv.env, s
	b := append([]byte(nil), s.out[start:start+elems[0][0]]...) // the array header
	now := time.Now().UnixMilli()
	for k, el := range elems {
		e := s.out[start+el[0] : start+el[1]]
		it := s.txItems[k]
		if it.e != nil {
			e = it.e.Tx(r, it.args, e)
		}
		if len(it.ev) > 0 && !fencing.WroteNothing(it.sub.Name, it.args, e) {
			for _, w := range it.ev {
				w.TS = now
				s.srv.opts.OnWrite(w)
			}
		}
		b = append(b, e...)
	}
	tail := append([]byte(nil), s.out[end:]...)
	s.out = append(append(s.out[:start], b...), tail...)
	return start + len(b)
}

// domainEntry is the domain handler of a command, or nil.
func domainEntry(info *keyspace.Command) *domain.Entry {
	e, _ := info.Handler.(*domain.Entry)
	return e
}
