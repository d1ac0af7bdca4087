package fencing

import (
	"bytes"
	"strconv"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/lua"
	"github.com/agentproxy/agentproxy/policy"
)

// Guard is a resource a write is checked against, and the writing
// connection's token for it ("" when it holds none).
type Guard struct {
	Prefix   string // "<prefix>:{ws}:" of the resource's workspace
	Resource string
	Token    string
}

// TTLOp is the TTL policy for one written key: the TTL a key left without
// one gets, and the longest it may keep (0: none).
type TTLOp struct {
	Key       []byte
	DefaultMs int64
	MaxMs     int64
}

// Candidates appends to gs the resources that guard a key whose part after
// prefix ("<prefix>:{ws}:") is rest ("kv:a:b" → kv, kv:a, kv:a:b), with
// the tokens held has for them (the connection's, for its workspace; nil
// for another), skipping those already in gs.
func Candidates(gs []Guard, prefix []byte, rest []byte, held map[string]int64) []Guard {
	for i := nextGuard(rest, 0); i >= 0; i = nextGuard(rest, i+1) {
		res := string(rest[:i])
		dup := false
		for _, g := range gs {
			dup = dup || (g.Resource == res && g.Prefix == string(prefix))
		}
		if dup {
			continue
		}
		tok := ""
		if t, ok := held[res]; ok {
			tok = strconv.FormatInt(t, 10)
		}
		gs = append(gs, Guard{Prefix: string(prefix), Resource: res, Token: tok})
	}
	return gs
}

// Holds reports whether held has a token for a resource guarding rest.
func Holds(held map[string]int64, rest []byte) bool {
	if len(held) == 0 {
		return false
	}
	for i := nextGuard(rest, 0); i >= 0; i = nextGuard(rest, i+1) {
		if _, ok := held[string(rest[:i])]; ok {
			return true
		}
	}
	return false
}

var script = lua.Get("fenced_write")

// Script is the fenced-write script.
func Script() *lua.Script { return script }

// AppendScript appends the fenced-write script's call for the command args
// (whose keys are keys) to dst: EVALSHA, or EVAL when full (inside MULTI,
// where a NOSCRIPT could not be retried).
func AppendScript(dst []byte, full bool, proto int, actor string, guards []Guard, ttls []TTLOp, args, keys [][]byte) []byte {
	nl := len(guards)
	nk := 2*nl + len(keys)
	argc := 3 + 2*nl + 1 + 3*len(ttls) + len(args)
	dst = redcon.AppendArray(dst, 3+nk+argc)
	if full {
		dst = redcon.AppendBulkString(dst, "EVAL")
		dst = redcon.AppendBulkString(dst, script.Src)
	} else {
		dst = redcon.AppendBulkString(dst, "EVALSHA")
		dst = redcon.AppendBulkString(dst, script.SHA)
	}
	dst = redcon.AppendBulkString(dst, strconv.Itoa(nk))
	for _, g := range guards {
		dst = redcon.AppendBulkString(dst, g.Prefix+"lock:"+g.Resource)
	}
	for _, g := range guards {
		dst = redcon.AppendBulkString(dst, g.Prefix+"fence:"+g.Resource)
	}
	for _, k := range keys {
		dst = redcon.AppendBulk(dst, k)
	}
	dst = redcon.AppendBulkString(dst, strconv.Itoa(proto))
	dst = redcon.AppendBulkString(dst, actor)
	dst = redcon.AppendBulkString(dst, strconv.Itoa(nl))
	for _, g := range guards {
		dst = redcon.AppendBulkString(dst, g.Resource)
		dst = redcon.AppendBulkString(dst, g.Token)
	}
	dst = redcon.AppendBulkString(dst, strconv.Itoa(len(ttls)))
	for _, t := range ttls {
		dst = redcon.AppendBulk(dst, t.Key)
		dst = redcon.AppendBulkString(dst, strconv.FormatInt(t.DefaultMs, 10))
		dst = redcon.AppendBulkString(dst, strconv.FormatInt(t.MaxMs, 10))
	}
	for _, a := range args {
		dst = redcon.AppendBulk(dst, a)
	}
	return dst
}

// AppendTTL appends, for a write that needs no guard, the commands that
// apply the TTL policy to its keys, and returns how many it appended (their
// replies are not the client's): PEXPIRE key default NX gives a key left
// without a TTL the default, PEXPIRE key max LT clamps a longer one (and
// gives a persistent one the max).
func AppendTTL(dst []byte, ttls []TTLOp) ([]byte, int) {
	n := 0
	for _, t := range ttls {
		if t.DefaultMs > 0 {
			dst = appendPexpire(dst, t.Key, t.DefaultMs, "NX")
			n++
		}
		if t.MaxMs > 0 {
			dst = appendPexpire(dst, t.Key, t.MaxMs, "LT")
			n++
		}
	}
	return dst, n
}

func appendPexpire(dst, key []byte, ms int64, cond string) []byte {
	dst = redcon.AppendArray(dst, 4)
	dst = redcon.AppendBulkString(dst, "PEXPIRE")
	dst = redcon.AppendBulk(dst, key)
	dst = redcon.AppendBulkString(dst, strconv.FormatInt(ms, 10))
	return redcon.AppendBulkString(dst, cond)
}

// MaxScriptArgs is the most arguments of a command the fenced-write script
// runs (Lua's unpack stops a little short of 8000).
const MaxScriptArgs = 7900

// Write is a plain write to plan: the command, which of its arguments are
// keys and which of those it writes, and who sends it.
type Write struct {
	Args          [][]byte
	Raw           []byte // the command as RESP
	Keys, Written []int
	WS, Actor     string
	Proto         int
	Held          map[string]int64 // the connection's lock tokens
	Blocking      bool
	// Check: whether a lock guards it cannot be decided now — it runs
	// later than it is planned (queued in MULTI, checked at EXEC; behind a
	// command in its batch that may take time) — so every key of a fenced
	// kind takes the script.
	Check bool
	// Full: the command runs inside MULTI or down a tunnel, where no
	// hidden reply can be taken out and no NOSCRIPT retried: any plan is
	// the script, sent as EVAL.
	Full bool
}

// Plan is what a write needs beyond forwarding.
type Plan struct {
	Raw     []byte // the command to send instead (nil: as it is)
	Hidden  int    // replies after its own that are not the client's
	Wrap    bool   // it runs as the fenced-write script
	Deny    string // refused
	Evented []int  // the written keys of evented kinds
}

// Scratch keeps a planner's slices between writes (no allocation in the
// steady state).
type Scratch struct {
	ttls   []TTLOp
	guards []Guard
	keys   [][]byte
}

// PlanWrite plans w under p's write rules with the lock registry reg.
// The rewritten command, if any, is appended to dst (returned in
// Plan.Raw); evented key indexes are appended to ev. Each key is judged in
// its own workspace (an admin's, or a user's with several, may differ from
// the connection's); the connection's tokens count only in its own.
func PlanWrite(dst []byte, ev []int, w *Write, p *policy.Policy, reg *Registry, sc *Scratch) ([]byte, []int, Plan) {
	rules, g := p.Writes, p.Grammar
	guard := false
	sc.ttls = sc.ttls[:0]
	evLo := len(ev)
	for _, i := range w.Written {
		key := w.Args[i]
		ws, kind, n := g.Split(key)
		if kind < 0 {
			continue
		}
		rest := key[n:]
		if rules.Fence[kind] && (rules.Strict || w.Check || reg.MayBeLocked(ws, rest) || (string(ws) == w.WS && Holds(w.Held, rest))) {
			guard = true
		}
		if r := rules.TTL(kind, key); r != nil {
			sc.ttls = append(sc.ttls, TTLOp{Key: key, DefaultMs: r.Default.Milliseconds(), MaxMs: r.Max.Milliseconds()})
		}
		if rules.Evented[kind] {
			ev = append(ev, i)
		}
	}
	pl := Plan{Evented: ev[evLo:]}
	switch {
	case !guard && len(sc.ttls) == 0:
		return dst, ev, pl
	case len(w.Args) > MaxScriptArgs && guard:
		pl.Deny = "ERR a write of more than " + strconv.Itoa(MaxScriptArgs) + " arguments cannot be checked against the locks that may guard its keys (the check is a script, which takes at most that many); send it in parts"
		return dst, ev, pl
	case len(w.Args) > MaxScriptArgs && w.Full:
		pl.Deny = "ERR a write of more than " + strconv.Itoa(MaxScriptArgs) + " arguments inside MULTI cannot have its TTL rules applied (they run in a script, which takes at most that many); send it in parts"
		return dst, ev, pl
	case w.Blocking && guard && w.Full:
		pl.Deny = "ERR a blocking command inside MULTI cannot write a key of a fenced kind: the lock check runs at EXEC in a script, where blocking commands cannot run; send its non-blocking form, which MULTI runs the same way"
		return dst, ev, pl
	case w.Blocking && guard:
		pl.Deny = "ERR a blocking command cannot write a key a lock may guard (the check runs in a script, where it cannot block); use the non-blocking form"
		return dst, ev, pl
	case w.Blocking && w.Full:
		// Inside MULTI it runs as its non-blocking form, which can be
		// wrapped; a blocking command cannot (NOSCRIPT).
		pl.Deny = "ERR a blocking command inside MULTI cannot write a key with TTL rules; MULTI runs it without blocking anyway: send its non-blocking form"
		return dst, ev, pl
	}
	start := len(dst)
	if !guard && len(sc.ttls) == 1 && !w.Blocking {
		var rewritten, handled bool
		if dst, rewritten, handled = appendSetTTL(dst, w.Args, sc.ttls[0]); handled {
			if rewritten {
				pl.Raw = dst[start:len(dst):len(dst)]
			}
			return dst, ev, pl
		}
	}
	if w.Blocking || len(w.Args) > MaxScriptArgs {
		// A blocking command cannot run in a script, nor can one with
		// more arguments than Lua unpacks: the PEXPIREs follow it on its
		// connection (Redis runs them once it unblocks).
		dst = append(dst, w.Raw...)
		dst, pl.Hidden = AppendTTL(dst, sc.ttls)
	} else {
		// The script applies the TTL rules only when the write succeeded
		// (a refused write changes nothing), atomically with it.
		sc.guards = sc.guards[:0]
		if guard {
			for _, i := range w.Written {
				key := w.Args[i]
				ws, kind, n := g.Split(key)
				if kind < 0 || !rules.Fence[kind] {
					continue
				}
				held := w.Held
				if string(ws) != w.WS {
					held = nil
				}
				sc.guards = Candidates(sc.guards, key[:n], key[n:], held)
			}
		}
		sc.keys = sc.keys[:0]
		for _, i := range w.Keys {
			sc.keys = append(sc.keys, w.Args[i])
		}
		dst = AppendScript(dst, w.Full, w.Proto, w.Actor, sc.guards, sc.ttls, w.Args, sc.keys)
		pl.Wrap = true
	}
	pl.Raw = dst[start:len(dst):len(dst)]
	return dst, ev, pl
}

// FullForm turns a wrapped write's EVALSHA into the EVAL of the script's
// source (for a Redis that lost the script), or nil.
func FullForm(raw []byte) []byte {
	i := bytes.Index(raw, []byte(script.SHA))
	j := bytes.IndexByte(raw, '\n')
	if i < 0 || j < 0 {
		return nil
	}
	req := append([]byte(nil), raw[:j+1]...)
	req = append(req, "$4\r\nEVAL\r\n$"...)
	req = strconv.AppendInt(req, int64(len(script.Src)), 10)
	req = append(req, "\r\n"+script.Src...)
	return append(req, raw[i+len(script.SHA):]...)
}
