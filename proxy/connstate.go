package proxy

import (
	"strconv"
	"time"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
)

// Commands about the client's own connection. Forwarded on a shared
// connection they would describe (or change) a Redis connection every
// client shares, or answer more than once; the proxy answers them for the
// client it knows.

// multiRefusal says whether a command may be queued inside MULTI. Queued,
// a command that changes the connection (SUBSCRIBE, CLIENT TRACKING, HELLO,
// AUTH) would change it at EXEC, and one that answers more than once (the
// unsubscribe family) would put the connection out of step; commands the
// proxy answers (INFO, CLIENT INFO, domain commands) would reach Redis as
// sent. SELECT is allowed: the pinned connection is then never reused.
func multiRefusal(c *command, admin bool) string {
	info := c.sub
	lc := localOf(info)
	if lc == nil {
		lc = localOf(c.cmd)
	}
	switch {
	case info.Has(keyspace.PubSub) || info.Has(keyspace.Tunnel), lc != nil && lc.multi == multiNever:
	case admin, lc != nil && lc.multi == multiQueued:
		return ""
	case lc == nil && info.Agents != keyspace.AgentsProxy:
		return ""
	case domainEntry(c.cmd) != nil:
		return "" // queued through its script (queueDomain), or refused there
	}
	return "ERR '" + info.Name + "' cannot be queued in MULTI through agentproxy: it changes or describes the client's connection, or is answered by the proxy; send it outside the transaction"
}

// conn is this connection as CLIENT INFO describes it.
func (s *session) conn() wire.Conn {
	return wire.Conn{ID: s.id, Addr: s.addr, LAddr: s.laddr, Name: s.name,
		User: s.ident.Name(), AgeSeconds: int64(time.Since(s.start) / time.Second), DB: s.db, Proto: s.proto,
		Rbs: len(s.rd.buf), Subscribed: s.tconn != nil, InMulti: s.inMulti}
}

// clientList answers CLIENT LIST for a user who is not an admin: its own
// connection, if the filters (TYPE, ID) select it.
func (s *session) clientList(args [][]byte) {
	show, msg := wire.ClientListSelects(s.conn(), args)
	if msg != "" {
		s.out = wire.AppendError(s.out, msg)
		return
	}
	var line []byte
	if show {
		line = wire.AppendClientLine(nil, s.conn(), "client|list")
	}
	s.out = wire.AppendText(s.out, line, s.proto)
}

// info answers INFO as policy.Info assembles it for the user.
func (s *session) info(args [][]byte) {
	if text, ok := policy.Info(args, s.ident.Role == policy.RoleAdmin, s.upstreamText, s.appendClientsSection, s.appendProxySection); ok {
		s.out = wire.AppendText(s.out, text, s.proto)
	}
}

// upstreamText runs a command upstream and returns its text reply (bulk or
// verbatim string), or answers the error itself.
func (s *session) upstreamText(argv [][]byte) ([]byte, bool) {
	conn := s.node().Shared(s.proto)
	if conn == nil {
		s.out = wire.AppendError(s.out, wire.TryAgainDown(s.node()))
		return nil, false
	}
	start := len(s.out)
	// Not s.scratch: in tunnel mode it holds the requests being gathered.
	req := redcon.AppendArray(nil, len(argv))
	for _, a := range argv {
		req = redcon.AppendBulk(req, a)
	}
	if s.doPayload(conn, req, 1, 0, false) != nil {
		return nil, false
	}
	body, ok := wire.TextBody(s.out[start:])
	if !ok {
		return nil, false // an error reply: already in place
	}
	out := append([]byte(nil), body...)
	s.out = s.out[:start]
	return out, true
}

func (s *session) appendClientsSection(b []byte) []byte {
	return wire.AppendInfoSection(b, "Clients", "connected_clients", strconv.FormatInt(s.srv.Stats.Clients.Load(), 10),
		"maxclients", strconv.Itoa(s.srv.opts.MaxClients))
}

func (s *session) appendProxySection(b []byte) []byte {
	mode := [...]string{policy.Enforce: "enforce", policy.Warn: "warn", policy.Off: "off"}[s.srv.policy.Load().Mode]
	st := &s.srv.Stats
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	return wire.AppendInfoSection(b, "Proxy", "agentproxy_version", Version, "client_id", n(s.id),
		"user", s.ident.Name(), "role", s.ident.Role.String(), "workspace", s.ident.Workspace, "keyspace_mode", mode,
		"upstream", s.srv.opts.UpstreamKind, "upstream_up", strconv.FormatBool(s.node().Up()), "connected_clients", n(st.Clients.Load()),
		"pinned_sessions", n(st.Pinned.Load()), "tunnels", n(st.Tunnels.Load()), "commands_processed", n(st.Commands.Load()),
		"commands_refused", strconv.FormatUint(st.RefusedTotal(), 10), "warn_mode_violations", n(st.Warned.Load()),
		"memory_budget_used", n(s.srv.budget.Used()), "memory_budget", n(s.srv.budget.Limit()))
}

// Version is the proxy's version, set by the binary from its build.
var Version = "dev"
