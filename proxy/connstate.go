package proxy

import (
	"bytes"
	"strconv"
	"strings"
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

// connRefusal is a refusal that holds for every user, admins too: commands
// that cannot work through a multiplexer, and forms that name a Redis
// connection. "" lets the command through.
func connRefusal(info *keyspace.Command, args [][]byte) string {
	if info.Agents == keyspace.AgentsNever {
		return policy.Unsupported(info)
	}
	if info == cmdTracking {
		for _, a := range args[2:] {
			if eqFold(a, "redirect") {
				return wire.ErrTrackingRedirect
			}
		}
	}
	return ""
}

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
	}
	return "ERR '" + info.Name + "' cannot be queued in MULTI through agentproxy: it changes or describes the client's connection, or is answered by the proxy; send it outside the transaction"
}

// clientLine is this connection as a line of CLIENT LIST / CLIENT INFO.
func (s *session) clientLine(b []byte, cmd string) []byte {
	flags := "N"
	switch {
	case s.tconn != nil:
		flags = "P"
	case s.inMulti:
		flags = "x"
	}
	multi := -1
	if s.inMulti {
		multi = 0
	}
	b = append(b, "id="...)
	b = strconv.AppendInt(b, s.id, 10)
	b = append(b, " addr="...)
	b = append(b, s.nc.RemoteAddr().String()...)
	b = append(b, " laddr="...)
	b = append(b, s.nc.LocalAddr().String()...)
	b = append(b, " fd=-1 name="...)
	b = append(b, s.name...)
	b = append(b, " age="...)
	b = strconv.AppendInt(b, int64(time.Since(s.start)/time.Second), 10)
	b = append(b, " idle=0 flags="...)
	b = append(b, flags...)
	b = append(b, " db="...)
	b = strconv.AppendInt(b, int64(s.db), 10)
	b = append(b, " sub=0 psub=0 ssub=0 multi="...)
	b = strconv.AppendInt(b, int64(multi), 10)
	b = append(b, " qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs="...)
	b = strconv.AppendInt(b, int64(len(s.rd.buf)), 10)
	b = append(b, " rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd="...)
	b = append(b, cmd...)
	b = append(b, " user="...)
	b = append(b, s.ident.Name()...)
	b = append(b, " redir=-1 resp="...)
	b = strconv.AppendInt(b, int64(s.proto), 10)
	return append(b, '\n')
}

// clientList answers CLIENT LIST for a user who is not an admin: its own
// connection, if the filters (TYPE, ID) select it.
func (s *session) clientList(args [][]byte) {
	show := true
	for i := 0; i < len(args); i++ {
		switch {
		case eqFold(args[i], "type") && i+1 < len(args):
			t := args[i+1]
			switch {
			case eqFold(t, "normal"):
				show = show && s.tconn == nil
			case eqFold(t, "pubsub"):
				show = show && s.tconn != nil
			case eqFold(t, "master"), eqFold(t, "replica"), eqFold(t, "slave"):
				show = false
			default:
				s.out = wire.AppendError(s.out, "ERR Unknown client type '"+wire.QuoteArg(t)+"'")
				return
			}
			i++
		case eqFold(args[i], "id") && i+1 < len(args):
			mine := false
			for _, a := range args[i+1:] {
				n, err := strconv.ParseInt(string(a), 10, 64)
				if err != nil || n <= 0 {
					s.out = wire.AppendError(s.out, "ERR Invalid client ID")
					return
				}
				mine = mine || n == s.id
			}
			show = show && mine
			i = len(args)
		default:
			s.out = wire.AppendError(s.out, "ERR syntax error")
			return
		}
	}
	var line []byte
	if show {
		line = s.clientLine(nil, "client|list")
	}
	s.out = s.appendText(s.out, line)
}

// appendText appends a text reply: a verbatim string under RESP3 (as
// Redis answers INFO and CLIENT LIST), a bulk string under RESP2.
func (s *session) appendText(b, text []byte) []byte {
	if s.proto != 3 {
		return redcon.AppendBulk(b, text)
	}
	b = append(b, '=')
	b = strconv.AppendInt(b, int64(len(text)+4), 10)
	b = append(b, "\r\ntxt:"...)
	b = append(b, text...)
	return append(b, '\r', '\n')
}

// trackingInfoOff answers CLIENT TRACKINGINFO for a connection without
// tracking (tracking tunnels the client, and there Redis answers).
func (s *session) trackingInfoOff(*command) route {
	s.out = wire.AppendMap(s.out, 3, s.proto)
	s.out = redcon.AppendBulkString(s.out, "flags")
	if s.proto == 3 {
		s.out = append(s.out, "~1\r\n"...)
	} else {
		s.out = redcon.AppendArray(s.out, 1)
	}
	s.out = redcon.AppendBulkString(s.out, "off")
	s.out = redcon.AppendBulkString(s.out, "redirect")
	s.out = redcon.AppendInt(s.out, -1)
	s.out = redcon.AppendBulkString(s.out, "prefixes")
	s.out = redcon.AppendArray(s.out, 0)
	return routeLocal
}

// info answers INFO. Admins get Redis's INFO with the proxy's section
// added; other users get only the fields in infoAgent, the proxy's own
// Clients section instead of Redis's (which counts the proxy's upstream
// connections), and the Proxy section.
func (s *session) info(args [][]byte) {
	want := map[string]bool{}
	all := len(args) == 0
	for _, a := range args {
		w := strings.ToLower(string(a))
		if w == "all" || w == "everything" || w == "default" {
			all = true
		}
		want[w] = true
	}
	admin := s.ident.Role == policy.RoleAdmin
	var text []byte
	if admin {
		// Redis's own answer, whatever it was asked.
		up, ok := s.upstreamText(append([][]byte{[]byte("INFO")}, args...))
		if !ok {
			return
		}
		text = up
	} else {
		up, ok := s.upstreamText([][]byte{[]byte("INFO"), []byte("server"), []byte("memory"), []byte("cluster")})
		if !ok {
			return
		}
		for _, sec := range []string{"server", "clients", "memory", "cluster"} {
			if !all && !want[sec] {
				continue
			}
			if sec == "clients" {
				text = s.appendClientsSection(text)
				continue
			}
			text = policy.AppendAgentInfo(text, up, sec)
		}
	}
	if all || want["proxy"] {
		if text = bytes.TrimRight(text, "\r\n"); len(text) > 0 {
			text = append(text, "\r\n\r\n"...)
		}
		text = s.appendProxySection(text)
	}
	// As Redis: sections apart by a blank line, the last line ends in CRLF.
	if text = bytes.TrimRight(text, "\r\n"); len(text) > 0 {
		text = append(text, "\r\n"...)
	}
	s.out = s.appendText(s.out, text)
}

// upstreamText runs a command upstream and returns its text reply (bulk or
// verbatim string), or answers the error itself.
func (s *session) upstreamText(argv [][]byte) ([]byte, bool) {
	conn := s.srv.pool.Shared(s.proto)
	if conn == nil {
		s.out = wire.AppendError(s.out, wire.ErrTryAgainDown)
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
	r := s.out[start:]
	if len(r) == 0 || (r[0] != '$' && r[0] != '=') {
		return nil, false // an error reply: already in place
	}
	i := bytes.IndexByte(r, '\n')
	body := r[i+1 : len(r)-2]
	if r[0] == '=' && len(body) >= 4 {
		body = body[4:] // "txt:"
	}
	out := append([]byte(nil), body...)
	s.out = s.out[:start]
	return out, true
}

func (s *session) appendClientsSection(b []byte) []byte {
	b = append(b, "# Clients\r\nconnected_clients:"...)
	b = strconv.AppendInt(b, s.srv.Stats.Clients.Load(), 10)
	b = append(b, "\r\nmaxclients:"...)
	b = strconv.AppendInt(b, int64(s.srv.opts.MaxClients), 10)
	return append(b, "\r\n\r\n"...)
}

func (s *session) appendProxySection(b []byte) []byte {
	p := s.srv.policy.Load()
	mode := "enforce"
	switch p.Mode {
	case policy.Warn:
		mode = "warn"
	case policy.Off:
		mode = "off"
	}
	upstream := "standalone"
	if s.srv.opts.Embedded {
		upstream = "embedded"
	}
	b = append(b, "# Proxy\r\nagentproxy_version:"...)
	b = append(b, Version...)
	b = append(b, "\r\nclient_id:"...)
	b = strconv.AppendInt(b, s.id, 10)
	b = append(b, "\r\nuser:"...)
	b = append(b, s.ident.Name()...)
	b = append(b, "\r\nrole:"...)
	b = append(b, s.ident.Role.String()...)
	b = append(b, "\r\nworkspace:"...)
	b = append(b, s.ident.Workspace...)
	b = append(b, "\r\nkeyspace_mode:"...)
	b = append(b, mode...)
	b = append(b, "\r\nupstream:"...)
	b = append(b, upstream...)
	b = append(b, "\r\nconnected_clients:"...)
	b = strconv.AppendInt(b, s.srv.Stats.Clients.Load(), 10)
	b = append(b, "\r\npinned_sessions:"...)
	b = strconv.AppendInt(b, s.srv.Stats.Pinned.Load(), 10)
	return append(b, "\r\n\r\n"...)
}

// Version is the proxy's version, set by the binary from its build.
var Version = "dev"
