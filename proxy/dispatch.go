package proxy

import (
	"github.com/agentproxy/agentproxy/domain"
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
	r.Out, r.Proto, r.Workspace, r.Actor = s.out, s.proto, s.ident.Workspace, s.ident.Name()
	r.Grammar, r.Env, r.Up = s.srv.policy.Load().Grammar, s.srv.env, s
	e.Run(r, args)
	s.out = r.Out
	r.Out = nil
}

// Shared implements domain.Upstream: a shared connection, with this
// client's output limit and the memory budget.
func (s *session) Shared(r *domain.Req, payload []byte, n int) error {
	conn := s.srv.pool.Shared(s.proto)
	if conn == nil {
		for k := 0; k < n; k++ {
			r.Out = wire.AppendError(r.Out, wire.ErrTryAgainDown)
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

// domainEntry is the domain handler of a command, or nil.
func domainEntry(info *keyspace.Command) *domain.Entry {
	e, _ := info.Handler.(*domain.Entry)
	return e
}
