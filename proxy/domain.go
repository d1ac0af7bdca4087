package proxy

import (
	"strconv"
	"strings"
	"time"

	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lua"
	"github.com/agentproxy/agentproxy/upstream"
)

// The agent domain (SPEC §5): commands the proxy serves with server-side
// scripts, in the connection's workspace. Every key a script touches is
// built here from the workspace, so agents never name (or forge) them.

const (
	maxResource   = 1100 // room for files:<path> with the longest path
	maxLockTTL    = 30 * 24 * time.Hour
	eventsMaxLen  = "10000"
	cacheTTL      = time.Hour
	cacheMaxTTL   = 24 * time.Hour
	lockRetryBase = 10 * time.Millisecond
)

// domain runs one domain command; its reply (or error) goes to out.
func (s *session) domain(c *command, info *keyspace.Command) {
	if f := featureOf(info.Name); f != "" && s.srv.opts.Disabled[f] {
		s.out = appendError(s.out, "ERR "+f+" is disabled on this proxy (features."+f+")")
		return
	}
	args := c.Args[1:]
	if strings.HasPrefix(info.Name, "file.") {
		s.file(info.Name, args)
		return
	}
	switch info.Name {
	case "lock.acquire":
		s.lockAcquire(args)
	case "lock.extend":
		s.lockToken(args, "lock_extend")
	case "lock.release":
		s.lockToken(args, "lock_release")
	case "lock.info":
		if res, ok := s.resource(args[0]); ok {
			start := len(s.out)
			s.script(lua.Get("lock_info"), []string{s.key("lock", res), s.key("fence", res)}, nil)
			s.asMap(start)
		}
	case "lock.use":
		s.lockUse(args)
	case "cache.get":
		s.cacheGet(args)
	case "cache.set":
		s.cacheSet(args)
	case "events.read":
		s.eventsRead(args)
	case "todo.replace", "todo.list", "todo.add", "todo.update", "todo.claim", "todo.remove":
		s.todo(info.Name, args)
	case "ws.info":
		s.wsInfo()
	default:
		s.out = appendError(s.out, "ERR '"+info.Name+"' is not implemented yet")
	}
}

// featureOf names the [features] flag that governs a domain command.
func featureOf(name string) string {
	switch {
	case strings.HasPrefix(name, "cache."):
		return "cache"
	case strings.HasPrefix(name, "todo."):
		return "todos"
	case strings.HasPrefix(name, "file."):
		return "files"
	case strings.HasPrefix(name, "lock."), strings.HasPrefix(name, "events."):
		return "coord"
	}
	return ""
}

// key builds <prefix>:{<ws>}:<kind>:<rest>.
func (s *session) key(kind, rest string) string {
	p := s.srv.policy.Load().Grammar.WorkspacePrefix(s.ident.Workspace)
	if rest == "" {
		return p + kind
	}
	return p + kind + ":" + rest
}

func (s *session) channel() string { return s.key("events", "") }

// resource validates a resource name (it becomes part of a key).
func (s *session) resource(b []byte) (string, bool) {
	if len(b) == 0 || len(b) > maxResource || strings.ContainsAny(string(b), "\r\n\x00") {
		s.out = appendError(s.out, "ERR resource names are 1 to 1100 bytes without CR, LF or NUL")
		return "", false
	}
	return string(b), true
}

// posInt parses a positive integer argument, answering a clear error.
func (s *session) posInt(b []byte, what string, max int64) (int64, bool) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n <= 0 || n > max {
		s.out = appendError(s.out, "ERR "+what+" must be a whole number from 1 to "+strconv.FormatInt(max, 10)+", got '"+quoteArg(b)+"'")
		return 0, false
	}
	return n, true
}

func quoteArg(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' {
			return '?'
		}
		return r
	}, string(b))
}

// script runs a domain script on a shared connection: EVALSHA, then EVAL
// when Redis no longer has it cached. The reply is appended to out.
func (s *session) script(sc *lua.Script, keys, args []string) {
	conn := s.srv.pool.Shared(s.proto)
	if conn == nil {
		s.out = appendError(s.out, ErrTryAgainDown)
		return
	}
	start := len(s.out)
	s.scratch = sc.AppendEvalSHA(s.scratch[:0], keys, args)
	if s.doPayload(conn, s.scratch, 1, 0, false) != nil {
		return
	}
	if lua.IsNoScript(s.out[start:]) {
		s.out = s.out[:start]
		s.scratch = sc.AppendEval(s.scratch[:0], keys, args)
		s.doPayload(conn, s.scratch, 1, 0, false)
	}
}

// asMap turns a flat [field, value, ...] reply at out[start:] into a RESP3
// map for RESP3 clients; RESP2 clients keep the flat array.
func (s *session) asMap(start int) {
	if s.proto != 3 || start >= len(s.out) || s.out[start] != '*' {
		return
	}
	end := start + 1
	for end < len(s.out) && s.out[end] != '\r' {
		end++
	}
	n, ok := parseInt(s.out[start+1 : end])
	if !ok || n%2 != 0 {
		return
	}
	hdr := strconv.AppendInt([]byte{'%'}, int64(n/2), 10)
	rest := append([]byte(nil), s.out[end:]...)
	s.out = append(append(s.out[:start], hdr...), rest...)
}

func (s *session) actor() string { return s.ident.Name() }

// lockAcquire: LOCK.ACQUIRE <resource> <ttl_ms> [OWNER o] [WAIT ms]. WAIT
// retries in the proxy with backoff, never blocking Redis.
func (s *session) lockAcquire(args [][]byte) {
	res, ok := s.resource(args[0])
	if !ok {
		return
	}
	ttl, ok := s.posInt(args[1], "ttl_ms", maxLockTTL.Milliseconds())
	if !ok {
		return
	}
	owner, ifv := s.actor(), ""
	var wait int64
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.out = appendError(s.out, "ERR syntax error: LOCK.ACQUIRE <resource> <ttl_ms> [OWNER o] [WAIT ms] [IFVERSION v]")
			return
		}
		switch {
		case eqFold(args[i], "owner") && len(args[i+1]) > 0 && len(args[i+1]) <= 256:
			owner = string(args[i+1])
		case eqFold(args[i], "wait"):
			if wait, ok = s.posInt(args[i+1], "WAIT ms", 600000); !ok {
				return
			}
		case eqFold(args[i], "ifversion"):
			if !s.version(args[i+1]) {
				return
			}
			ifv = string(args[i+1])
		default:
			s.out = appendError(s.out, "ERR syntax error near '"+quoteArg(args[i])+"': LOCK.ACQUIRE <resource> <ttl_ms> [OWNER o] [WAIT ms] [IFVERSION v]")
			return
		}
	}
	keys := []string{s.key("lock", res), s.key("fence", res), s.key("events", "log")}
	argv := []string{strconv.FormatInt(ttl, 10), owner, s.ident.Workspace, res, eventsMaxLen, s.channel(), ifv, s.actor()}
	deadline := time.Now().Add(time.Duration(wait) * time.Millisecond)
	backoff := lockRetryBase
	for {
		start := len(s.out)
		s.script(lua.Get("lock_acquire"), keys, argv)
		locked := len(s.out) > start+7 && string(s.out[start:start+7]) == "-LOCKED"
		if !locked || wait == 0 || !time.Now().Before(deadline) || s.stopping.Load() {
			if !locked {
				s.rememberToken(res, s.out[start:])
				s.asMap(start)
			}
			return
		}
		s.out = s.out[:start]
		time.Sleep(min(backoff, time.Until(deadline)))
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

// lockToken: LOCK.EXTEND <resource> <token> <ttl_ms> and LOCK.RELEASE
// <resource> <token>.
func (s *session) lockToken(args [][]byte, name string) {
	res, ok := s.resource(args[0])
	if !ok {
		return
	}
	token, ok := s.posInt(args[1], "token", 1<<62)
	if !ok {
		return
	}
	keys := []string{s.key("lock", res), s.key("fence", res), s.key("events", "log")}
	tok := strconv.FormatInt(token, 10)
	start := len(s.out)
	if name == "lock_extend" {
		ttl, ok := s.posInt(args[2], "ttl_ms", maxLockTTL.Milliseconds())
		if !ok {
			return
		}
		s.script(lua.Get(name), keys, []string{tok, strconv.FormatInt(ttl, 10), s.ident.Workspace, res, eventsMaxLen, s.channel(), s.actor()})
		s.asMap(start)
		return
	}
	s.script(lua.Get(name), keys, []string{tok, s.ident.Workspace, res, eventsMaxLen, s.channel(), s.actor()})
	if len(s.out) > start && s.out[start] == ':' && s.locks != nil {
		delete(s.locks, res)
	}
}

// rememberToken attaches the token of a successful LOCK.ACQUIRE reply
// (*6 token <n> ...) to the connection.
func (s *session) rememberToken(res string, reply []byte) {
	const head = "*6\r\n$5\r\ntoken\r\n:"
	if len(reply) <= len(head) || string(reply[:len(head)]) != head {
		return
	}
	end := len(head)
	for end < len(reply) && reply[end] != '\r' {
		end++
	}
	if t, err := strconv.ParseInt(string(reply[len(head):end]), 10, 64); err == nil {
		if s.locks == nil {
			s.locks = map[string]int64{}
		}
		s.locks[res] = t
	}
}

// heldToken is the token this connection holds for resource (from
// LOCK.ACQUIRE or LOCK.USE), injected into its writes (SPEC §6), or "".
func (s *session) heldToken(resource string) string {
	if t, ok := s.locks[resource]; ok {
		return strconv.FormatInt(t, 10)
	}
	return ""
}

// lockUse: LOCK.USE <resource> <token> attaches a token held elsewhere to
// this connection, after checking that it holds the lock now.
func (s *session) lockUse(args [][]byte) {
	res, ok := s.resource(args[0])
	if !ok {
		return
	}
	token, ok := s.posInt(args[1], "token", 1<<62)
	if !ok {
		return
	}
	start := len(s.out)
	s.script(lua.Get("lock_use"), []string{s.key("lock", res)}, []string{strconv.FormatInt(token, 10), s.actor(), res})
	if len(s.out) == start || s.out[start] != '+' {
		return // the script's refusal (FENCED, LOCKED) or an upstream error
	}
	if s.locks == nil {
		s.locks = map[string]int64{}
	}
	s.locks[res] = token
}

// version validates an IFVERSION argument (0: create only).
func (s *session) version(b []byte) bool {
	if n, err := strconv.ParseInt(string(b), 10, 64); err != nil || n < 0 {
		s.out = appendError(s.out, "ERR IFVERSION must be a version number (0: create only), got '"+quoteArg(b)+"'")
		return false
	}
	return true
}

// cacheEntry validates <tool> <hash> and names the entry "<tool>:<hash>".
func (s *session) cacheEntry(args [][]byte) (string, bool) {
	tool, ok := s.resource(args[0])
	if !ok {
		return "", false
	}
	hash, ok := s.resource(args[1])
	if !ok {
		return "", false
	}
	return tool + ":" + hash, true
}

// cacheGet: CACHE.GET <tool> <hash> → the cached value or nil; hits and
// misses are counted.
func (s *session) cacheGet(args [][]byte) {
	entry, ok := s.cacheEntry(args)
	if !ok {
		return
	}
	conn := s.srv.pool.Shared(s.proto)
	if conn == nil {
		s.out = appendError(s.out, ErrTryAgainDown)
		return
	}
	start := len(s.out)
	s.scratch = upstream.AppendCommand(s.scratch[:0], "HGET", s.key("cache", entry), "value")
	if s.doPayload(conn, s.scratch, 1, 0, false) != nil {
		return
	}
	if r := s.out[start:]; len(r) > 0 && (r[0] == '_' || string(r[:min(len(r), 3)]) == "$-1") {
		s.srv.Stats.CacheMisses.Add(1)
	} else if len(r) > 0 && r[0] == '$' {
		s.srv.Stats.CacheHits.Add(1)
	}
}

// cacheSet: CACHE.SET <tool> <hash> <value> [TTL ms], with the cache TTL
// policy (default 1 h, at most 24 h).
func (s *session) cacheSet(args [][]byte) {
	entry, ok := s.cacheEntry(args)
	if !ok {
		return
	}
	ttl := cacheTTL.Milliseconds()
	token, ifv := "", ""
	for i := 3; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.out = appendError(s.out, "ERR syntax error: CACHE.SET <tool> <hash> <value> [TTL ms] [IFVERSION v] [FENCE token]")
			return
		}
		switch {
		case eqFold(args[i], "ttl"):
			if ttl, ok = s.posInt(args[i+1], "TTL ms", 1<<40); !ok {
				return
			}
			ttl = min(ttl, cacheMaxTTL.Milliseconds())
		case eqFold(args[i], "fence"):
			if _, ok = s.posInt(args[i+1], "FENCE token", 1<<62); !ok {
				return
			}
			token = string(args[i+1])
		case eqFold(args[i], "ifversion"):
			if !s.version(args[i+1]) {
				return
			}
			ifv = string(args[i+1])
		default:
			s.out = appendError(s.out, "ERR syntax error near '"+quoteArg(args[i])+"': CACHE.SET <tool> <hash> <value> [TTL ms] [IFVERSION v] [FENCE token]")
			return
		}
	}
	res := "cache:" + entry
	if token == "" {
		token = s.heldToken(res)
	}
	s.script(lua.Get("cache_set"), []string{s.key("cache", entry), s.key("events", "log"), s.key("lock", res), s.key("fence", res)},
		[]string{string(args[2]), strconv.FormatInt(ttl, 10), s.ident.Workspace, res, eventsMaxLen, s.channel(), s.actor(), token, ifv})
}

// eventsRead: EVENTS.READ [AFTER id] [COUNT n] [BLOCK ms] reads the
// workspace's event log (XREAD's reply); BLOCK runs on a dedicated
// connection like any blocking command.
func (s *session) eventsRead(args [][]byte) {
	after, count, block := "0-0", "100", ""
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.out = appendError(s.out, "ERR syntax error: EVENTS.READ [AFTER id] [COUNT n] [BLOCK ms]")
			return
		}
		v := args[i+1]
		switch {
		case eqFold(args[i], "after"):
			after = string(v)
		case eqFold(args[i], "count"):
			if _, ok := s.posInt(v, "COUNT", 100000); !ok {
				return
			}
			count = string(v)
		case eqFold(args[i], "block"):
			if n, err := strconv.ParseInt(string(v), 10, 64); err != nil || n < 0 {
				s.out = appendError(s.out, "ERR BLOCK must be milliseconds (0: forever), got '"+quoteArg(v)+"'")
				return
			}
			block = string(v)
		default:
			s.out = appendError(s.out, "ERR syntax error near '"+quoteArg(args[i])+"': EVENTS.READ [AFTER id] [COUNT n] [BLOCK ms]")
			return
		}
	}
	argv := []string{"XREAD", "COUNT", count}
	if block != "" {
		argv = append(argv, "BLOCK", block)
	}
	argv = append(argv, "STREAMS", s.key("events", "log"), after)
	raw := upstream.AppendCommand(nil, argv...)
	c := command{Raw: raw, off: -1}
	for _, a := range argv {
		c.Args = append(c.Args, []byte(a))
	}
	if block != "" {
		s.forwardBlocking(&c)
		return
	}
	s.forwardShared([]command{c})
}
