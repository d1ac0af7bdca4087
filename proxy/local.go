package proxy

import (
	"strconv"
	"time"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
)

// local answers a command the proxy owns. It returns routeLocal when the
// reply is written, or the route the command must take instead (SELECT of
// another database pins, CLIENT LIST is forwarded, ...).
func (s *session) local(c *command) route {
	name, args := c.Args[0], c.Args[1:]
	switch {
	case eqFold(name, "ping"):
		switch len(args) {
		case 0:
			s.out = append(s.out, "+PONG\r\n"...)
		case 1:
			s.out = redcon.AppendBulk(s.out, args[0])
		default:
			s.out = wire.AppendArity(s.out, "ping")
		}
	case eqFold(name, "echo"):
		if len(args) != 1 {
			s.out = wire.AppendArity(s.out, "echo")
		} else {
			s.out = redcon.AppendBulk(s.out, args[0])
		}
	case eqFold(name, "quit"):
		s.out = redcon.AppendOK(s.out)
		s.quit = true
	case eqFold(name, "reset"):
		if s.pinned != nil {
			s.unpin(false)
		}
		s.proto, s.name = 2, ""
		s.out = append(s.out, "+RESET\r\n"...)
	case eqFold(name, "hello"):
		s.hello(args)
	case eqFold(name, "workspace"):
		s.workspace(args)
	case eqFold(name, "auth"):
		s.auth(args)
	case eqFold(name, "select"):
		if len(args) != 1 {
			s.out = wire.AppendArity(s.out, "select")
			return routeLocal
		}
		n, ok := parseInt(args[0])
		if !ok {
			s.out = wire.AppendError(s.out, wire.ErrSelectInvalid)
			return routeLocal
		}
		if n == s.srv.pool.DB() && s.pinned == nil {
			s.out = redcon.AppendOK(s.out)
			return routeLocal
		}
		return routePinned
	case eqFold(name, "client"):
		return s.client(args)
	case eqFold(name, "info"):
		s.info(args)
	case eqFold(name, "unsubscribe"):
		s.unsubscribe("unsubscribe", args)
	case eqFold(name, "punsubscribe"):
		s.unsubscribe("punsubscribe", args)
	case eqFold(name, "sunsubscribe"):
		s.unsubscribe("sunsubscribe", args)
	case eqFold(name, "command"):
		// The embedded store ignores COMMAND DOCS and answers COMMAND's
		// table instead, which crashes redis-cli's interactive mode; an
		// empty map is a valid "no docs" answer.
		if s.srv.opts.Embedded && len(args) > 0 && eqFold(args[0], "docs") {
			s.out = wire.AppendMap(s.out, 0, s.proto)
			return routeLocal
		}
		if s.pinned != nil {
			return routePinned
		}
		return routeShared
	default:
		if e := domainEntry(keyspace.Lookup(name)); e != nil {
			s.runDomain(e, c.Args[1:])
			return routeLocal
		}
		if s.pinned != nil {
			return routePinned
		}
		return routeShared
	}
	return routeLocal
}

// client handles the CLIENT subcommands that describe the client's own
// connection; those about the server go upstream.
func (s *session) client(args [][]byte) route {
	if len(args) == 0 {
		s.out = wire.AppendArity(s.out, "client")
		return routeLocal
	}
	sub := args[0]
	switch {
	case eqFold(sub, "setname"):
		if len(args) != 2 {
			s.out = wire.AppendArity(s.out, "client|setname")
			return routeLocal
		}
		for _, ch := range args[1] {
			if ch < '!' || ch > '~' {
				s.out = wire.AppendError(s.out, "ERR Client names cannot contain spaces, newlines or special characters.")
				return routeLocal
			}
		}
		s.name = string(args[1])
		s.out = redcon.AppendOK(s.out)
	case eqFold(sub, "getname"):
		if len(args) != 1 {
			s.out = wire.AppendArity(s.out, "client|getname")
		} else if s.name == "" {
			s.out = wire.AppendNull(s.out, s.proto)
		} else {
			s.out = redcon.AppendBulkString(s.out, s.name)
		}
	case eqFold(sub, "id"):
		s.out = redcon.AppendInt(s.out, s.id)
	case eqFold(sub, "setinfo"):
		if len(args) != 3 {
			s.out = wire.AppendArity(s.out, "client|setinfo")
		} else {
			s.out = redcon.AppendOK(s.out)
		}
	case eqFold(sub, "reply"):
		s.out = wire.AppendError(s.out, wire.ErrClientReply)
	case eqFold(sub, "info"):
		if len(args) != 1 {
			s.out = wire.AppendArity(s.out, "client|info")
		} else {
			s.out = s.appendText(s.out, s.clientLine(nil, "client|info"))
		}
	case eqFold(sub, "list") && s.ident.Role != policy.RoleAdmin:
		s.clientList(args[1:])
	case eqFold(sub, "caching"), eqFold(sub, "getredir"), eqFold(sub, "trackinginfo"):
		// Outside a tunnel this connection has no tracking.
		s.trackingOff(sub)
	case eqFold(sub, "tracking"):
		if len(args) >= 2 && eqFold(args[1], "on") {
			return routeTunnel
		}
		if s.pinned != nil {
			return routePinned
		}
		return routeShared
	case eqFold(sub, "no-evict"), eqFold(sub, "no-touch"):
		return routePinned
	case eqFold(sub, "unpause"):
		return routeOwn
	default:
		if s.pinned != nil {
			return routePinned
		}
		return routeShared
	}
	return routeLocal
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]] the way
// Redis does, describing the upstream server with the proxy's client id.
func (s *session) hello(args [][]byte) {
	proto := s.proto
	if len(args) > 0 {
		v, ok := parseInt(args[0])
		if !ok {
			s.out = wire.AppendError(s.out, "ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 && v != 3 {
			s.out = wire.AppendError(s.out, wire.ErrNoProto)
			return
		}
		if v == 3 && !s.srv.pool.SupportsRESP3() {
			s.out = wire.AppendError(s.out, wire.ErrRESP3Unsupported)
			return
		}
		proto = v
	}
	name, setName := s.name, false
	for i := 1; i < len(args); i++ {
		switch {
		case eqFold(args[i], "auth") && i+2 < len(args):
			if !s.checkAuth(args[i+1], args[i+2]) {
				s.out = s.authReply(s.out, false)
				return
			}
			i += 2
		case eqFold(args[i], "setname") && i+1 < len(args):
			name, setName = string(args[i+1]), true
			i++
		default:
			s.out = wire.AppendError(s.out, wire.ErrHelloSyntax+string(args[i])+"'")
			return
		}
	}
	if !s.authed {
		s.out = wire.AppendError(s.out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if proto != s.proto && s.pinned != nil {
		// The pinned connection speaks the old protocol; it is clean only
		// between transactions, and then it is not pinned.
		s.unpin(false)
	}
	s.proto = proto
	if setName {
		s.name = name
	}
	s.out = s.appendHello(s.out)
}

func (s *session) appendHello(b []byte) []byte {
	b = wire.AppendMap(b, 7, s.proto)
	b = redcon.AppendBulkString(b, "server")
	b = redcon.AppendBulkString(b, "redis")
	b = redcon.AppendBulkString(b, "version")
	b = redcon.AppendBulkString(b, s.srv.pool.Version())
	b = redcon.AppendBulkString(b, "proto")
	b = redcon.AppendInt(b, int64(s.proto))
	b = redcon.AppendBulkString(b, "id")
	b = redcon.AppendInt(b, s.id)
	b = redcon.AppendBulkString(b, "mode")
	b = redcon.AppendBulkString(b, "standalone")
	b = redcon.AppendBulkString(b, "role")
	b = redcon.AppendBulkString(b, "master")
	b = redcon.AppendBulkString(b, "modules")
	return redcon.AppendArray(b, 0)
}

// auth answers AUTH [user] pass. Without configured users the proxy behaves
// like a Redis without a password.
func (s *session) auth(args [][]byte) {
	var user, pass []byte
	switch len(args) {
	case 1:
		if len(s.srv.policy.Load().Users) == 0 {
			s.out = wire.AppendError(s.out, wire.ErrNoAuth)
			return
		}
		user, pass = []byte("default"), args[0]
	case 2:
		user, pass = args[0], args[1]
	default:
		s.out = wire.AppendArity(s.out, "auth")
		return
	}
	s.out = s.authReply(s.out, s.checkAuth(user, pass))
}

// authReply answers the outcome of an AUTH attempt.
func (s *session) authReply(b []byte, ok bool) []byte {
	switch {
	case ok:
		return redcon.AppendOK(b)
	case s.authLimited:
		s.authLimited = false
		return wire.AppendError(b, wire.ErrAuthLimited)
	default:
		return wire.AppendError(b, wire.ErrWrongPass)
	}
}

// minBlockMargin is the least margin past a blocking command's own timeout.
// Redis notices expired blocked clients on its event-loop ticks (every
// 1/hz, 100 ms by default), so the nil reply comes late by up to a tick plus
// scheduling; a short read timeout must not turn it into UNCERTAIN.
const minBlockMargin = time.Second

// blockTimeout is how long to wait for a blocking command's reply: its own
// timeout plus the read timeout as margin, or forever for timeout 0.
func blockTimeout(args [][]byte, margin time.Duration) time.Duration {
	var t []byte
	name := args[0]
	switch {
	case eqFold(name, "blmpop"), eqFold(name, "bzmpop"):
		if len(args) > 1 {
			t = args[1]
		}
	case eqFold(name, "wait"):
		if len(args) > 2 {
			t = args[2]
		}
	case eqFold(name, "waitaof"):
		if len(args) > 3 {
			t = args[3]
		}
	case eqFold(name, "xread"), eqFold(name, "xreadgroup"):
		for i := 1; i+1 < len(args); i++ {
			if eqFold(args[i], "block") {
				ms, err := strconv.ParseInt(string(args[i+1]), 10, 64)
				if err != nil || ms < 0 {
					return margin
				}
				if ms == 0 {
					return -1
				}
				return time.Duration(ms)*time.Millisecond + margin
			}
		}
		return margin
	default:
		t = args[len(args)-1]
	}
	if eqFold(name, "wait") || eqFold(name, "waitaof") {
		ms, err := strconv.ParseInt(string(t), 10, 64)
		if err != nil || ms < 0 {
			return margin
		}
		if ms == 0 {
			return -1
		}
		return time.Duration(ms)*time.Millisecond + margin
	}
	sec, err := strconv.ParseFloat(string(t), 64)
	if err != nil || sec < 0 {
		return margin
	}
	if sec == 0 {
		return -1
	}
	return time.Duration(sec*float64(time.Second)) + margin
}

// hasBlockArg reports whether an XREAD/XREADGROUP has a BLOCK option before
// its STREAMS keyword.
func hasBlockArg(args [][]byte) bool {
	for _, a := range args[1:] {
		if eqFold(a, "streams") {
			return false
		}
		if eqFold(a, "block") {
			return true
		}
	}
	return false
}

// eqFold compares an ASCII argument with a lowercase word.
func eqFold(b []byte, lower string) bool { return keyspace.EqFold(b, lower) }

func appendArrayHeader(b []byte, n int) []byte { return redcon.AppendArray(b, n) }

func appendBulk(b, v []byte) []byte { return redcon.AppendBulk(b, v) }
