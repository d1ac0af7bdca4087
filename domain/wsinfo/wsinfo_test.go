package wsinfo_test

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/domain/domaintest"
	_ "github.com/agentproxy/agentproxy/domain/locks"
	_ "github.com/agentproxy/agentproxy/domain/wsinfo"
)

// TestWSInfo counts the keys of the request's workspace only.
func TestWSInfo(t *testing.T) {
	e := domaintest.Redis(t)
	d := e.Direct()
	d.Do("SET", "deepagents:{ws}:kv:a", "1")
	d.Do("SET", "deepagents:{ws}:kv:b", "2")
	d.Do("SET", "deepagents:{other}:kv:c", "3")
	r := e.Req("ws", "alice", 2)
	e.Do(r, "lock.acquire doc 10000")
	got := e.Do(r, "ws.info")
	for _, want := range []string{"$9\r\nworkspace\r\n$2\r\nws\r\n", "$7\r\nkeys:kv\r\n:2\r\n", "$9\r\nkeys:lock\r\n:1\r\n", "$10\r\nlocks_held\r\n:1\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("WS.INFO %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "other") {
		t.Errorf("WS.INFO shows another workspace: %q", got)
	}
}
