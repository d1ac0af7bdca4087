package policy

import (
	"strconv"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/keyspace"
)

// MaxScanCount bounds SCAN's COUNT for agents: SCAN walks the whole
// keyspace, every workspace's keys, and COUNT 1000000000 would make it KEYS
// * in one call that stalls Redis for everyone.
const MaxScanCount = 1000

// ConfineScan keeps an agent's SCAN (args) inside workspace ws: no MATCH
// gets MATCH <ws>*, a MATCH starting with * is narrowed to <ws>*..., one
// already inside the workspace is kept, and anything else is refused (in
// warn mode patterns are left alone). A COUNT above MaxScanCount is
// lowered. When the command must change, its new RESP form is appended to
// dst and rewritten is true; deny is the refusal, if any.
func (p *Policy) ConfineScan(dst []byte, args [][]byte, ws string) (out []byte, rewritten bool, deny string) {
	g := p.Grammar
	wsPrefix := g.WorkspacePrefix(ws)
	match, count := -1, -1
	for i := 2; i+1 < len(args); i += 2 {
		switch {
		case keyspace.EqFold(args[i], "match"):
			match = i + 1 // the last MATCH wins, as in Redis
		case keyspace.EqFold(args[i], "count"):
			if n, err := strconv.Atoi(string(args[i+1])); err == nil && n > MaxScanCount {
				count = i + 1
			}
		}
	}
	var pattern []byte
	switch {
	case p.Mode != Enforce:
		match = -2 // keep the arguments as they are
	case match < 0:
		pattern = append([]byte(wsPrefix), '*')
	case g.Pattern(args[match], ws) == keyspace.OK:
		match = -2
	case len(args[match]) > 0 && args[match][0] == '*':
		pattern = append([]byte(wsPrefix), args[match]...)
	default:
		return dst, false, "NOPERM SCAN MATCH '" + quote(args[match]) + "' reaches outside workspace '" + ws + "'; start the pattern with " + wsPrefix + " or *"
	}
	if match == -2 && count < 0 {
		return dst, false, ""
	}
	n := len(args)
	if match == -1 {
		n += 2
	}
	dst = redcon.AppendArray(dst, n)
	for i, a := range args {
		switch i {
		case match:
			a = pattern
		case count:
			a = []byte(strconv.Itoa(MaxScanCount))
		}
		dst = redcon.AppendBulk(dst, a)
	}
	if match == -1 {
		dst = redcon.AppendBulkString(dst, "MATCH")
		dst = redcon.AppendBulk(dst, pattern)
	}
	return dst, true, ""
}
