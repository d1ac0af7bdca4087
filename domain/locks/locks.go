// Package locks serves LOCK.*: locks with fencing tokens (SPEC §6). A lock
// on resource R is the hash <ws>:lock:R (owner, token, holder), its tokens
// come from the counter <ws>:fence:R, which never expires and never goes
// backwards, and the connection that takes a lock (or attaches it with
// LOCK.USE) has its token injected into its guarded writes.
package locks

import (
	"strconv"
	"time"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lua"
)

const (
	maxLockTTL    = 30 * 24 * time.Hour
	lockRetryBase = 10 * time.Millisecond
)

// req is a domain request as this family's handlers see it.
type req struct{ *domain.Req }

func init() {
	domain.RegisterTx("lock.acquire", "coord", func(r *domain.Req, a [][]byte) { req{r}.lockAcquire(a) },
		func(r *domain.Req, a [][]byte, reply []byte) []byte {
			s, res := req{r}, string(a[0])
			return r.Fix(reply, func(st int) {
				s.rememberToken(res, r.Out[st:])
				s.observe(res, r.Out[st:])
				s.AsMap(st)
			})
		})
	domain.RegisterTx("lock.extend", "coord", func(r *domain.Req, a [][]byte) { req{r}.lockToken(a, "lock_extend") },
		func(r *domain.Req, a [][]byte, reply []byte) []byte {
			return r.Fix(reply, func(st int) { req{r}.observe(string(a[0]), r.Out[st:]); r.AsMap(st) })
		})
	domain.RegisterTx("lock.release", "coord", func(r *domain.Req, a [][]byte) { req{r}.lockToken(a, "lock_release") },
		func(r *domain.Req, a [][]byte, reply []byte) []byte {
			if len(reply) > 0 && reply[0] == ':' {
				t, _ := strconv.ParseInt(string(a[1]), 10, 64)
				req{r}.released(string(a[0]), t)
			}
			return reply
		})
	domain.RegisterTx("lock.info", "coord", func(r *domain.Req, a [][]byte) { req{r}.lockInfo(a) },
		func(r *domain.Req, a [][]byte, reply []byte) []byte { return r.Fix(reply, r.AsMap) })
	domain.RegisterTx("lock.use", "coord", func(r *domain.Req, a [][]byte) { req{r}.lockUse(a) },
		func(r *domain.Req, a [][]byte, reply []byte) []byte {
			if t, err := strconv.ParseInt(string(a[1]), 10, 64); err == nil && len(reply) > 0 && reply[0] == '+' {
				r.Hold(string(a[0]), t)
			}
			return reply
		})
}

// lockInfo: LOCK.INFO <resource>.
func (s req) lockInfo(args [][]byte) {
	if res, ok := s.Resource(args[0]); ok {
		start := len(s.Out)
		s.Script(lua.Get("lock_info"), []string{s.Key("lock", res), s.Key("fence", res)}, nil)
		s.AsMap(start)
	}
}

// lockAcquire: LOCK.ACQUIRE <resource> <ttl_ms> [OWNER o] [WAIT ms]. WAIT
// retries in the proxy with backoff, never blocking Redis.
func (s req) lockAcquire(args [][]byte) {
	res, ok := s.Resource(args[0])
	if !ok {
		return
	}
	ttl, ok := s.PosInt(args[1], "ttl_ms", maxLockTTL.Milliseconds())
	if !ok {
		return
	}
	owner, ifv := s.Actor, ""
	var wait int64
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.Out = wire.AppendError(s.Out, "ERR syntax error: LOCK.ACQUIRE <resource> <ttl_ms> [OWNER o] [WAIT ms] [IFVERSION v]")
			return
		}
		switch {
		case keyspace.EqFold(args[i], "owner") && len(args[i+1]) > 0 && len(args[i+1]) <= 256:
			owner = string(args[i+1])
		case keyspace.EqFold(args[i], "wait"):
			if wait, ok = s.PosInt(args[i+1], "WAIT ms", 600000); !ok {
				return
			}
		case keyspace.EqFold(args[i], "ifversion"):
			if !s.Version(args[i+1]) {
				return
			}
			ifv = string(args[i+1])
		default:
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(args[i])+"': LOCK.ACQUIRE <resource> <ttl_ms> [OWNER o] [WAIT ms] [IFVERSION v]")
			return
		}
	}
	if wait > 0 && s.InTx {
		s.Err("ERR LOCK.ACQUIRE ... WAIT retries in the proxy and cannot be queued in MULTI; acquire before MULTI, or without WAIT")
		return
	}
	keys := []string{s.Key("lock", res), s.Key("fence", res), s.Key("events", "log")}
	argv := []string{strconv.FormatInt(ttl, 10), owner, s.Workspace, res, s.EventsMaxLen(), s.Channel(), ifv, s.Actor}
	deadline := time.Now().Add(time.Duration(wait) * time.Millisecond)
	backoff := lockRetryBase
	for {
		start := len(s.Out)
		done := s.Acquiring(res)
		s.Script(lua.Get("lock_acquire"), keys, argv)
		locked := len(s.Out) > start+7 && string(s.Out[start:start+7]) == "-LOCKED"
		if !locked || wait == 0 || !time.Now().Before(deadline) || s.Up.Stopping() {
			if !locked {
				s.rememberToken(res, s.Out[start:])
				s.observe(res, s.Out[start:])
				s.AsMap(start)
			}
			done()
			return
		}
		done()
		s.Out = s.Out[:start]
		s.Waited = true
		time.Sleep(min(backoff, time.Until(deadline)))
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

// lockToken: LOCK.EXTEND <resource> <token> <ttl_ms> and LOCK.RELEASE
// <resource> <token>.
func (s req) lockToken(args [][]byte, name string) {
	res, ok := s.Resource(args[0])
	if !ok {
		return
	}
	token, ok := s.PosInt(args[1], "token", 1<<62)
	if !ok {
		return
	}
	keys := []string{s.Key("lock", res), s.Key("fence", res), s.Key("events", "log")}
	tok := strconv.FormatInt(token, 10)
	start := len(s.Out)
	if name == "lock_extend" {
		ttl, ok := s.PosInt(args[2], "ttl_ms", maxLockTTL.Milliseconds())
		if !ok {
			return
		}
		s.Script(lua.Get(name), keys, []string{tok, strconv.FormatInt(ttl, 10), s.Workspace, res, s.EventsMaxLen(), s.Channel(), s.Actor})
		s.observe(res, s.Out[start:])
		s.AsMap(start)
		return
	}
	s.Script(lua.Get(name), keys, []string{tok, s.Workspace, res, s.EventsMaxLen(), s.Channel(), s.Actor})
	if len(s.Out) > start && s.Out[start] == ':' {
		s.released(res, token)
	}
}

// released forgets the connection's token for res, and tells the registry.
func (s req) released(res string, token int64) {
	s.Drop(res)
	if s.Env.Locks != nil {
		s.Env.Locks.Released(s.Workspace, res, token)
	}
}

// observe tells the proxy's lock registry (fencing of plain writes) about a
// lock a successful ACQUIRE or EXTEND reply (token, expires_at, ...) holds.
func (s req) observe(res string, reply []byte) {
	if s.Env.Locks == nil || len(reply) == 0 || reply[0] != '*' {
		return
	}
	v, _, err := domain.ParseReply(reply)
	if err != nil {
		return
	}
	var tok, exp int64
	for i := 0; i+1 < len(v.Kids); i += 2 {
		switch v.Kids[i].Str {
		case "token":
			tok, _ = strconv.ParseInt(v.Kids[i+1].Str, 10, 64)
		case "expires_at":
			exp, _ = strconv.ParseInt(v.Kids[i+1].Str, 10, 64)
		}
	}
	if exp > 0 {
		s.Env.Locks.Acquired(s.Workspace, res, tok, exp)
	}
}

// rememberToken attaches the token of a successful LOCK.ACQUIRE reply
// (*6 token <n> ...) to the connection.
func (s req) rememberToken(res string, reply []byte) {
	const head = "*6\r\n$5\r\ntoken\r\n:"
	if len(reply) <= len(head) || string(reply[:len(head)]) != head {
		return
	}
	end := len(head)
	for end < len(reply) && reply[end] != '\r' {
		end++
	}
	if t, err := strconv.ParseInt(string(reply[len(head):end]), 10, 64); err == nil {
		if s.Locks == nil {
			s.Locks = map[string]int64{}
		}
		s.Locks[res] = t
	}
}

// lockUse: LOCK.USE <resource> <token> attaches a token held elsewhere to
// this connection, after checking that it holds the lock now.
func (s req) lockUse(args [][]byte) {
	res, ok := s.Resource(args[0])
	if !ok {
		return
	}
	token, ok := s.PosInt(args[1], "token", 1<<62)
	if !ok {
		return
	}
	start := len(s.Out)
	s.Script(lua.Get("lock_use"), []string{s.Key("lock", res)}, []string{strconv.FormatInt(token, 10), s.Actor, res})
	if len(s.Out) == start || s.Out[start] != '+' {
		return // the script's refusal (FENCED, LOCKED) or an upstream error
	}
	if s.Locks == nil {
		s.Locks = map[string]int64{}
	}
	s.Locks[res] = token
}
