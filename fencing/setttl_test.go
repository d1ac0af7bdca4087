package fencing

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/wire"
)

func TestAppendSetTTL(t *testing.T) {
	rule := TTLOp{DefaultMs: 3600000, MaxMs: 7200000}
	maxOnly := TTLOp{MaxMs: 60000}
	for _, tc := range []struct {
		cmd  string
		t    TTLOp
		want string // the rewritten command; "=" as sent; "" not handled (script)
	}{
		{"SET k v", rule, "SET k v PX 3600000"},
		{"set k v NX GET", rule, "set k v NX GET PX 3600000"},
		{"SET k v EX 10", rule, "="},
		{"SET k v PX 10", rule, "="},
		{"SET k v EX 99999", rule, "SET k v PX 7200000"},
		{"SET k v px 99999999 nx", rule, "SET k v PX 7200000 nx"},
		{"SET k v", maxOnly, "SET k v PX 60000"},
		{"SET k v KEEPTTL", rule, ""},
		{"SET k v EXAT 99999999999", rule, ""},
		{"SET k v PXAT 1", rule, ""},
		{"SET k v EX notanumber", rule, ""},
		{"SET k v EX -5", rule, ""},
		{"SET k v EX 1 PX 1", rule, ""},
		{"SET k v BOGUS", rule, ""},
		{"SETEX k 10 v", rule, "="},
		{"SETEX k 99999 v", rule, "PSETEX k 7200000 v"},
		{"PSETEX k 99999999 v", rule, "PSETEX k 7200000 v"},
		{"PSETEX k 5 v", rule, "="},
		{"SETEX k x v", rule, ""},
		{"HSET k f v", rule, ""},
	} {
		var args [][]byte
		for _, a := range strings.Fields(tc.cmd) {
			args = append(args, []byte(a))
		}
		out, rewritten, handled := appendSetTTL(nil, args, tc.t)
		got := ""
		switch {
		case rewritten:
			elems, ok := wire.Elements(out)
			if !ok {
				t.Fatalf("%s: bad RESP %q", tc.cmd, out)
			}
			var parts []string
			for _, el := range elems {
				b := out[el[0]:el[1]]
				i := strings.Index(string(b), "\r\n")
				parts = append(parts, string(b[i+2:len(b)-2]))
			}
			got = strings.Join(parts, " ")
		case handled:
			got = "="
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.cmd, got, tc.want)
		}
	}
}
