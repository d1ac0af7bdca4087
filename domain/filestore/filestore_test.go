package filestore_test

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/domain/domaintest"
	_ "github.com/agentproxy/agentproxy/domain/filestore"
	_ "github.com/agentproxy/agentproxy/domain/locks"
)

// TestFileHandlers drives FILE.* against miniredis with 64-byte chunks:
// write, read by lines, get, ranges, stat, ls, glob, grep, edit, append,
// delete, a streaming upload, IFVERSION and fencing.
func TestFileHandlers(t *testing.T) {
	e := domaintest.Miniredis(t)
	r := e.Req("ws", "alice", 2)
	text := strings.Repeat("line of text number x\n", 10) // 220 bytes: 4 chunks
	if got := e.DoArgs(r, "file.write", "/docs/a.md", text); !strings.Contains(got, "$7\r\nversion\r\n:1\r\n") {
		t.Fatalf("write: %q", got)
	}
	if got := e.Do(r, "file.get /docs/a.md"); got != "$220\r\n"+text+"\r\n" {
		t.Fatalf("get: %q", got)
	}
	if got := e.Do(r, "file.read /docs/a.md OFFSET 2 LIMIT 3"); !strings.Contains(got, "$11\r\ntotal_lines\r\n:10\r\n") ||
		!strings.Contains(got, "$11\r\nnext_offset\r\n:5\r\n") {
		t.Fatalf("read: %q", got)
	}
	if got := e.Do(r, "file.getrange /docs/a.md 0 3"); got != "$4\r\nline\r\n" {
		t.Fatalf("getrange: %q", got)
	}
	if got := e.Do(r, "file.stat /docs/a.md"); !strings.Contains(got, "$4\r\nsize\r\n:220\r\n") {
		t.Fatalf("stat: %q", got)
	}
	e.DoArgs(r, "file.write", "/docs/b.txt", "needle here\n")
	if got := e.Do(r, "file.ls /docs"); !strings.Contains(got, "a.md") || !strings.Contains(got, "b.txt") {
		t.Fatalf("ls: %q", got)
	}
	if got := e.Do(r, "file.glob *.md"); !strings.Contains(got, "/docs/a.md") || strings.Contains(got, "b.txt") {
		t.Fatalf("glob: %q", got)
	}
	if got := e.Do(r, "file.grep needle"); !strings.Contains(got, "/docs/b.txt") || strings.Contains(got, "a.md") {
		t.Fatalf("grep: %q", got)
	}
	if got := e.DoArgs(r, "file.edit", "/docs/b.txt", "needle", "pin"); !strings.Contains(got, ":2\r\n") {
		t.Fatalf("edit: %q", got)
	}
	if got := e.DoArgs(r, "file.edit", "/docs/b.txt", "absent", "x"); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("edit of a missing string: %q", got)
	}
	if got := e.DoArgs(r, "file.write", "/docs/b.txt", "x", "IFVERSION", "1"); !strings.HasPrefix(got, "-CONFLICT") {
		t.Fatalf("stale IFVERSION: %q", got)
	}
	e.DoArgs(r, "file.append", "/docs/b.txt", "more\n")
	if got := e.Do(r, "file.get /docs/b.txt"); got != "$14\r\npin here\nmore\n\r\n" {
		t.Fatalf("after append: %q", got)
	}
	// Fencing: carol holds the file's lock; alice's write is LOCKED.
	carol := e.Req("ws", "carol", 2)
	e.Do(carol, "lock.acquire files:/docs/b.txt 10000")
	if got := e.DoArgs(r, "file.write", "/docs/b.txt", "alice"); !strings.HasPrefix(got, "-LOCKED") {
		t.Fatalf("write under another's lock: %q", got)
	}
	if got := e.DoArgs(carol, "file.write", "/docs/b.txt", "carol"); strings.HasPrefix(got, "-") {
		t.Fatalf("the holder's write (token injected): %q", got)
	}
	// A streaming upload, checksummed.
	id := e.Do(r, "file.begin /up.bin")
	id = strings.TrimSuffix(id[strings.Index(id, "\r\n")+2:], "\r\n")
	e.DoArgs(r, "file.chunk", id, "0", strings.Repeat("a", 100))
	e.DoArgs(r, "file.chunk", id, "1", strings.Repeat("b", 50))
	sum := sha1.Sum([]byte(strings.Repeat("a", 100) + strings.Repeat("b", 50)))
	if got := e.Do(r, "file.commit "+id+" SHA1 "+hex.EncodeToString(sum[:])); !strings.Contains(got, "$4\r\nsize\r\n:150\r\n") {
		t.Fatalf("commit: %q", got)
	}
	if got := e.Do(r, "file.del /docs RECURSIVE"); !strings.HasPrefix(got, "-LOCKED") {
		t.Fatalf("recursive delete while carol locks b.txt: %q", got)
	}
	// RECURSIVE deletes file by file: a.md went before b.txt was refused.
	if got := e.Do(carol, "file.del /docs RECURSIVE"); got != ":1\r\n" {
		t.Fatalf("recursive delete by the holder: %q", got)
	}
	if got := e.Do(r, "file.get /docs/a.md"); got != "$-1\r\n" {
		t.Fatalf("deleted file: %q", got)
	}
	// Another workspace sees none of it.
	if got := e.Do(e.Req("other", "bob", 2), "file.ls /"); strings.Contains(got, "up.bin") {
		t.Fatalf("other workspace: %q", got)
	}
}
