package lua_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/lua"
)

// decodeCommand parses one RESP array of bulk strings (a command as a
// client sends it) and requires it to fill b exactly.
func decodeCommand(b []byte) ([]string, error) {
	line := func() (string, error) {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			return "", fmt.Errorf("no CRLF")
		}
		s := string(b[:i])
		b = b[i+2:]
		return s, nil
	}
	h, err := line()
	if err != nil || len(h) < 2 || h[0] != '*' {
		return nil, fmt.Errorf("bad array header %q (%v)", h, err)
	}
	n, err := strconv.Atoi(h[1:])
	if err != nil || n < 1 {
		return nil, fmt.Errorf("bad count %q", h)
	}
	var out []string
	for i := 0; i < n; i++ {
		h, err := line()
		if err != nil || len(h) < 2 || h[0] != '$' {
			return nil, fmt.Errorf("element %d: bad bulk header %q (%v)", i, h, err)
		}
		l, err := strconv.Atoi(h[1:])
		if err != nil || l < 0 || len(b) < l+2 || string(b[l:l+2]) != "\r\n" {
			return nil, fmt.Errorf("element %d: bad bulk length %q", i, h)
		}
		out = append(out, string(b[:l]))
		b = b[l+2:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(b))
	}
	return out, nil
}

func TestScriptCacheRegistry(t *testing.T) {
	want := []string{"cache_set", "lock_acquire", "lock_extend", "lock_info", "lock_release"}
	have := map[string]bool{}
	for _, s := range lua.All() {
		have[s.Name] = true
		sum := sha1.Sum([]byte(s.Src))
		if s.SHA != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: SHA %s is not the SHA-1 of its source", s.Name, s.SHA)
		}
		if lua.Get(s.Name) != s {
			t.Errorf("Get(%q) is not the registered script", s.Name)
		}
		if !strings.Contains(s.Src, "local function emit(") {
			t.Errorf("%s: the prelude is not prepended", s.Name)
		}
	}
	for _, n := range want {
		if !have[n] {
			t.Errorf("script %s is not embedded", n)
		}
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Get of an unknown script should panic")
		}
	}()
	lua.Get("no_such_script")
}

func TestScriptCacheAppendEval(t *testing.T) {
	s := lua.Get("lock_info")
	keys := []string{"deepagents:{w}:lock:r", "deepagents:{w}:fence:r"}
	args := []string{"", "a\r\nb", strings.Repeat("x", 1000), "ünïcode"}
	prefix := []byte("keep")
	b := s.AppendEvalSHA(append([]byte(nil), prefix...), keys, args)
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("AppendEvalSHA dropped the buffer's contents")
	}
	got, err := decodeCommand(b[len(prefix):])
	if err != nil {
		t.Fatalf("AppendEvalSHA: %v: %q", err, b)
	}
	wantSHA := append([]string{"EVALSHA", s.SHA, "2"}, append(keys, args...)...)
	if strings.Join(got, "|") != strings.Join(wantSHA, "|") || len(got) != len(wantSHA) {
		t.Fatalf("AppendEvalSHA: %q, want %q", got, wantSHA)
	}
	got, err = decodeCommand(s.AppendEval(nil, keys, args))
	if err != nil {
		t.Fatalf("AppendEval: %v", err)
	}
	if len(got) != 3+len(keys)+len(args) || got[0] != "EVAL" || got[1] != s.Src || got[2] != "2" || got[3] != keys[0] || got[len(got)-1] != args[len(args)-1] {
		t.Fatalf("AppendEval: %q", got[:3])
	}
	// No keys, no args.
	got, err = decodeCommand(s.AppendEvalSHA(nil, nil, nil))
	if err != nil || len(got) != 3 || got[2] != "0" {
		t.Fatalf("AppendEvalSHA without keys: %q %v", got, err)
	}
	if !lua.IsNoScript([]byte("-NOSCRIPT No matching script. Please use EVAL.\r\n")) {
		t.Errorf("IsNoScript misses NOSCRIPT")
	}
	for _, r := range []string{"-ERR x\r\n", "+OK\r\n", "-NOSCRIPT", "$9\r\n-NOSCRIPT\r\n", ""} {
		if lua.IsNoScript([]byte(r)) {
			t.Errorf("IsNoScript(%q) = true", r)
		}
	}
}

// TestScriptCacheSHAsOnRedis: every script's SHA is what Redis computes for it, and
// the encoded EVALSHA/EVAL run on a real Redis (NOSCRIPT, then EVAL).
func TestScriptCacheSHAsOnRedis(t *testing.T) {
	r := testutil.StartRedis(t)
	c := testutil.Dial(t, r.Addr)
	for _, s := range lua.All() {
		got := c.DoS("SCRIPT", "LOAD", s.Src)
		if want := fmt.Sprintf("$40\r\n%s\r\n", s.SHA); got != want {
			t.Errorf("%s: SCRIPT LOAD %q, want %q", s.Name, got, want)
		}
	}
	if got := c.DoS("SCRIPT", "FLUSH"); got != "+OK\r\n" {
		t.Fatalf("SCRIPT FLUSH: %q", got)
	}
	s := lua.Get("lock_info")
	keys := []string{"deepagents:{w}:lock:r", "deepagents:{w}:fence:r"}
	c.Write(s.AppendEvalSHA(nil, keys, nil))
	if reply := c.Read(); !lua.IsNoScript(reply) {
		t.Fatalf("EVALSHA after SCRIPT FLUSH: %q, want NOSCRIPT", reply)
	}
	want := "*4\r\n$4\r\nheld\r\n:0\r\n$5\r\nfence\r\n:0\r\n"
	c.Write(s.AppendEval(nil, keys, nil))
	if got := string(c.Read()); got != want {
		t.Fatalf("EVAL lock_info: %q, want %q", got, want)
	}
	c.Write(s.AppendEvalSHA(nil, keys, nil))
	if got := string(c.Read()); got != want {
		t.Fatalf("EVALSHA after EVAL cached it: %q, want %q", got, want)
	}
	// A lock round trip straight on Redis, with the proxy's argument layout.
	acq := lua.Get("lock_acquire")
	lk := []string{"deepagents:{w}:lock:r", "deepagents:{w}:fence:r", "deepagents:{w}:events:log"}
	c.Write(acq.AppendEval(nil, lk, []string{"10000", "me", "w", "r", "100", "deepagents:{w}:events", "", "me"}))
	if got := string(c.Read()); !strings.HasPrefix(got, "*6\r\n$5\r\ntoken\r\n:1\r\n") {
		t.Fatalf("lock_acquire: %q", got)
	}
	if got := c.DoS("XLEN", "deepagents:{w}:events:log"); got != ":1\r\n" {
		t.Fatalf("event log after lock_acquire: %q", got)
	}
}
