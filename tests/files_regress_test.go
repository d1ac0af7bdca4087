package tests

import (
	"strconv"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// Regressions found in review of the FILE.* commands, on both backends.

// TestFilesReadCutKeepsWholeLines: a FILE.READ cut at the output limit
// ends after the last whole line, never inside one.
func TestFilesReadCutKeepsWholeLines(t *testing.T) {
	edit := func(c *config.Config) { c.Files.ChunkSize = 64; c.Listen.MaxOutputBytes = 4096 }
	lkBackends(t, edit, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		body := "a\n" + strings.Repeat("b", 3000) + "\nc\n"
		lkWantPrefix(t, "write", c.Do("FILE.WRITE", "/p.txt", body), "*8")
		got := c.DoS("FILE.READ", "/p.txt")
		want := "*14\r\n$4\r\npath\r\n$6\r\n/p.txt\r\n$7\r\ncontent\r\n$2\r\na\n\r\n$11\r\ntotal_lines\r\n:3\r\n" +
			"$10\r\nstart_line\r\n:1\r\n$8\r\nend_line\r\n:1\r\n$11\r\nnext_offset\r\n:1\r\n"
		if !strings.HasPrefix(got, want) {
			t.Fatalf("%s: cut read: got %.200q, want prefix %q", b.name, got, want)
		}
		lkWantPrefix(t, "long line", c.Do("FILE.READ", "/p.txt", "OFFSET", "1"), "-ERR line 2 of /p.txt is longer than")
	})
}

// TestFilesUploadLostChunk: a staged chunk that vanishes between parts
// (expired, evicted) fails the next part instead of being recreated
// with a hole, and nothing corrupt is ever published.
func TestFilesUploadLostChunk(t *testing.T) {
	lkBackends(t, func(c *config.Config) { c.Files.ChunkSize = 64 }, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		id := string(lkBulk(t, c.Do("FILE.BEGIN", "/lost.txt")))
		gen := string(lkBulk(t, c.Do("GET", "deepagents:{default}:files:#gen")))
		lkWantPrefix(t, "part 0", c.Do("FILE.CHUNK", id, "0", strings.Repeat("x", 100)), ":100")
		lkWantPrefix(t, "drop chunk", testutil.Dial(t, b.direct).Do("DEL", "deepagents:{default}:files:/lost.txt:v"+gen+":chunk:1"), ":1")
		lkWantPrefix(t, "part 1", c.Do("FILE.CHUNK", id, "1", strings.Repeat("y", 10)), "-ERR staged chunk 1 of the upload was lost")
		lkWantPrefix(t, "commit", c.Do("FILE.COMMIT", id), "-ERR this upload failed earlier")
		lkWantPrefix(t, "nothing published", c.Do("FILE.STAT", "/lost.txt"), "$-1")
	})
}

// TestFilesUploadCommitWaitsForLock: a commit refused because someone
// else holds the file's lock keeps the upload, so it can be committed once
// the lock is gone.
func TestFilesUploadCommitWaitsForLock(t *testing.T) {
	lkBackends(t, func(c *config.Config) { c.Files.ChunkSize = 64 }, func(t *testing.T, b lkBackend) {
		c, other := testutil.Dial(t, b.addr), testutil.Dial(t, b.addr)
		id := string(lkBulk(t, c.Do("FILE.BEGIN", "/locked.txt")))
		lkWantPrefix(t, "part", c.Do("FILE.CHUNK", id, "0", strings.Repeat("z", 150)), ":150")
		tok := lkAcquire(t, other, "files:/locked.txt", 60000)
		lkWantPrefix(t, "commit while locked", c.Do("FILE.COMMIT", id), "-LOCKED")
		lkWantPrefix(t, "release", other.Do("LOCK.RELEASE", "files:/locked.txt", itoa64(tok)), ":1")
		lkWantPrefix(t, "commit again", c.Do("FILE.COMMIT", id), "*8")
		if got := lkBulk(t, c.Do("FILE.GET", "/locked.txt")); string(got) != strings.Repeat("z", 150) {
			t.Fatalf("%s: content after the retried commit: %q", b.name, got)
		}
	})
}

// TestFilesStagedWriteReportsSetError: a multi-chunk FILE.WRITE whose
// staging SETs are refused answers Redis's own reason.
func TestFilesStagedWriteReportsSetError(t *testing.T) {
	r := testutil.StartRedis(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Files.ChunkSize = 64
	a := testutil.StartProxy(t, cfg)
	c := testutil.Dial(t, a.Addr())
	// Fill Redis past maxmemory through the proxy, then write.
	for i := 0; ; i++ {
		got := c.DoS("SET", "deepagents:{default}:kv:fill"+itoa64(int64(i)), strings.Repeat("f", 64<<10))
		if strings.HasPrefix(got, "-OOM") {
			break
		}
		if i > 1000 {
			t.Fatal("maxmemory never reached")
		}
	}
	lkWantPrefix(t, "staged write", c.Do("FILE.WRITE", "/oom.txt", strings.Repeat("o", 300)), "-OOM")
}

// lkBulk returns the payload of a bulk-string reply.
func lkBulk(t testing.TB, b []byte) []byte {
	t.Helper()
	v, _, err := lkParse(b)
	s, ok := v.(string)
	if err != nil || !ok {
		t.Fatalf("want a bulk string, got %q", b)
	}
	return []byte(s)
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
