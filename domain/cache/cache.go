// Package cache serves CACHE.GET and CACHE.SET, the tool-result cache: an
// entry is the hash <ws>:cache:<tool>:<hash> (value, version) with the
// cache TTL policy (default 1 h, at most 24 h); hits and misses are counted.
package cache

import (
	"strconv"
	"time"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lua"
	"github.com/agentproxy/agentproxy/upstream"
)

const (
	cacheTTL    = time.Hour
	cacheMaxTTL = 24 * time.Hour
)

// req is a domain request as this family's handlers see it.
type req struct{ *domain.Req }

func init() {
	domain.RegisterTx("cache.get", "cache", func(r *domain.Req, a [][]byte) { req{r}.cacheGet(a) },
		func(r *domain.Req, _ [][]byte, reply []byte) []byte { req{r}.count(reply); return reply })
	domain.RegisterTx("cache.set", "cache", func(r *domain.Req, a [][]byte) { req{r}.cacheSet(a) }, domain.TxAsIs)
}

// cacheEntry validates <tool> <hash> and names the entry "<tool>:<hash>".
func (s req) cacheEntry(args [][]byte) (string, bool) {
	tool, ok := s.Resource(args[0])
	if !ok {
		return "", false
	}
	hash, ok := s.Resource(args[1])
	if !ok {
		return "", false
	}
	return tool + ":" + hash, true
}

// cacheGet: CACHE.GET <tool> <hash> → the cached value or nil; hits and
// misses are counted.
func (s req) cacheGet(args [][]byte) {
	entry, ok := s.cacheEntry(args)
	if !ok {
		return
	}
	start := len(s.Out)
	s.Scratch = upstream.AppendCommand(s.Scratch[:0], "HGET", s.Key("cache", entry), "value")
	if s.Up.Shared(s.Req, s.Scratch, 1) != nil {
		return
	}
	s.count(s.Out[start:])
}

// count counts a CACHE.GET reply as a hit or a miss.
func (s req) count(r []byte) {
	if len(r) > 0 && (r[0] == '_' || string(r[:min(len(r), 3)]) == "$-1") {
		s.Env.Stats.CacheMisses.Add(1)
	} else if len(r) > 0 && r[0] == '$' {
		s.Env.Stats.CacheHits.Add(1)
	}
}

// cacheSet: CACHE.SET <tool> <hash> <value> [TTL ms], with the cache TTL
// policy (default 1 h, at most 24 h).
func (s req) cacheSet(args [][]byte) {
	entry, ok := s.cacheEntry(args)
	if !ok {
		return
	}
	ttl := cacheTTL.Milliseconds()
	token, ifv := "", ""
	for i := 3; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.Out = wire.AppendError(s.Out, "ERR syntax error: CACHE.SET <tool> <hash> <value> [TTL ms] [IFVERSION v] [FENCE token]")
			return
		}
		switch {
		case keyspace.EqFold(args[i], "ttl"):
			if ttl, ok = s.PosInt(args[i+1], "TTL ms", 1<<40); !ok {
				return
			}
			ttl = min(ttl, cacheMaxTTL.Milliseconds())
		case keyspace.EqFold(args[i], "fence"):
			if _, ok = s.PosInt(args[i+1], "FENCE token", 1<<62); !ok {
				return
			}
			token = string(args[i+1])
		case keyspace.EqFold(args[i], "ifversion"):
			if !s.Version(args[i+1]) {
				return
			}
			ifv = string(args[i+1])
		default:
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(args[i])+"': CACHE.SET <tool> <hash> <value> [TTL ms] [IFVERSION v] [FENCE token]")
			return
		}
	}
	res := "cache:" + entry
	if token == "" {
		token = s.HeldToken(res)
	}
	s.Script(lua.Get("cache_set"), []string{s.Key("cache", entry), s.Key("events", "log"), s.Key("lock", res), s.Key("fence", res)},
		[]string{string(args[2]), strconv.FormatInt(ttl, 10), s.Workspace, res, s.EventsMaxLen(), s.Channel(), s.Actor, token, ifv})
}
