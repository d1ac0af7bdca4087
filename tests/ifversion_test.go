package tests

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

// TestIfVersionCacheAndLock: IFVERSION on CACHE.SET (entry version) and
// LOCK.ACQUIRE (the newest token) on both backends; a CONFLICT carries the
// current version and writes nothing, not even an event.
func TestIfVersionCacheAndLock(t *testing.T) {
	lkBackends(t, nil, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		xlen := func() string { return c.DoS("XLEN", "deepagents:{default}:events:log") }
		steps := []struct {
			cmd  []string
			want string // prefix
		}{
			{[]string{"CACHE.SET", "t", "h", "v1", "IFVERSION", "0"}, "+OK"},
			{[]string{"CACHE.SET", "t", "h", "v9", "IFVERSION", "0"}, "-CONFLICT version is 1, not 0"},
			{[]string{"CACHE.SET", "t", "h", "v2", "IFVERSION", "1"}, "+OK"},
			{[]string{"CACHE.SET", "t", "h", "v9", "IFVERSION", "1"}, "-CONFLICT version is 2, not 1"},
			{[]string{"CACHE.GET", "t", "h"}, "$2\r\nv2\r\n"},
			{[]string{"CACHE.SET", "t", "h", "v3"}, "+OK"},
			{[]string{"CACHE.SET", "t", "h", "v9", "IFVERSION", "x"}, "-ERR IFVERSION must be a version number"},
			{[]string{"LOCK.ACQUIRE", "r", "60000", "IFVERSION", "0"}, "*6\r\n$5\r\ntoken\r\n:1\r\n"},
			{[]string{"LOCK.RELEASE", "r", "1"}, ":1"},
			{[]string{"LOCK.ACQUIRE", "r", "60000", "IFVERSION", "0"}, "-CONFLICT version is 1, not 0"},
			{[]string{"LOCK.ACQUIRE", "r", "60000", "IFVERSION", "1"}, "*6\r\n$5\r\ntoken\r\n:2\r\n"},
		}
		for _, st := range steps {
			before := xlen()
			got := c.DoS(st.cmd...)
			if !strings.HasPrefix(got, st.want) {
				t.Fatalf("%s: %v: got %q, want prefix %q", b.name, st.cmd, got, st.want)
			}
			if strings.HasPrefix(got, "-") && xlen() != before {
				t.Fatalf("%s: %v: refused but an event was logged", b.name, st.cmd)
			}
		}
		if got := c.DoS("CACHE.GET", "t", "h"); got != "$2\r\nv3\r\n" {
			t.Fatalf("%s: refused writes changed the entry: %q", b.name, got)
		}
	})
}
