package proxy

import (
	"strings"
	"time"

	"github.com/agentproxy/agentproxy/internal/obs"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
)

// Control answers the PROXY subcommands about the running application:
// CONFIG GET (secrets masked), RELOAD (as SIGHUP), HELP; the command table
// keeps those two from agents. PROXY INFO and CLIENTS are answered here.
type Control interface {
	Command(b []byte, args [][]byte, proto int) []byte
}

func init() {
	keyspace.SetHandler("proxy", &localCmd{run: (*session).proxyCmd, tunnel: tunnelAnswer, multi: multiNever})
}

func (s *session) proxyCmd(c *command) route {
	switch {
	case len(c.Args) < 2 || c.sub != c.cmd && !c.sub.ArityOK(len(c.Args)):
		s.out = wire.AppendArity(s.out, c.sub.Name)
	case c.sub.Name == "proxy|info":
		s.out = wire.AppendText(s.out, s.appendProxySection(nil), s.proto)
	case c.sub.Name == "proxy|clients":
		s.publish() // an AUTH earlier in this batch counts
		s.out = wire.AppendText(s.out, s.srv.appendClients(nil, s.ident.Role == policy.RoleAdmin, s.view.Load()), s.proto)
	case s.srv.opts.Control != nil:
		s.out = s.srv.opts.Control.Command(s.out, c.Args, s.proto)
		s.blocked = true // a reload (and its snapshot) is not latency either
	default:
		s.out = wire.AppendError(s.out, "ERR PROXY "+strings.ToUpper(string(c.Args[1]))+" is not available on this proxy")
	}
	return routeLocal
}

// publish makes the session's view for PROXY CLIENTS current; it allocates
// only when something changed.
func (s *session) publish() {
	v := wire.ProxyClient{ID: s.id, Addr: s.addr, LAddr: s.laddr, Name: s.name, User: s.ident.Name(),
		Role: s.ident.Role.String(), Workspace: s.ident.Workspace, DB: s.db, Proto: s.proto,
		Pinned: s.pinned != nil, Tunnel: s.tconn != nil, Authed: s.authed, Anonymous: s.ident.User == nil}
	if old := s.view.Load(); old == nil || *old != v {
		n := v
		s.view.Store(&n)
	}
}

// appendClients appends PROXY CLIENTS for me: every client for an admin,
// else those VisibleTo it.
func (srv *Server) appendClients(b []byte, admin bool, me *wire.ProxyClient) []byte {
	var rows []wire.ClientRow
	srv.mu.Lock()
	for sess := range srv.sessions {
		if v := sess.view.Load(); v != nil && (admin || v.VisibleTo(me)) {
			rows = append(rows, wire.ClientRow{Client: v, Start: sess.start, Last: sess.lastCmd.Load(), Cmds: sess.ncmds.Load()})
		}
	}
	srv.mu.Unlock()
	return wire.AppendProxyClients(b, rows, time.Now(), obs.Now())
}
