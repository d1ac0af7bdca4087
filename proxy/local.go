package proxy

import (
	"time"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
)

// The commands the proxy answers itself carry a *localCmd in the command
// table (registered below); the session dispatches through it, in normal
// and in tunnel mode.

// localCmd is the proxy's handler of one command.
type localCmd struct {
	// run answers the command (routeLocal), or says where it goes instead
	// (SELECT of another database pins, an admin's CLIENT LIST is
	// forwarded, ...).
	run func(s *session, c *command) route
	// tunnel says how it runs while the client is tunnelled.
	tunnel tunnelHow
	// immediate commands run at once even inside MULTI (Redis does not
	// queue QUIT and RESET).
	immediate bool
	// identity commands (AUTH, HELLO, WORKSPACE) change who the client is:
	// the commands after them in a batch are checked once they ran.
	identity bool
	// multi says whether it may be queued inside MULTI (multiRefusal).
	multi multiHow
}

type multiHow uint8

const (
	multiAdmins multiHow = iota // admins may queue it (the pinned connection becomes sticky); agents may not
	multiQueued                 // anyone may: Redis queues it and EXEC answers it (PING, ECHO, SELECT)
	multiNever                  // nobody: it would change the connection or answer more than once
)

type tunnelHow uint8

const (
	tunnelForward tunnelHow = iota // down the tunnel as sent; Redis answers
	tunnelAnswer                   // run answers it, in its place (wire.Markers)
	tunnelOwn                      // run handles the tunnel itself (HELLO, RESET)
)

func init() {
	reg := func(name string, lc *localCmd) { keyspace.SetHandler(name, lc) }
	answer := func(f func(b []byte, args [][]byte) []byte) func(*session, *command) route {
		return func(s *session, c *command) route { s.out = f(s.out, c.Args); return routeLocal }
	}
	reg("ping", &localCmd{run: answer(wire.AppendPing), multi: multiQueued})
	reg("echo", &localCmd{run: answer(wire.AppendEcho), multi: multiQueued})
	reg("quit", &localCmd{run: (*session).quitCmd, immediate: true})
	reg("reset", &localCmd{run: (*session).reset, tunnel: tunnelOwn, immediate: true})
	reg("hello", &localCmd{run: (*session).helloCmd, tunnel: tunnelOwn, identity: true})
	reg("auth", &localCmd{run: (*session).authCmd, tunnel: tunnelAnswer, identity: true})
	reg("workspace", &localCmd{run: (*session).workspaceCmd, tunnel: tunnelAnswer, identity: true})
	reg("select", &localCmd{run: (*session).selectCmd, multi: multiQueued})
	reg("info", &localCmd{run: (*session).infoCmd, tunnel: tunnelAnswer})
	reg("command", &localCmd{run: (*session).commandCmd})
	for _, n := range []string{"unsubscribe", "punsubscribe", "sunsubscribe"} {
		reg(n, &localCmd{run: (*session).unsubscribeCmd, multi: multiNever})
	}
	// CLIENT: the family dispatches to its subcommands' entries; those
	// without one go upstream.
	reg("client", &localCmd{run: (*session).clientCmd, tunnel: tunnelAnswer})
	reg("client|setname", &localCmd{run: (*session).clientSetName, tunnel: tunnelAnswer})
	reg("client|getname", &localCmd{run: (*session).clientGetName, tunnel: tunnelAnswer})
	reg("client|id", &localCmd{run: func(s *session, c *command) route {
		s.out = redcon.AppendInt(s.out, s.id)
		return routeLocal
	}, tunnel: tunnelAnswer})
	reg("client|setinfo", &localCmd{run: func(s *session, c *command) route {
		s.out = redcon.AppendOK(s.out)
		return routeLocal
	}, tunnel: tunnelAnswer})
	reg("client|info", &localCmd{run: func(s *session, c *command) route {
		s.out = wire.AppendText(s.out, wire.AppendClientLine(nil, s.conn(), "client|info"), s.proto)
		return routeLocal
	}, tunnel: tunnelAnswer})
	reg("client|list", &localCmd{run: func(s *session, c *command) route {
		if s.ident.Role == policy.RoleAdmin {
			return s.upstreamRoute() // Redis's view, for operators
		}
		s.clientList(c.Args[2:])
		return routeLocal
	}, tunnel: tunnelAnswer})
	// About client-side caching: outside a tunnel this connection has no
	// tracking; inside, Redis's connection has.
	reg("client|caching", &localCmd{run: func(s *session, c *command) route {
		s.out = wire.AppendError(s.out, wire.ErrCachingOff)
		return routeLocal
	}, multi: multiNever})
	reg("client|getredir", &localCmd{run: func(s *session, c *command) route {
		s.out = redcon.AppendInt(s.out, -1)
		return routeLocal
	}})
	reg("client|trackinginfo", &localCmd{run: func(s *session, c *command) route {
		s.out = wire.TrackingInfoOff(s.out, s.proto)
		return routeLocal
	}})
	reg("client|tracking", &localCmd{run: func(s *session, c *command) route {
		if len(c.Args) >= 3 && eqFold(c.Args[2], "on") {
			return routeTunnel
		}
		return s.upstreamRoute()
	}, multi: multiNever})
	for _, n := range []string{"client|no-evict", "client|no-touch"} {
		reg(n, &localCmd{run: func(*session, *command) route { return routePinned }, tunnel: tunnelAnswer})
	}
	reg("client|unpause", &localCmd{run: func(*session, *command) route { return routeOwn }, tunnel: tunnelAnswer})
}

// localOf is the proxy's handler of a command, or nil.
func localOf(info *keyspace.Command) *localCmd {
	if info == nil {
		return nil
	}
	lc, _ := info.Handler.(*localCmd)
	return lc
}

// local runs a command the proxy owns: a *localCmd or a domain command.
// It returns routeLocal when the reply is written, or the route the
// command must take instead.
func (s *session) local(c *command) route {
	if lc := localOf(c.cmd); lc != nil {
		return lc.run(s, c)
	}
	if e := domainEntry(c.cmd); e != nil {
		s.runDomain(e, c.Args[1:])
		return routeLocal
	}
	return s.upstreamRoute()
}

// upstreamRoute is where a command goes upstream: the pinned connection
// while there is one, else a shared one.
func (s *session) upstreamRoute() route {
	if s.pinned != nil {
		return routePinned
	}
	return routeShared
}

func (s *session) quitCmd(c *command) route {
	s.out = redcon.AppendOK(s.out)
	s.quit = true
	return routeLocal
}

// reset answers RESET; tunnelled, Redis resets the tunnel connection (no
// subscriptions, RESP2, no name) and the session's view of it follows.
func (s *session) reset(c *command) route {
	if s.tconn != nil {
		s.scratch = append(s.scratch, c.Raw...)
		s.proto, s.name = 2, ""
		return routeLocal
	}
	if s.pinned != nil {
		s.unpin(false)
	}
	s.proto, s.name = 2, ""
	s.out = append(s.out, "+RESET\r\n"...)
	return routeLocal
}

func (s *session) helloCmd(c *command) route {
	if s.tconn == nil {
		s.hello(c.Args[1:])
		return routeLocal
	}
	mark := len(s.out)
	if len(c.Args) > 1 {
		if v, ok := wire.ParseInt(c.Args[1]); ok && v != s.proto {
			s.out = wire.AppendError(s.out, wire.ErrProtoSwitch)
			s.answer(mark)
			return routeLocal
		}
	}
	s.hello(c.Args[1:])
	s.answer(mark)
	return routeLocal
}

func (s *session) authCmd(c *command) route {
	s.auth(c.Args[1:])
	return routeLocal
}

func (s *session) workspaceCmd(c *command) route {
	s.workspace(c.Args[1:])
	return routeLocal
}

func (s *session) infoCmd(c *command) route {
	s.info(c.Args[1:])
	return routeLocal
}

func (s *session) unsubscribeCmd(c *command) route {
	s.out = wire.AppendUnsubscribed(s.out, s.proto, c.cmd.Name, c.Args[1:])
	return routeLocal
}

func (s *session) selectCmd(c *command) route {
	if len(c.Args) != 2 {
		s.out = wire.AppendArity(s.out, "select")
		return routeLocal
	}
	n, ok := wire.ParseInt(c.Args[1])
	if !ok {
		s.out = wire.AppendError(s.out, wire.ErrSelectInvalid)
		return routeLocal
	}
	if n == s.node().DB() && s.pinned == nil {
		s.out = redcon.AppendOK(s.out)
		return routeLocal
	}
	return routePinned
}

// commandCmd: the embedded store ignores COMMAND DOCS and answers
// COMMAND's table instead, which crashes redis-cli's interactive mode; an
// empty map is a valid "no docs" answer. Everything else goes upstream.
func (s *session) commandCmd(c *command) route {
	if s.srv.opts.Embedded && c.sub != c.cmd && c.sub.Name == "command|docs" {
		s.out = wire.AppendMap(s.out, 0, s.proto)
		return routeLocal
	}
	return s.upstreamRoute()
}

// clientCmd dispatches CLIENT to its subcommand's entry: the ones about the
// client's own connection are answered here, the rest go upstream.
func (s *session) clientCmd(c *command) route {
	if len(c.Args) < 2 {
		s.out = wire.AppendArity(s.out, "client")
		return routeLocal
	}
	if lc := localOf(c.sub); lc != nil && c.sub != c.cmd {
		if !c.sub.ArityOK(len(c.Args)) {
			s.out = wire.AppendArity(s.out, c.sub.Name)
			return routeLocal
		}
		return lc.run(s, c)
	}
	return s.upstreamRoute()
}

func (s *session) clientSetName(c *command) route {
	if !wire.ValidName(c.Args[2]) {
		s.out = wire.AppendError(s.out, wire.ErrClientName)
		return routeLocal
	}
	s.name = string(c.Args[2])
	s.out = redcon.AppendOK(s.out)
	return routeLocal
}

func (s *session) clientGetName(c *command) route {
	if s.name == "" {
		s.out = wire.AppendNull(s.out, s.proto)
	} else {
		s.out = redcon.AppendBulkString(s.out, s.name)
	}
	return routeLocal
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]] the way
// Redis does, describing the upstream server with the proxy's client id.
func (s *session) hello(args [][]byte) {
	h, msg := wire.ParseHello(args)
	if msg == "" && h.Proto == 3 && !s.node().SupportsRESP3() {
		msg = wire.ErrRESP3Unsupported
	}
	if msg != "" {
		s.out = wire.AppendError(s.out, msg)
		return
	}
	if h.Auth && !s.checkAuth(h.User, h.Pass) {
		s.out = s.authReply(s.out, false)
		return
	}
	if !s.authed {
		s.out = wire.AppendError(s.out, wire.ErrHelloNoAuth)
		return
	}
	if h.Proto != 0 && h.Proto != s.proto && s.pinned != nil {
		// The pinned connection speaks the old protocol; it is clean only
		// between transactions, and then it is not pinned.
		s.unpin(false)
	}
	if h.Proto != 0 {
		s.proto = h.Proto
	}
	if h.SetName {
		s.name = h.Name
	}
	s.out = wire.AppendHello(s.out, s.proto, s.id, s.node().Version())
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
		s.out = wire.AppendError(s.out, wire.ErrSyntax) // as Redis: AUTH takes one or two arguments
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

// blockOrderWait bounds how long a blocking command waits for those read
// before it to be written (one slow to get its connection holds the others
// that long at most).
const blockOrderWait = 50 * time.Millisecond

// eqFold compares an ASCII argument with a lowercase word.
func eqFold(b []byte, lower string) bool { return keyspace.EqFold(b, lower) }
