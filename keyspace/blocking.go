package keyspace

import (
	"strconv"
	"time"
)

// timeoutArg says where a blocking command's own timeout is.
type timeoutArg struct {
	index   int    // argument index; -1: the last argument
	keyword string // or the argument after this keyword (XREAD BLOCK)
	millis  bool   // milliseconds; otherwise seconds (a float)
}

// blockTimeouts are the blocking commands' timeouts, as data.
var blockTimeouts = map[string]timeoutArg{
	"blpop": {index: -1}, "brpop": {index: -1}, "brpoplpush": {index: -1}, "blmove": {index: -1},
	"bzpopmin": {index: -1}, "bzpopmax": {index: -1},
	"blmpop": {index: 1}, "bzmpop": {index: 1},
	"wait": {index: 2, millis: true}, "waitaof": {index: 3, millis: true},
	"xread": {keyword: "block", millis: true}, "xreadgroup": {keyword: "block", millis: true},
}

// BlockTimeout is how long to wait for the reply of a blocking command:
// its own timeout plus margin, or -1 (forever) for a timeout of 0. A
// timeout that does not parse gets the margin alone (Redis answers such
// commands with an error at once).
func BlockTimeout(c *Command, args [][]byte, margin time.Duration) time.Duration {
	ta, ok := blockTimeouts[c.Name]
	if !ok {
		return margin
	}
	var t []byte
	switch {
	case ta.keyword != "":
		for i := 1; i+1 < len(args); i++ {
			if EqFold(args[i], ta.keyword) {
				t = args[i+1]
				break
			}
		}
	case ta.index < 0 && len(args) > 1:
		t = args[len(args)-1]
	case ta.index > 0 && ta.index < len(args):
		t = args[ta.index]
	}
	if t == nil {
		return margin
	}
	var d time.Duration
	if ta.millis {
		ms, err := strconv.ParseInt(string(t), 10, 64)
		if err != nil || ms < 0 {
			return margin
		}
		d = time.Duration(ms) * time.Millisecond
	} else {
		sec, err := strconv.ParseFloat(string(t), 64)
		if err != nil || sec < 0 {
			return margin
		}
		d = time.Duration(sec * float64(time.Second))
	}
	if d == 0 {
		return -1
	}
	return d + margin
}

// HasBlockArg reports whether an XREAD/XREADGROUP blocks: a BLOCK option
// before its STREAMS keyword.
func HasBlockArg(args [][]byte) bool {
	for _, a := range args[1:] {
		if EqFold(a, "streams") {
			return false
		}
		if EqFold(a, "block") {
			return true
		}
	}
	return false
}
