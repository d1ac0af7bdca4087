package fencing

import (
	"strconv"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/keyspace"
)

// The TTL rules of the commonest writes need no script: SET, SETEX and
// PSETEX say the key's whole expiry in their arguments, so the proxy can
// write the rule into them (SET k v → SET k v PX <default>; an EX, PX or
// SETEX longer than the max → the max). What they cannot say without the
// key's current TTL (KEEPTTL) or the clock (EXAT, PXAT) takes the script.

// appendSetTTL handles a SET, SETEX or PSETEX whose expiry it can judge
// from its arguments: it appends the command with t applied to dst when
// that changes it (rewritten), and reports handled also when the command
// already follows t. A command it cannot judge is not handled (dst is
// unchanged).
func appendSetTTL(dst []byte, args [][]byte, t TTLOp) (out []byte, rewritten, handled bool) {
	switch {
	case keyspace.EqFold(args[0], "set"):
		return appendSet(dst, args, t)
	case keyspace.EqFold(args[0], "setex") && len(args) == 4:
		return appendSetex(dst, args, t, 1000)
	case keyspace.EqFold(args[0], "psetex") && len(args) == 4:
		return appendSetex(dst, args, t, 1)
	}
	return dst, false, false
}

// ttlFor is the expiry, in ms, a key written with ms (0: none) gets
// under t.
func ttlFor(ms int64, t TTLOp) int64 {
	switch {
	case ms <= 0 && t.DefaultMs > 0:
		ms = t.DefaultMs
	case ms <= 0:
		ms = t.MaxMs
	}
	if t.MaxMs > 0 && ms > t.MaxMs {
		ms = t.MaxMs
	}
	return ms
}

func appendSet(dst []byte, args [][]byte, t TTLOp) ([]byte, bool, bool) {
	if len(args) < 3 {
		return dst, false, false
	}
	at := -1 // index of EX or PX
	var ms int64
	for i := 3; i < len(args); i++ {
		a := args[i]
		switch {
		case keyspace.EqFold(a, "nx"), keyspace.EqFold(a, "xx"), keyspace.EqFold(a, "get"):
		case (keyspace.EqFold(a, "ex") || keyspace.EqFold(a, "px")) && i+1 < len(args) && at < 0:
			n, err := strconv.ParseInt(string(args[i+1]), 10, 64)
			if err != nil || n <= 0 || n > 1<<40 {
				return dst, false, false // Redis answers the error
			}
			if keyspace.EqFold(a, "ex") {
				n *= 1000
			}
			at, ms = i, n
			i++
		default:
			return dst, false, false // KEEPTTL, EXAT, PXAT, a repeated or unknown option
		}
	}
	ttl := ttlFor(ms, t)
	if ttl <= 0 {
		return dst, false, false
	}
	if at >= 0 && ttl == ms {
		return dst, false, true // within the rule
	}
	n := len(args)
	if at < 0 {
		n += 2
	}
	dst = redcon.AppendArray(dst, n)
	for i, a := range args {
		switch {
		case i == at:
			dst = redcon.AppendBulkString(dst, "PX")
		case at >= 0 && i == at+1:
			dst = redcon.AppendBulkString(dst, strconv.FormatInt(ttl, 10))
		default:
			dst = redcon.AppendBulk(dst, a)
		}
	}
	if at < 0 {
		dst = redcon.AppendBulkString(dst, "PX")
		dst = redcon.AppendBulkString(dst, strconv.FormatInt(ttl, 10))
	}
	return dst, true, true
}

func appendSetex(dst []byte, args [][]byte, t TTLOp, unit int64) ([]byte, bool, bool) {
	n, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return dst, false, false
	}
	ms := n * unit
	ttl := ttlFor(ms, t)
	if ttl == ms {
		return dst, false, true // within the rule: as sent
	}
	dst = redcon.AppendArray(dst, 4)
	dst = redcon.AppendBulkString(dst, "PSETEX")
	dst = redcon.AppendBulk(dst, args[1])
	dst = redcon.AppendBulkString(dst, strconv.FormatInt(ttl, 10))
	return redcon.AppendBulk(dst, args[3]), true, true
}
