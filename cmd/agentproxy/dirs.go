package main

// migrate-dir and export-dir: copy a directory tree into the agent file
// store (FILE.*, docs/FILES.md) through a running proxy, and back out.
// Both are plain clients of the proxy; every file is checked with SHA-1.

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// dirOpts are the flags shared by migrate-dir and export-dir.
type dirOpts struct {
	addr      string
	user      string
	password  string
	workspace string
	prefix    string
	dir       string // --from or --to
	chunk     sizeFlag
	timeout   time.Duration
	quiet     bool
}

// sizeFlag is a byte count written 1048576, 512K, 4M, 1MiB ...
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// maxPart bounds --chunk: a part is one request and one buffer.
const maxPart = 512 << 20

func parseSize(v string) (int64, error) {
	t := strings.TrimSpace(v)
	mult := int64(1)
	lower := strings.ToLower(t)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(lower, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > maxPart/mult || n*mult > maxPart {
		return 0, fmt.Errorf("invalid size %q: want bytes from 1 to %d, e.g. 1048576, 512K, 1MiB", v, maxPart)
	}
	return n * mult, nil
}

func dirFlags(name, dirFlag, dirHelp string, stderr io.Writer, o *dirOpts) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := os.Getenv("AGENTPROXY_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6380"
	}
	o.chunk = 1 << 20
	fs.StringVar(&o.addr, "addr", addr, "proxy address host:port (env AGENTPROXY_ADDR)")
	fs.StringVar(&o.user, "user", "", "user to AUTH as (with --password)")
	fs.StringVar(&o.password, "password", os.Getenv("AGENTPROXY_PASSWORD"), "password to AUTH with (env AGENTPROXY_PASSWORD)")
	fs.StringVar(&o.workspace, "workspace", "", "workspace (sent as WORKSPACE on every connection); empty: the connection's default")
	fs.StringVar(&o.dir, dirFlag, "", dirHelp)
	fs.StringVar(&o.prefix, "prefix", "/", "remote directory of the tree")
	fs.Var(&o.chunk, "chunk", "bytes per request: upload part (migrate-dir) or read range (export-dir); 1048576, 512K, 1MiB ...")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "timeout of one command (a COMMIT checks the whole file)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines on stderr")
	return fs
}

// parseDirArgs parses the flags; ok false means exit with code.
func parseDirArgs(name, dirFlag, dirHelp, usage string, args []string, stderr io.Writer) (o dirOpts, code int, ok bool) {
	fs := dirFlags(name, dirFlag, dirHelp, stderr, &o)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, 0, false
		}
		return o, 2, false
	}
	fail := func(format string, a ...any) (dirOpts, int, bool) {
		fmt.Fprintf(stderr, "agentproxy %s: "+format+"\n", append([]any{name}, a...)...)
		return o, 2, false
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	if o.dir == "" {
		return fail("--%s DIR is required", dirFlag)
	}
	if !strings.HasPrefix(o.prefix, "/") {
		return fail("--prefix must be an absolute remote directory (starting with /), got %q", o.prefix)
	}
	if strings.Contains("/"+o.prefix+"/", "/../") {
		return fail("--prefix must not contain '..', got %q", o.prefix)
	}
	o.prefix = path.Clean(o.prefix)
	if o.timeout <= 0 {
		return fail("--timeout must be positive")
	}
	if o.user != "" && o.password == "" {
		return fail("--user needs --password (or AGENTPROXY_PASSWORD)")
	}
	return o, 0, true
}

// silentLogger keeps go-redis's own log lines out of the output; its
// errors reach us as command errors.
type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...interface{}) {}

// dial connects to the proxy (AUTH, then WORKSPACE on every connection) and
// checks it answers.
func dial(ctx context.Context, o dirOpts) (*redis.Client, error) {
	redis.SetLogger(silentLogger{})
	ws := o.workspace
	rdb := redis.NewClient(&redis.Options{
		Addr:            o.addr,
		Username:        o.user,
		Password:        o.password,
		Protocol:        2, // records are flat [field, value, ...] arrays
		DisableIdentity: true,
		PoolSize:        1,
		MaxRetries:      -1, // an upload command must not run twice behind our back
		DialTimeout:     5 * time.Second,
		ReadTimeout:     o.timeout,
		WriteTimeout:    o.timeout,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			if ws == "" {
				return nil
			}
			if err := cn.Do(ctx, "WORKSPACE", ws).Err(); err != nil {
				return fmt.Errorf("WORKSPACE %s: %w", ws, err)
			}
			return nil
		},
	})
	if err := rdb.Do(ctx, "PING").Err(); err != nil {
		rdb.Close()
		return nil, err
	}
	return rdb, nil
}

// isServerError tells a reply error (the file failed) from a transport one
// (the connection may be gone).
func isServerError(err error) bool {
	var re redis.Error
	return errors.Is(err, redis.Nil) || errors.As(err, &re)
}

// alive checks after a transport error whether the proxy still answers.
func alive(rdb *redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rdb.Do(ctx, "PING").Err()
}

// record decodes a FILE.* record: a flat [field, value, ...] array (RESP2)
// or a map (RESP3), values as strings.
func record(v any) (map[string]string, error) {
	out := map[string]string{}
	switch r := v.(type) {
	case []any:
		if len(r)%2 != 0 {
			return nil, fmt.Errorf("odd record reply %v", r)
		}
		for i := 0; i < len(r); i += 2 {
			out[fmt.Sprint(r[i])] = fmt.Sprint(r[i+1])
		}
	case map[any]any:
		for k, x := range r {
			out[fmt.Sprint(k)] = fmt.Sprint(x)
		}
	case map[string]any:
		for k, x := range r {
			out[k] = fmt.Sprint(x)
		}
	default:
		return nil, fmt.Errorf("unexpected reply %T %v, want a record", v, v)
	}
	return out, nil
}

// progress counts files and bytes and prints a line at most every second.
type progress struct {
	name       string
	w          io.Writer
	quiet      bool
	start      time.Time
	last       time.Time
	total      int   // files to copy
	totalBytes int64 // their sizes when listed, -1 when unknown
	done       int   // files copied and verified
	bytes      int64 // bytes of those files
	moved      int64 // bytes sent or received, failed attempts included
	skipped    int
	failed     int
}

func newProgress(name string, w io.Writer, quiet bool) *progress {
	now := time.Now()
	return &progress{name: name, w: w, quiet: quiet, start: now, last: now}
}

func (p *progress) tick(force bool) {
	if p.quiet {
		return
	}
	now := time.Now()
	if !force && now.Sub(p.last) < time.Second {
		return
	}
	p.last = now
	bytes := human(p.moved)
	if p.totalBytes >= 0 {
		bytes += " of " + human(p.totalBytes)
	}
	fmt.Fprintf(p.w, "%s: %d/%d files, %s, %d skipped, %d failed, %s\n", p.name,
		p.done+p.failed, p.total, bytes, p.skipped, p.failed, time.Since(p.start).Round(100*time.Millisecond))
}

// note reports one file's problem (always, even with --quiet).
func (p *progress) note(format string, a ...any) {
	fmt.Fprintf(p.w, "%s: "+format+"\n", append([]any{p.name}, a...)...)
}

// account records one file's outcome. When the failure may mean the proxy
// went away (checkProxy, and not an error the server answered), it asks
// the proxy and returns its error if it is gone.
func (p *progress) account(ctx context.Context, rdb *redis.Client, what string, n int64, err error, checkProxy bool) error {
	if err == nil {
		p.done++
		p.bytes += n
		p.tick(false)
		return nil
	}
	p.failed++
	p.note("FAILED %s: %v", what, err)
	if checkProxy && !isServerError(err) && ctx.Err() == nil {
		if perr := alive(rdb); perr != nil {
			return perr
		}
	}
	p.tick(false)
	return nil
}

// lost ends a run whose proxy went away: summary, message, exit 2.
func (p *progress) lost(name, addr string, err error, stdout, stderr io.Writer) int {
	p.summary(stdout)
	fmt.Fprintf(stderr, "agentproxy %s: lost the proxy at %s: %v\n", name, addr, err)
	return 2
}

// finish prints the summary and gives the exit code: 1 when interrupted
// or any file failed, else 0.
func (p *progress) finish(ctx context.Context, name string, stdout, stderr io.Writer) int {
	p.tick(true)
	p.summary(stdout)
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "agentproxy %s: interrupted\n", name)
		return 1
	}
	if p.failed > 0 {
		return 1
	}
	return 0
}

func (p *progress) summary(stdout io.Writer) {
	fmt.Fprintf(stdout, "%s: files %d, bytes %d (%s), skipped %d, failed %d, elapsed %s\n", p.name,
		p.done, p.bytes, human(p.bytes), p.skipped, p.failed, time.Since(p.start).Round(time.Millisecond))
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// countWriter counts bytes into the progress as they pass.
type countWriter struct{ p *progress }

func (c countWriter) Write(b []byte) (int, error) { c.p.moved += int64(len(b)); return len(b), nil }

const migrateUsage = `usage: agentproxy migrate-dir --from DIR [--workspace WS] [flags]

Uploads the regular files under DIR into the proxy's file store (FILE.*),
under --prefix, checking each file's SHA-1; symlinks and special files are
skipped. Exit 0: all copied and verified, 1: some file failed, 2: usage or
connection error.

`

const exportUsage = `usage: agentproxy export-dir --to DIR [--workspace WS] [flags]

Writes every file of the proxy's file store under --prefix into DIR
(created if missing), each through a temporary file renamed into place and
checked against its SHA-1; a file that changes meanwhile is read again (up
to 3 times). Exit 0: all copied and verified, 1: some file failed, 2: usage
or connection error.

`

// interruptible is the run's context: SIGINT and SIGTERM cancel it.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

type localFile struct {
	rel  string // slash-separated, relative to --from
	size int64
}

func migrateDir(args []string, stdout, stderr io.Writer) int {
	const name = "migrate-dir"
	o, code, ok := parseDirArgs(name, "from", "local directory to upload (required)", migrateUsage, args, stderr)
	if !ok {
		return code
	}
	fi, err := os.Stat(o.dir)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy %s: --from: %v\n", name, err)
		return 1
	}
	if !fi.IsDir() {
		fmt.Fprintf(stderr, "agentproxy %s: --from %s is not a directory\n", name, o.dir)
		return 1
	}
	root, err := os.OpenRoot(o.dir)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy %s: --from: %v\n", name, err)
		return 1
	}
	defer root.Close()

	ctx, stop := interruptible()
	defer stop()
	rdb, err := dial(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy %s: cannot connect to the proxy at %s: %v\n", name, o.addr, err)
		return 2
	}
	defer rdb.Close()

	p := newProgress(name, stderr, o.quiet)
	var files []localFile
	err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			p.failed++
			p.note("FAILED %s: %v", rel, err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch t := d.Type(); {
		case d.IsDir():
			return nil
		case t&fs.ModeSymlink != 0:
			p.skipped++
			if !o.quiet {
				p.note("skipped %s: symlink", rel)
			}
			return nil
		case !t.IsRegular():
			p.skipped++
			if !o.quiet {
				p.note("skipped %s: not a regular file (%s)", rel, t)
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			p.failed++
			p.note("FAILED %s: %v", rel, err)
			return nil
		}
		files = append(files, localFile{rel: rel, size: info.Size()})
		p.totalBytes += info.Size()
		return nil
	})
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy %s: walking %s: %v\n", name, o.dir, err)
		return 1
	}
	p.total = len(files)
	p.tick(true)

	buf := make([]byte, int(o.chunk))
	for _, f := range files {
		if ctx.Err() != nil {
			break
		}
		remote := path.Join(o.prefix, f.rel)
		n, err := uploadFile(ctx, rdb, root, f.rel, remote, buf, p)
		if perr := p.account(ctx, rdb, f.rel+" -> "+remote, n, err, true); perr != nil {
			return p.lost(name, o.addr, perr, stdout, stderr)
		}
	}
	return p.finish(ctx, name, stdout, stderr)
}

// uploadFile copies one local file to remote: FILE.WRITE when it fits in one
// part, else FILE.BEGIN, FILE.CHUNK per part and FILE.COMMIT with its SHA-1.
// It returns the size copied.
func uploadFile(ctx context.Context, rdb *redis.Client, root *os.Root, rel, remote string, buf []byte, p *progress) (int64, error) {
	f, err := root.Open(rel)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha1.New()
	n, err := io.ReadFull(f, buf)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// The whole file is in buf.
		h.Write(buf[:n])
		sum := hex.EncodeToString(h.Sum(nil))
		v, err := rdb.Do(ctx, "FILE.WRITE", remote, buf[:n]).Result()
		if err != nil {
			return 0, fmt.Errorf("FILE.WRITE: %w", err)
		}
		p.moved += int64(n)
		return int64(n), checkRecord("FILE.WRITE", v, int64(n), sum)
	case err != nil:
		return 0, err
	}

	id, err := rdb.Do(ctx, "FILE.BEGIN", remote).Text()
	if err != nil {
		return 0, fmt.Errorf("FILE.BEGIN: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Best effort: the upload would expire anyway.
			actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			rdb.Do(actx, "FILE.ABORT", id)
			cancel()
		}
	}()
	var sent int64
	for part := 0; ; part++ {
		h.Write(buf[:n])
		got, err := rdb.Do(ctx, "FILE.CHUNK", id, part, buf[:n]).Int64()
		if err != nil {
			if !isServerError(err) && len(buf) > 32<<20 {
				return 0, fmt.Errorf("FILE.CHUNK %d: %w (is --chunk above the proxy's listen.max_request_bytes?)", part, err)
			}
			return 0, fmt.Errorf("FILE.CHUNK %d: %w", part, err)
		}
		sent += int64(n)
		p.moved += int64(n)
		if got != sent {
			return 0, fmt.Errorf("FILE.CHUNK %d: proxy has %d bytes, sent %d", part, got, sent)
		}
		n, err = io.ReadFull(f, buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, err
		}
		p.tick(false)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	v, err := rdb.Do(ctx, "FILE.COMMIT", id, "SHA1", sum).Result()
	if err != nil {
		if isServerError(err) {
			committed = true // refused: the proxy dropped or keeps it; nothing to abort
		}
		return 0, fmt.Errorf("FILE.COMMIT: %w", err)
	}
	committed = true
	return sent, checkRecord("FILE.COMMIT", v, sent, sum)
}

// checkRecord compares a write's reply with what was sent.
func checkRecord(cmd string, v any, size int64, sum string) error {
	r, err := record(v)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if !strings.EqualFold(r["sha1"], sum) {
		return fmt.Errorf("%s: stored sha1 %q, local file has %s", cmd, r["sha1"], sum)
	}
	if r["size"] != strconv.FormatInt(size, 10) {
		return fmt.Errorf("%s: stored size %q, sent %d bytes", cmd, r["size"], size)
	}
	return nil
}

// exportRetries is how many times a file that changed while being read is
// read again.
const exportRetries = 3

var (
	errVanished = errors.New("file vanished (deleted during the export)")
	errChanged  = errors.New("file changed during the export")
)

func exportDir(args []string, stdout, stderr io.Writer) int {
	const name = "export-dir"
	o, code, ok := parseDirArgs(name, "to", "local directory to write into (required; created if missing)", exportUsage, args, stderr)
	if !ok {
		return code
	}
	ctx, stop := interruptible()
	defer stop()
	rdb, err := dial(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy %s: cannot connect to the proxy at %s: %v\n", name, o.addr, err)
		return 2
	}
	defer rdb.Close()

	v, err := rdb.Do(ctx, "FILE.GLOB", "**", "PATH", o.prefix).Result()
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy %s: FILE.GLOB ** PATH %s: %v\n", name, o.prefix, err)
		if isServerError(err) {
			return 1
		}
		return 2
	}
	list, ok := v.([]any)
	if !ok {
		fmt.Fprintf(stderr, "agentproxy %s: FILE.GLOB: unexpected reply %T %v\n", name, v, v)
		return 1
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "agentproxy %s: --to: %v\n", name, err)
		return 1
	}
	root, err := os.OpenRoot(o.dir)
	if err != nil {
		fmt.Fprintf(stderr, "agentproxy %s: --to: %v\n", name, err)
		return 1
	}
	defer root.Close()

	p := newProgress(name, stderr, o.quiet)
	p.total, p.totalBytes = len(list), -1
	p.tick(true)
	base := o.prefix
	if base != "/" {
		base += "/"
	}
	for _, x := range list {
		if ctx.Err() != nil {
			break
		}
		remote, _ := x.(string)
		rel, err := localRel(base, remote)
		if err != nil {
			p.failed++
			p.note("FAILED %q: %v", remote, err)
			continue
		}
		var n int64
		for attempt := 0; ; attempt++ {
			n, err = exportFile(ctx, rdb, root, remote, rel, int64(o.chunk), p)
			if !errors.Is(err, errChanged) || attempt == exportRetries || ctx.Err() != nil {
				break
			}
			if !o.quiet {
				p.note("%s changed while being read; reading it again (%d/%d)", remote, attempt+1, exportRetries)
			}
			select { // let a burst of writes settle
			case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if errors.Is(err, errChanged) {
			err = fmt.Errorf("%w; gave up after %d retries", err, exportRetries)
		}
		checkProxy := !errors.Is(err, errChanged) && !errors.Is(err, errVanished)
		if perr := p.account(ctx, rdb, remote, n, err, checkProxy); perr != nil {
			return p.lost(name, o.addr, perr, stdout, stderr)
		}
	}
	return p.finish(ctx, name, stdout, stderr)
}

// localRel turns a remote path under base (a directory ending in /) into a
// local relative path, refusing anything that could leave the destination.
func localRel(base, remote string) (string, error) {
	if !strings.HasPrefix(remote, base) {
		return "", fmt.Errorf("not under --prefix %s; refusing to write it", base)
	}
	rel := remote[len(base):]
	clean := path.Clean(rel)
	if rel == "" || clean == "." || strings.Contains(rel, "\x00") || path.IsAbs(clean) ||
		clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains("/"+rel+"/", "/../") {
		return "", fmt.Errorf("unsafe path; refusing to write it outside --to")
	}
	local := filepath.FromSlash(clean)
	if !filepath.IsLocal(local) {
		return "", fmt.Errorf("unsafe path; refusing to write it outside --to")
	}
	return local, nil
}

// exportFile reads remote by ranges into a temporary file next to rel (in
// root) and renames it into place once its SHA-1 matches FILE.STAT's.
func exportFile(ctx context.Context, rdb *redis.Client, root *os.Root, remote, rel string, step int64, p *progress) (int64, error) {
	v, err := rdb.Do(ctx, "FILE.STAT", remote).Result()
	if errors.Is(err, redis.Nil) {
		return 0, errVanished
	}
	if err != nil {
		return 0, fmt.Errorf("FILE.STAT: %w", err)
	}
	st, err := record(v)
	if err != nil {
		return 0, fmt.Errorf("FILE.STAT: %w", err)
	}
	if t := st["type"]; t != "" && t != "file" {
		return 0, fmt.Errorf("FILE.STAT: type %q, not a file", t)
	}
	size, err := strconv.ParseInt(st["size"], 10, 64)
	if err != nil || size < 0 {
		return 0, fmt.Errorf("FILE.STAT: bad size %q", st["size"])
	}
	want := strings.ToLower(st["sha1"])
	if len(want) != 2*sha1.Size {
		return 0, fmt.Errorf("FILE.STAT: bad sha1 %q", st["sha1"])
	}

	dir := filepath.Dir(rel)
	if dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".agentproxy-export-"+hex.EncodeToString(rnd[:])+".tmp")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			root.Remove(tmp)
		}
	}()
	h := sha1.New()
	w := io.MultiWriter(f, h, countWriter{p})
	if err := readRanges(ctx, rdb, remote, size, step, w, p); err != nil {
		return 0, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return 0, fmt.Errorf("%w (sha1 %s, FILE.STAT said %s)", errChanged, got, want)
	}
	if err := f.Chmod(0o644); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	keep = true
	if err := root.Rename(tmp, rel); err != nil {
		root.Remove(tmp)
		return 0, err
	}
	return size, nil
}

// changedReply tells the proxy's "the file changed while I read it"
// errors (TRYAGAIN, and CHANGED from its read script) from real failures.
func changedReply(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "TRYAGAIN") || msg == "CHANGED" || msg == "ERR CHANGED"
}

// readRanges writes the first size bytes of remote to w, step bytes per
// FILE.GETRANGE.
func readRanges(ctx context.Context, rdb *redis.Client, remote string, size, step int64, w io.Writer, p *progress) error {
	for off := int64(0); off < size; off += step {
		end := min(off+step, size) - 1
		s, err := rdb.Do(ctx, "FILE.GETRANGE", remote, off, end).Text()
		if errors.Is(err, redis.Nil) {
			return errVanished
		}
		if err != nil {
			if changedReply(err) {
				return fmt.Errorf("%w (FILE.GETRANGE %d %d: %v)", errChanged, off, end, err)
			}
			return fmt.Errorf("FILE.GETRANGE %d %d: %w", off, end, err)
		}
		if int64(len(s)) != end-off+1 {
			return fmt.Errorf("%w (FILE.GETRANGE %d %d gave %d bytes)", errChanged, off, end, len(s))
		}
		if _, err := io.WriteString(w, s); err != nil {
			return err
		}
		p.tick(false)
	}
	return nil
}
