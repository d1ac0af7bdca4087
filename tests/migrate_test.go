package tests

// agentproxy migrate-dir and export-dir (docs/FILES.md "Moving trees"): the
// real binary copies a tree with awkward names and contents into the file
// store through a proxy (real Redis and embedded store), exports it back
// out, and both trees must be identical byte for byte.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

const (
	migUser = "mover"
	migPass = "mover-Pa55-91c"
	migWS   = "moves"
	migPart = 300000 // upload part size: not a multiple of the storage chunk
)

// migResult is one run of the binary.
type migResult struct {
	code           int
	stdout, stderr string
}

// migRun runs the binary with args and extra environment (1 min limit).
func migRun(t *testing.T, bin string, env []string, args ...string) migResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "AGENTPROXY_ADDR=", "AGENTPROXY_PASSWORD=")
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := migResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return r
}

// migSummary reads "files N, bytes N, ..., skipped N, failed N" from the
// summary line.
func migSummary(t *testing.T, r migResult) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, k := range []string{"files", "bytes", "skipped", "failed"} {
		m := regexp.MustCompile(`\b` + k + ` (\d+)`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no %q in summary %q (stderr %q)", k, r.stdout, r.stderr)
		}
		out[k], _ = strconv.ParseInt(m[1], 10, 64)
	}
	return out
}

// migTree builds the source tree and returns its regular files' sizes.
func migTree(t *testing.T, dir string) (files int, size int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	binary := make([]byte, 0, 4096)
	for i := 0; i < 16; i++ {
		for c := 0; c < 256; c++ {
			binary = append(binary, byte(c))
		}
	}
	tree := map[string][]byte{
		"README.md":                        []byte("# tree\n\nhello\n"),
		"a/b/c/deep.txt":                   []byte("deep\n"),
		"a/b/sibling.txt":                  []byte("no trailing newline"),
		"a.txt":                            []byte("a file next to directory a\n"),
		"ab":                               []byte("a name that sorts after both a/ and a.txt\n"),
		"ünïcødé/日本語.md":                   []byte("こんにちは\n"),
		"emoji 🚀 dir/file with spaces.txt": []byte("rocket\n"),
		".hidden/.dotfile":                 []byte("dot\n"),
		"empty.txt":                        {},
		"empty-dir-neighbour/empty2":       {},
		"binary.dat":                       binary,
		"nul.bin":                          {0, 0, 0, 0xff, 0xfe, 0, 0x80},
		"crlf.txt":                         []byte("line one\r\nline two\r\n\r\nlast\r\n"),
		"mixed.txt":                        []byte("lf\ncrlf\r\nlone cr\rend"),
		"big/random-3MB.bin":               randBytes(3<<20 + 12345),
		"parts/exact.bin":                  randBytes(migPart),
		"parts/exact-minus-1.bin":          randBytes(migPart - 1),
		"parts/exact-plus-1.bin":           randBytes(migPart + 1),
		"parts/two-exact.bin":              randBytes(2 * migPart),
		"names/colon:name.txt":             []byte("colon\n"),
		"names/x:y.txt":                    []byte("x colon y\n"),
		"names/x%3Ay.txt":                  []byte("x percent-3A y: must stay a different file\n"),
		"names/per%cent.txt":               []byte("percent\n"),
		"names/a%25b:c.txt":                []byte("both\n"),
		"names/chunk:0":                    []byte("looks like a chunk key suffix\n"),
		"names/v1:chunk:0":                 []byte("so does this\n"),
		"names/#index":                     []byte("looks like the index key\n"),
		"names/glob*?[ab]{c,d}\\.txt":      []byte("glob metacharacters and a backslash\n"),
		"names/latin1-\xe9t\xe9.txt":       []byte("not UTF-8: bytes kept as they are\n"),
	}
	for rel, data := range tree {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files++
		size += int64(len(data))
	}
	// A symlink is skipped, not followed, and a truly empty directory has
	// nothing to carry.
	if err := os.Symlink("a.txt", filepath.Join(dir, "link-to-a.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "really-empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	return files, size
}

// migSums maps every regular file under dir (relative, slash-separated) to
// its SHA-256; it fails on anything but files, directories and symlinks.
func migSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if !d.Type().IsRegular() {
			t.Errorf("%s: unexpected file type %s", p, d.Type())
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum := sha256.Sum256(b)
		out[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func migCompare(t *testing.T, src, dst string) {
	t.Helper()
	a, b := migSums(t, src), migSums(t, dst)
	for rel, sum := range a {
		switch got, ok := b[rel]; {
		case !ok:
			t.Errorf("%s: missing from the export", rel)
		case got != sum:
			t.Errorf("%s: sha256 %s exported, %s in the source", rel, got, sum)
		}
	}
	for rel := range b {
		if _, ok := a[rel]; !ok {
			t.Errorf("%s: exported but not in the source", rel)
		}
	}
}

func TestMigrateDir(t *testing.T) {
	bin := embBuild(t, t.TempDir())

	t.Run("unreachable", func(t *testing.T) {
		addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
		src := t.TempDir()
		for _, args := range [][]string{
			{"migrate-dir", "--from", src, "--addr", addr},
			{"export-dir", "--to", t.TempDir(), "--addr", addr},
		} {
			r := migRun(t, bin, nil, args...)
			if r.code != 2 || !strings.Contains(r.stderr, "cannot connect to the proxy at "+addr) {
				t.Errorf("%s with nothing on %s: exit %d, stderr %q; want exit 2 and a clear message", args[0], addr, r.code, r.stderr)
			}
		}
		// The address also comes from the environment.
		r := migRun(t, bin, []string{"AGENTPROXY_ADDR=" + addr}, "migrate-dir", "--from", src)
		if r.code != 2 || !strings.Contains(r.stderr, addr) {
			t.Errorf("AGENTPROXY_ADDR: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"migrate-dir"},
			{"export-dir"},
			{"migrate-dir", "--from", t.TempDir(), "--chunk", "0"},
			{"migrate-dir", "--from", t.TempDir(), "--prefix", "relative"},
			{"export-dir", "--to", t.TempDir(), "--prefix", "/a/../b"},
		} {
			if r := migRun(t, bin, nil, args...); r.code != 2 || r.stderr == "" {
				t.Errorf("%v: exit %d, stderr %q; want 2 and a message", args, r.code, r.stderr)
			}
		}
	})

	lkBackends(t, func(cfg *config.Config) {
		cfg.Users = []config.User{{Name: migUser, PasswordSHA256: isoHash(migPass), Workspaces: []string{migWS}, Role: "agent"}}
	}, func(t *testing.T, b lkBackend) {
		src := t.TempDir()
		nfiles, nbytes := migTree(t, src)
		auth := []string{"--addr", b.addr, "--user", migUser, "--workspace", migWS}
		pw := []string{"AGENTPROXY_PASSWORD=" + migPass}

		// A missing --from is exit 1, not a crash or a usage error.
		r := migRun(t, bin, pw, append([]string{"migrate-dir", "--from", filepath.Join(src, "nope")}, auth...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "nope") {
			t.Fatalf("missing --from: exit %d, stderr %q; want 1 naming the directory", r.code, r.stderr)
		}

		// A file outside --prefix must stay out of the export.
		c := testutil.Dial(t, b.addr)
		lkWantPrefix(t, "AUTH", c.Do("AUTH", migUser, migPass), "+OK")
		lkWantPrefix(t, "WORKSPACE", c.Do("WORKSPACE", migWS), "+OK")
		lkWantPrefix(t, "FILE.WRITE outside", c.Do("FILE.WRITE", "/import/treeX/outside.txt", "x"), "*")

		start := time.Now()
		r = migRun(t, bin, pw, append([]string{"migrate-dir", "--from", src, "--prefix", "/import/tree/", "--chunk", strconv.Itoa(migPart)}, auth...)...)
		t.Logf("migrate-dir (%s): exit %d in %s\nstdout: %sstderr: %s", b.name, r.code, time.Since(start).Round(time.Millisecond), r.stdout, r.stderr)
		if r.code != 0 {
			t.Fatalf("migrate-dir: exit %d", r.code)
		}
		s := migSummary(t, r)
		if s["files"] != int64(nfiles) || s["bytes"] != nbytes || s["skipped"] != 1 || s["failed"] != 0 {
			t.Fatalf("migrate-dir summary %v; want files %d, bytes %d, skipped 1 (the symlink), failed 0", s, nfiles, nbytes)
		}
		if !strings.Contains(r.stderr, "link-to-a.txt") {
			t.Errorf("the skipped symlink is not reported: %q", r.stderr)
		}
		// The proxy holds the very bytes: spot-check one record.
		st := lkFields(t, c.Do("FILE.STAT", "/import/tree/names/x%3Ay.txt"))
		if lkInt(t, st["size"]) != int64(len("x percent-3A y: must stay a different file\n")) {
			t.Errorf("FILE.STAT of names/x%%3Ay.txt: %v", st)
		}

		dst := filepath.Join(t.TempDir(), "new", "out")
		start = time.Now()
		r = migRun(t, bin, pw, append([]string{"export-dir", "--to", dst, "--prefix", "/import/tree"}, auth...)...)
		t.Logf("export-dir (%s): exit %d in %s\nstdout: %sstderr: %s", b.name, r.code, time.Since(start).Round(time.Millisecond), r.stdout, r.stderr)
		if r.code != 0 {
			t.Fatalf("export-dir: exit %d", r.code)
		}
		s = migSummary(t, r)
		if s["files"] != int64(nfiles) || s["bytes"] != nbytes || s["failed"] != 0 {
			t.Fatalf("export-dir summary %v; want files %d, bytes %d, failed 0", s, nfiles, nbytes)
		}
		migCompare(t, src, dst)
		fi, err := os.Stat(filepath.Join(dst, "crlf.txt"))
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("exported file mode: %v %v, want 0644", fi.Mode(), err)
		}

		// Exporting again over the same tree replaces the files in place.
		r = migRun(t, bin, pw, append([]string{"export-dir", "--quiet", "--to", dst, "--prefix", "/import/tree", "--chunk", "64K"}, auth...)...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("second export: exit %d, stderr %q", r.code, r.stderr)
		}
		migCompare(t, src, dst)

		migConcurrent(t, bin, b.addr, pw, auth)

		// Without --workspace the connection's default workspace is used:
		// the tree is not there.
		r = migRun(t, bin, nil, "export-dir", "--to", t.TempDir(), "--addr", b.addr, "--prefix", "/import/tree")
		if s := migSummary(t, r); r.code != 0 || s["files"] != 0 {
			t.Errorf("export of the default workspace: exit %d, %v, stderr %q; want 0 files", r.code, s, r.stderr)
		}
	})
}

// migConcurrent exports a file while another client keeps rewriting it:
// export-dir either writes one whole version or gives up after its
// retries, never a mix of two, and leaves no temporary file behind.
func migConcurrent(t *testing.T, bin, addr string, pw, auth []string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Username: migUser, Password: migPass, Protocol: 2,
		DisableIdentity: true, PoolSize: 1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "WORKSPACE", migWS).Err() }})
	defer rdb.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 5))
	versions := make([][]byte, 2)
	sums := map[string]int{}
	for i := range versions {
		versions[i] = make([]byte, 1<<20)
		for j := range versions[i] {
			versions[i][j] = byte(rng.Uint32())
		}
		sum := sha256.Sum256(versions[i])
		sums[hex.EncodeToString(sum[:])] = i
	}
	const file = "/churn/f.bin"
	if err := rdb.Do(ctx, "FILE.WRITE", file, versions[0]).Err(); err != nil {
		t.Fatalf("FILE.WRITE %s: %v", file, err)
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		writes := 0
		defer func() { done <- writes }()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if rdb.Do(ctx, "FILE.WRITE", file, versions[i%2]).Err() == nil {
				writes++
			}
		}
	}()
	dst := t.TempDir()
	r := migRun(t, bin, pw, append([]string{"export-dir", "--to", dst, "--prefix", "/churn", "--chunk", "64K"}, auth...)...)
	close(stop)
	writes := <-done
	t.Logf("export during %d rewrites: exit %d\nstdout: %sstderr: %s", writes, r.code, r.stdout, r.stderr)
	got := migSums(t, dst)
	switch r.code {
	case 0:
		if _, ok := sums[got["f.bin"]]; !ok || len(got) != 1 {
			t.Fatalf("export under writes gave %v: not one whole version", got)
		}
	case 1:
		if !strings.Contains(r.stderr, "changed") || len(got) != 0 {
			t.Fatalf("export under writes failed without saying the file changed, or left files %v", got)
		}
	default:
		t.Fatalf("export under writes: exit %d", r.code)
	}
	// Once the writes stop, the export is exact.
	r = migRun(t, bin, pw, append([]string{"export-dir", "--quiet", "--to", dst, "--prefix", "/churn"}, auth...)...)
	got = migSums(t, dst)
	if _, ok := sums[got["f.bin"]]; r.code != 0 || !ok || len(got) != 1 {
		t.Fatalf("export after the writes: exit %d, %v, stderr %q", r.code, got, r.stderr)
	}
}
