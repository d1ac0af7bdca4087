package filestore

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/files"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lua"
	"github.com/agentproxy/agentproxy/upstream"
)

// The agent file store (SPEC §5 "Files", docs/FILES.md). Writes are one
// script each (content inline, or staged by an upload); reads fetch a
// file's metadata and a few chunks per script call, pinned to the
// generation they started on, so a reader never mixes two versions and no
// script runs long. Listing, glob and grep walk the sorted-set path index
// a page at a time and run in Go.

const (
	fileReadBatch  = 4 << 20 // bytes of chunks per read call
	fileHeadBytes  = 1 << 20 // bytes of chunks read with the metadata by READ and GREP
	fileRetries    = 8       // re-reads when a file changes under a reader or editor
	fileIndexPage  = 512
	fileDefLimit   = 2000
	fileMaxLimit   = 1_000_000
	fileDefMatches = 1000
	fileMaxMatches = 100_000
	fileDelBatch   = 64
)

var (
	errNoFile      = errors.New("no such file")
	errFileChanged = errors.New("file changed while being read")
	errTooBig      = errors.New("too big for one reply")
	// errStop ends a chunk stream early: the reader has what it needs.
	errStop = errors.New("stop streaming")
)

// replyError is an error reply from Redis or a script, passed on verbatim.
type replyError string

func (e replyError) Error() string { return string(e) }

// req is a domain request as this family's handlers see it.
type req struct{ *domain.Req }

func init() {
	for name, run := range map[string]func(req, [][]byte){
		"file.write": req.fileWrite, "file.append": req.fileAppend, "file.edit": req.fileEdit,
		"file.del": req.fileDel, "file.read": req.fileRead, "file.get": req.fileGet,
		"file.getrange": req.fileGetRange, "file.stat": req.fileStat, "file.ls": req.fileLs,
		"file.glob": req.fileGlob, "file.grep": req.fileGrep, "file.begin": req.fileBegin,
		"file.chunk": req.fileChunk, "file.commit": req.fileCommit, "file.abort": req.fileAbort,
	} {
		run := run
		domain.Register(name, "files", func(r *domain.Req, a [][]byte) { run(req{r}, a) })
	}
}

// fileErr answers err: Redis's and the scripts' errors verbatim, upstream
// failures as TRYAGAIN/UNCERTAIN.
func (s req) fileErr(err error) {
	var re replyError
	switch {
	case errors.As(err, &re):
		s.Out = append(append(append(s.Out, '-'), re...), '\r', '\n')
	case errors.Is(err, errFileChanged):
		s.Out = wire.AppendError(s.Out, "TRYAGAIN the file kept changing while it was read; retry")
	default:
		s.Out = wire.AppendError(s.Out, wire.CallError(err))
	}
}

func (s req) appendNil() {
	if s.Proto == 3 {
		s.Out = append(s.Out, "_\r\n"...)
	} else {
		s.Out = append(s.Out, "$-1\r\n"...)
	}
}

// recordHeader starts a record of n fields: a map for RESP3 clients, a
// flat array for RESP2 ones.
func (s req) recordHeader(n int) {
	if s.Proto == 3 {
		s.Out = strconv.AppendInt(append(s.Out, '%'), int64(n), 10)
		s.Out = append(s.Out, '\r', '\n')
		return
	}
	s.Out = redcon.AppendArray(s.Out, 2*n)
}

// record appends a record of name/value pairs (values: string, []byte,
// int64 or int).
func (s req) record(pairs ...any) {
	s.recordHeader(len(pairs) / 2)
	for i := 0; i < len(pairs); i += 2 {
		s.Out = redcon.AppendBulkString(s.Out, pairs[i].(string))
		switch v := pairs[i+1].(type) {
		case string:
			s.Out = redcon.AppendBulkString(s.Out, v)
		case []byte:
			s.Out = redcon.AppendBulk(s.Out, v)
		case int64:
			s.Out = redcon.AppendInt(s.Out, v)
		case int:
			s.Out = redcon.AppendInt(s.Out, int64(v))
		}
	}
}

// filePath cleans a file path argument, answering the error.
func (s req) filePath(b []byte) (string, bool) {
	p, err := files.Clean(string(b))
	if err != nil {
		s.Out = wire.AppendError(s.Out, "ERR "+err.Error())
		return "", false
	}
	return p, true
}

func (s req) fileDir(b []byte) (string, bool) {
	p, err := files.CleanDir(string(b))
	if err != nil {
		s.Out = wire.AppendError(s.Out, "ERR "+err.Error())
		return "", false
	}
	return p, true
}

// writeOpts are the options every file write takes.
type writeOpts struct {
	ifv, token string
	replaceAll bool
	recursive  bool
}

// fileOpts parses [IFVERSION v] [FENCE t] (and the flags allowed) from args.
func (s req) fileOpts(args [][]byte, usage string, flags ...string) (writeOpts, bool) {
	var o writeOpts
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case keyspace.EqFold(a, "replaceall") && hasFlag(flags, "replaceall"):
			o.replaceAll = true
		case keyspace.EqFold(a, "recursive") && hasFlag(flags, "recursive"):
			o.recursive = true
		case (keyspace.EqFold(a, "ifversion") || keyspace.EqFold(a, "fence")) && i+1 < len(args):
			i++
			if keyspace.EqFold(a, "fence") {
				if _, ok := s.PosInt(args[i], "FENCE token", 1<<62); !ok {
					return o, false
				}
				o.token = string(args[i])
			} else {
				if !s.Version(args[i]) {
					return o, false
				}
				n, _ := strconv.ParseInt(string(args[i]), 10, 64)
				o.ifv = strconv.FormatInt(n, 10) // compared as text by EDIT and APPEND
			}
		default:
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(a)+"': "+usage)
			return o, false
		}
	}
	return o, true
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// fileKeys are the keys of one file: metadata (chunks hang off it), lock
// and fence counter, and the workspace's path index and event log.
type fileKeys struct {
	meta, index, gen, log, lock, fence, resource string
}

func (s req) fileKeys(path string) fileKeys {
	kp := files.KeyPath(path)
	res := "files:" + path // the lock resource names the path as agents write it
	return fileKeys{
		meta: s.Key("files", kp), index: s.Key("files", "#index"), gen: s.Key("files", "#gen"),
		log: s.Key("events", "log"), lock: s.Key("lock", res), fence: s.Key("fence", res), resource: res,
	}
}

// fstore is one command's access to Redis: the shared RESP2 connection, or
// a dedicated one for long walks (grep) so their large replies never
// queue in front of other clients' replies.
type fstore struct {
	s    req
	conn *upstream.Conn
	ded  bool
	ws   string // what the dedicated connection counts against
	bad  bool
	call *upstream.Call
	req  []byte
	hdrs []byte
	part [][]byte
}

func (s req) fstore(dedicated bool) (*fstore, bool) {
	f := &fstore{s: s, ded: dedicated}
	if dedicated {
		var ok bool
		if f.ws, ok = s.Up.TakeDedicated(); !ok {
			s.Out = wire.AppendError(s.Out, wire.ErrTryAgainDedicated)
			return nil, false
		}
		c, err := s.Env.Pool.Dedicated(2)
		if err != nil {
			s.Up.GiveDedicated(f.ws)
			s.Out = wire.AppendError(s.Out, wire.ErrTryAgainDown)
			return nil, false
		}
		f.conn = c
	} else if f.conn = s.Env.Pool.Shared(2); f.conn == nil {
		s.Out = wire.AppendError(s.Out, wire.ErrTryAgainDown)
		return nil, false
	}
	if s.FCall == nil {
		s.FCall = upstream.NewCall()
	}
	f.call = s.FCall
	return f, true
}

// heavy moves the rest of this command to a dedicated connection: large
// transfers (chunk streams, multi-megabyte writes) must not queue in front
// of other clients' replies on the shared one. It keeps the shared
// connection when no dedicated one can be had.
func (f *fstore) heavy() {
	if f.ded {
		return
	}
	ws, ok := f.s.Up.TakeDedicated()
	if !ok {
		return
	}
	f.ws = ws
	if c, err := f.s.Env.Pool.Dedicated(2); err == nil {
		f.conn, f.ded, f.bad = c, true, false
	} else {
		f.s.Up.GiveDedicated(f.ws)
	}
}

func (f *fstore) close() {
	if f.ded {
		f.s.Env.Pool.Release(f.conn, 2, !f.bad)
		f.s.Up.GiveDedicated(f.ws)
	}
	if cap(f.call.Out) > 1<<20 {
		f.call.Out = nil // do not keep a large buffer per session
	}
}

// send runs n commands (payload parts written back to back) and returns
// their raw replies, valid until the next call.
func (f *fstore) send(n int, parts ...[]byte) ([]byte, error) {
	c := f.call
	c.Out, c.N, c.MaxOut, c.Timeout, c.Ends = c.Out[:0], n, f.s.Env.MaxOutput+(8<<20), 0, nil
	if err := f.conn.Send(c, parts...); err != nil {
		return nil, err
	}
	c.Wait()
	if c.Err != nil {
		f.bad = true
		return nil, c.Err
	}
	return c.Out, nil
}

// script runs a domain script (EVALSHA, then EVAL on NOSCRIPT) whose last
// arguments are blobs, and returns its raw reply; an error reply is a
// replyError.
func (f *fstore) script(sc *lua.Script, keys, args []string, blobs ...[]byte) ([]byte, error) {
	for _, full := range []bool{false, true} {
		f.req = sc.AppendCall(f.req[:0], full, keys, args, len(blobs))
		f.part = append(f.part[:0], f.req)
		f.hdrs = f.hdrs[:0]
		for _, b := range blobs {
			f.hdrs = append(strconv.AppendInt(append(f.hdrs, '$'), int64(len(b)), 10), '\r', '\n')
		}
		h := f.hdrs
		for _, b := range blobs {
			i := bytes.IndexByte(h, '\n') + 1
			f.part = append(f.part, h[:i], b, crlf)
			h = h[i:]
		}
		r, err := f.send(1, f.part...)
		if err != nil {
			return nil, err
		}
		if lua.IsNoScript(r) && !full {
			continue
		}
		if len(r) > 0 && r[0] == '-' {
			return nil, replyError(r[1 : len(r)-2])
		}
		return r, nil
	}
	panic("unreachable")
}

var crlf = []byte("\r\n")

// cmd runs one plain command and returns its raw reply.
func (f *fstore) cmd(args ...string) ([]byte, error) {
	f.req = upstream.AppendCommand(f.req[:0], args...)
	r, err := f.send(1, f.req)
	if err == nil && len(r) > 0 && r[0] == '-' {
		return nil, replyError(r[1 : len(r)-2])
	}
	return r, err
}

// fileMeta is a file's metadata hash.
type fileMeta struct {
	version, size, lines, chunks, chunkSize, created, modified int64
	gen, sha1, encoding, nl                                    string
}

// open reads a file's metadata and its chunks first..last (inclusive; none
// when last < first; at most budget bytes of them) in one script call, so
// the metadata and those chunks are of one version. The chunks alias the
// call's buffer: valid until the next call.
func (f *fstore) open(k fileKeys, first, last int64, budget int) (*fileMeta, [][]byte, error) {
	r, err := f.script(lua.Get("file_read"), []string{k.meta},
		[]string{strconv.FormatInt(first, 10), strconv.FormatInt(last, 10), "", strconv.Itoa(budget)})
	if err != nil {
		if re, ok := err.(replyError); ok && strings.HasSuffix(string(re), "CHANGED") {
			return nil, nil, errFileChanged
		}
		return nil, nil, err
	}
	items, ok := splitArray(r)
	if !ok {
		if bytes.HasPrefix(r, []byte("$-1")) || bytes.HasPrefix(r, []byte("*-1")) || bytes.HasPrefix(r, []byte("_")) {
			return nil, nil, errNoFile
		}
		return nil, nil, replyError("ERR unexpected reply reading a file")
	}
	if len(items) < 11 {
		return nil, nil, replyError("ERR unexpected metadata reading a file")
	}
	num := func(b []byte) int64 { n, _ := strconv.ParseInt(string(b), 10, 64); return n }
	m := &fileMeta{
		version: num(items[0]), gen: string(items[1]), size: num(items[2]), sha1: string(items[3]),
		lines: num(items[4]), encoding: string(items[5]), chunks: num(items[6]), chunkSize: num(items[7]),
		nl: string(items[8]), created: num(items[9]), modified: num(items[10]),
	}
	if m.chunkSize <= 0 {
		m.chunkSize = 1
	}
	return m, items[11:], nil
}

// splitArray splits a RESP2 array of bulk strings (nil elements become
// nil) without copying.
func splitArray(b []byte) ([][]byte, bool) {
	if len(b) < 4 || b[0] != '*' {
		return nil, false
	}
	i := bytes.IndexByte(b, '\n')
	n, err := strconv.Atoi(string(b[1 : i-1]))
	if err != nil || n < 0 {
		return nil, false
	}
	b = b[i+1:]
	out := make([][]byte, 0, n)
	for range n {
		i = bytes.IndexByte(b, '\n')
		if i < 3 {
			return nil, false
		}
		switch b[0] {
		case '$':
			l, err := strconv.Atoi(string(b[1 : i-1]))
			if err != nil {
				return nil, false
			}
			if l < 0 {
				out = append(out, nil)
				b = b[i+1:]
				continue
			}
			if len(b) < i+1+l+2 {
				return nil, false
			}
			out = append(out, b[i+1:i+1+l:i+1+l])
			b = b[i+1+l+2:]
		case ':', '+':
			out = append(out, b[1:i-1])
			b = b[i+1:]
		default:
			return nil, false
		}
	}
	return out, true
}

// batch is how many chunks of m one read call fetches.
func (m *fileMeta) batch() int64 { return max(1, fileReadBatch/m.chunkSize) }

// each streams chunks from..to of the generation m describes to fn, a
// batch of pipelined GETs per round trip. A generation's chunks never
// change once committed and are deleted only when a newer version
// replaces them, so every chunk found belongs to m's version; a missing
// one means a writer replaced the file meanwhile (errFileChanged).
func (f *fstore) each(k fileKeys, m *fileMeta, from, to int64, fn func(n int64, b []byte) error) error {
	if from <= to {
		f.heavy()
	}
	for from <= to {
		last := min(to, from+m.batch()-1)
		f.req = f.req[:0]
		for n := from; n <= last; n++ {
			f.req = k.appendChunkGET(f.req, m.gen, n)
		}
		f.call.Out = slices.Grow(f.call.Out[:0], int((last-from+1)*(m.chunkSize+32)))
		r, err := f.send(int(last-from+1), f.req)
		if err != nil {
			return err
		}
		for n := from; n <= last; n++ {
			b, rest, kind := nextBulk(r)
			switch kind {
			case '$':
			case '-':
				return replyError(b)
			case 'n':
				return errFileChanged
			default:
				return replyError("ERR unexpected reply reading a file chunk")
			}
			if err := fn(n, b); err != nil {
				if err == errStop {
					return nil
				}
				return err
			}
			r = rest
		}
		from = last + 1
	}
	return nil
}

// stream is each for a read that began with open: chunks head holds
// (from chunk headFrom on) are used first, the rest fetched.
func (f *fstore) stream(k fileKeys, m *fileMeta, head [][]byte, headFrom, from, to int64, fn func(n int64, b []byte) error) error {
	for from <= to && from >= headFrom && from-headFrom < int64(len(head)) {
		if err := fn(from, head[from-headFrom]); err != nil {
			if err == errStop {
				return nil
			}
			return err
		}
		from++
	}
	if from > to {
		return nil
	}
	return f.each(k, m, from, to, fn)
}

// appendChunkGET appends GET <chunk key of gen, n> without allocating.
func (k fileKeys) appendChunkGET(b []byte, gen string, n int64) []byte {
	digits := 1
	for x := n; x >= 10; x /= 10 {
		digits++
	}
	b = append(b, "*2\r\n$3\r\nGET\r\n$"...)
	b = strconv.AppendInt(b, int64(len(k.meta)+2+len(gen)+7+digits), 10)
	b = append(append(append(append(b, '\r', '\n'), k.meta...), ":v"...), gen...)
	b = strconv.AppendInt(append(b, ":chunk:"...), n, 10)
	return append(b, '\r', '\n')
}

// nextBulk takes one reply off r: a bulk string ('$', its bytes), a nil
// ('n'), an error ('-', its text), or anything else (0).
func nextBulk(r []byte) (b, rest []byte, kind byte) {
	i := bytes.IndexByte(r, '\n')
	if i < 2 {
		return nil, nil, 0
	}
	switch r[0] {
	case '-':
		return r[1 : i-1], r[i+1:], '-'
	case '_':
		return nil, r[i+1:], 'n'
	case '$':
		l, err := strconv.Atoi(string(r[1 : i-1]))
		if err != nil {
			return nil, nil, 0
		}
		if l < 0 {
			return nil, r[i+1:], 'n'
		}
		if len(r) < i+1+l+2 {
			return nil, nil, 0
		}
		return r[i+1 : i+1+l], r[i+1+l+2:], '$'
	}
	return nil, nil, 0
}

// readAll appends the whole current content of a file to dst and returns
// its metadata.
func (f *fstore) readAll(k fileKeys, dst []byte, limit int) (*fileMeta, []byte, error) {
	for range fileRetries {
		m, chunks, err := f.open(k, 0, 1<<40, fileReadBatch)
		if err != nil {
			return nil, dst, err
		}
		if m.size > int64(limit) {
			return nil, dst, replyError("ERR the file is " + strconv.FormatInt(m.size, 10) +
				" bytes, more than files.max_file_bytes")
		}
		start := len(dst)
		for _, c := range chunks {
			dst = append(dst, c...)
		}
		err = f.each(k, m, int64(len(chunks)), m.chunks-1, func(_ int64, b []byte) error {
			dst = append(dst, b...)
			return nil
		})
		if errors.Is(err, errFileChanged) {
			dst = dst[:start]
			continue
		}
		if err != nil {
			return nil, dst[:start], err
		}
		if int64(len(dst)-start) != m.size {
			dst = dst[:start]
			continue
		}
		return m, dst, nil
	}
	return nil, dst, errFileChanged
}

// content describes bytes about to be written: checksum, lines, encoding
// and the newlines per storage chunk.
type content struct {
	size     int64
	sha1     string
	lines    int64
	encoding string
	nl       string
	chunks   [][]byte
}

func describe(b []byte, cs int) content {
	sum := sha1.Sum(b)
	c := content{size: int64(len(b)), sha1: hex.EncodeToString(sum[:]), encoding: "utf-8"}
	if !utf8.Valid(b) {
		c.encoding = "binary"
	}
	var nl []byte
	var total int64
	for off := 0; off < len(b); off += cs {
		ch := b[off:min(off+cs, len(b))]
		n := bytes.Count(ch, []byte{'\n'})
		total += int64(n)
		if len(nl) > 0 {
			nl = append(nl, ',')
		}
		nl = strconv.AppendInt(nl, int64(n), 10)
		c.chunks = append(c.chunks, ch)
	}
	c.lines = total
	if len(b) > 0 && b[len(b)-1] != '\n' {
		c.lines++
	}
	c.nl = string(nl)
	return c
}

// commit publishes content as the file's next version (one script: fence,
// IFVERSION, clash checks, chunks, metadata, index, event). gen is "" for
// inline content, else the generation an upload staged.
func (f *fstore) commit(k fileKeys, path, ifv, token, event, cmd, gen string, c *content, cs int) (int64, error) {
	keep := "" // a refused upload commit keeps its staged chunks while a lock holds it off
	if gen != "" {
		keep = "keep"
	}
	if c.size > f.s.Env.Files.MaxBytes {
		return 0, replyError("ERR " + path + " would be " + strconv.FormatInt(c.size, 10) +
			" bytes, more than files.max_file_bytes (" + strconv.FormatInt(f.s.Env.Files.MaxBytes, 10) + ")")
	}
	if token == "" {
		token = f.s.HeldToken(k.resource)
	}
	nchunks := int64(len(c.chunks))
	if gen != "" {
		nchunks = (c.size + int64(cs) - 1) / int64(cs)
	}
	args := []string{path, f.s.Workspace, k.resource, domain.EventsMaxLen, f.s.Channel(), f.s.Actor, token, ifv,
		event, cmd, gen, strconv.FormatInt(c.size, 10), c.sha1, strconv.FormatInt(c.lines, 10), c.encoding,
		strconv.FormatInt(nchunks, 10), strconv.Itoa(cs), c.nl, keep}
	keys := []string{k.meta, k.index, k.gen, k.log, k.lock, k.fence}
	if c.size > fileHeadBytes && gen == "" {
		f.heavy()
	}
	var r []byte
	var err error
	if gen == "" && len(c.chunks) > 1 {
		// Several chunks: stage them with plain SETs under a fresh random
		// generation (with the upload TTL, in case the commit never runs),
		// then commit them, all in one pipelined write. Redis stores the
		// bulk strings directly; passing them through Lua would copy every
		// byte twice more.
		var rnd [8]byte
		rand.Read(rnd[:])
		args[10] = hex.EncodeToString(rnd[:])
		r, err = f.stageAndCommit(k, args[10], c.chunks, keys, args)
	} else {
		var blobs [][]byte
		if gen == "" {
			blobs = c.chunks
		}
		r, err = f.script(lua.Get("file_commit"), keys, args, blobs...)
	}
	if err != nil {
		return 0, err
	}
	v, perr := strconv.ParseInt(string(bytes.TrimRight(r[1:], "\r\n")), 10, 64)
	if perr != nil || r[0] != ':' {
		return 0, replyError("ERR unexpected reply from the file commit")
	}
	return int64(v), nil
}

// stageAndCommit sends SET <chunk key> <chunk> PX <upload ttl> for each
// chunk and the commit script behind them as one write, and returns the
// script's reply (the SETs' replies are not needed: the script checks
// every staged chunk is there).
func (f *fstore) stageAndCommit(k fileKeys, gen string, chunks [][]byte, keys, args []string) ([]byte, error) {
	ttl := strconv.FormatInt(f.s.Env.Files.UploadTTL.Milliseconds(), 10)
	f.hdrs = f.hdrs[:0]
	spans := make([][2]int, 0, 2*len(chunks))
	for n := range chunks {
		start := len(f.hdrs)
		key := k.meta + ":v" + gen + ":chunk:" + strconv.Itoa(n)
		f.hdrs = appendBulkHeader(append(f.hdrs, "*5\r\n$3\r\nSET\r\n"...), len(key))
		f.hdrs = appendBulkHeader(append(append(f.hdrs, key...), '\r', '\n'), len(chunks[n]))
		mid := len(f.hdrs)
		f.hdrs = appendBulkHeader(append(f.hdrs, "\r\n$2\r\nPX\r\n"...), len(ttl))
		f.hdrs = append(append(f.hdrs, ttl...), '\r', '\n')
		spans = append(spans, [2]int{start, mid}, [2]int{mid, len(f.hdrs)})
	}
	sc := lua.Get("file_commit")
	f.req = sc.AppendCall(f.req[:0], false, keys, args, 0)
	f.part = f.part[:0]
	for n := range chunks {
		a, b := spans[2*n], spans[2*n+1]
		f.part = append(f.part, f.hdrs[a[0]:a[1]], chunks[n], f.hdrs[b[0]:b[1]])
	}
	f.part = append(f.part, f.req)
	r, err := f.send(len(chunks)+1, f.part...)
	if err != nil {
		return nil, err
	}
	var setErr error
	for range chunks {
		v, n, err := domain.ParseReply(r)
		if err != nil {
			return nil, replyError("ERR unexpected reply staging a file")
		}
		if v.Typ == '-' && setErr == nil {
			setErr = replyError(v.Str) // e.g. OOM: the reason the commit will refuse
		}
		r = r[n:]
	}
	if lua.IsNoScript(r) {
		r, err = f.script(sc, keys, args) // the chunks are staged: run the commit alone
		if err != nil && setErr != nil {
			return nil, setErr
		}
		return r, err
	}
	if len(r) > 0 && r[0] == '-' {
		if setErr != nil {
			return nil, setErr
		}
		return nil, replyError(r[1 : len(r)-2])
	}
	return r, nil
}

func (s req) writeReply(path string, version int64, c *content, extra ...any) {
	s.record(append([]any{"path", path, "version", version, "size", c.size, "sha1", c.sha1}, extra...)...)
}

// fileWrite: FILE.WRITE <path> <content> [IFVERSION v] [FENCE t].
func (s req) fileWrite(args [][]byte) {
	path, ok := s.filePath(args[0])
	if !ok {
		return
	}
	o, ok := s.fileOpts(args[2:], "FILE.WRITE <path> <content> [IFVERSION v] [FENCE token]")
	if !ok {
		return
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	cs := s.Env.Files.ChunkSize
	c := describe(args[1], cs)
	v, err := f.commit(s.fileKeys(path), path, o.ifv, o.token, "file.write", "FILE.WRITE", "", &c, cs)
	if err != nil {
		s.fileErr(err)
		return
	}
	s.writeReply(path, v, &c)
}

// fileRewrite is a read-modify-write of one file: read the current content,
// let change build the new one, commit it if the version is still the one
// read (retrying, unless the client pinned a version with IFVERSION).
// Missing files reach change with m == nil.
func (s req) fileRewrite(path string, o writeOpts, event, cmd string,
	change func(m *fileMeta, old []byte) ([]byte, []any, error)) {
	defer s.shrinkFileBuf()
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	k := s.fileKeys(path)
	cs := s.Env.Files.ChunkSize
	for try := range fileRetries {
		m, old, err := f.readAll(k, s.FileBuf[:0], int(min(s.Env.Files.MaxBytes, 1<<40)))
		s.FileBuf = old[:0]
		if err != nil && !errors.Is(err, errNoFile) {
			s.fileErr(err)
			return
		}
		cur := "0"
		if m != nil {
			cur = strconv.FormatInt(m.version, 10)
		}
		if o.ifv != "" && o.ifv != cur {
			s.Out = wire.AppendError(s.Out, "CONFLICT version is "+cur+", not "+o.ifv+"; re-read "+path+" and retry")
			return
		}
		next, extra, err := change(m, old)
		if err != nil {
			s.fileErr(err)
			return
		}
		c := describe(next, cs)
		v, err := f.commit(k, path, cur, o.token, event, cmd, "", &c, cs)
		var re replyError
		if errors.As(err, &re) && strings.HasPrefix(string(re), "CONFLICT") && o.ifv == "" {
			// Someone wrote in between: read again, after a short random
			// pause so that writers racing on one file spread out.
			time.Sleep(time.Duration(1+mrand.IntN(1<<(min(try, 5)))) * time.Millisecond)
			continue
		}
		if err != nil {
			s.fileErr(err)
			return
		}
		s.writeReply(path, v, &c, extra...)
		return
	}
	s.Out = wire.AppendError(s.Out, "TRYAGAIN "+path+" kept changing while "+cmd+" ran; retry")
}

// shrinkFileBuf drops a large content buffer once a command is done, so
// idle connections do not keep it.
func (s req) shrinkFileBuf() {
	if cap(s.FileBuf) > 1<<20 {
		s.FileBuf = nil
	}
}

// fileAppend: FILE.APPEND <path> <data> [IFVERSION v] [FENCE t].
func (s req) fileAppend(args [][]byte) {
	path, ok := s.filePath(args[0])
	if !ok {
		return
	}
	o, ok := s.fileOpts(args[2:], "FILE.APPEND <path> <data> [IFVERSION v] [FENCE token]")
	if !ok {
		return
	}
	data := args[1]
	s.fileRewrite(path, o, "file.append", "FILE.APPEND", func(_ *fileMeta, old []byte) ([]byte, []any, error) {
		return append(old, data...), nil, nil
	})
}

// fileEdit: FILE.EDIT <path> <old> <new> [REPLACEALL] [IFVERSION v] [FENCE t].
func (s req) fileEdit(args [][]byte) {
	path, ok := s.filePath(args[0])
	if !ok {
		return
	}
	o, ok := s.fileOpts(args[3:], "FILE.EDIT <path> <old> <new> [REPLACEALL] [IFVERSION v] [FENCE token]", "replaceall")
	if !ok {
		return
	}
	from, to := args[1], args[2]
	if len(from) == 0 {
		s.Out = wire.AppendError(s.Out, "ERR the old string must not be empty")
		return
	}
	s.fileRewrite(path, o, "file.edit", "FILE.EDIT", func(m *fileMeta, old []byte) ([]byte, []any, error) {
		if m == nil {
			return nil, nil, replyError("ERR no such file " + path)
		}
		n := bytes.Count(old, from)
		switch {
		case n == 0:
			return nil, nil, replyError("ERR no match for the old string in " + path)
		case n > 1 && !o.replaceAll:
			return nil, nil, replyError("ERR the old string occurs " + strconv.Itoa(n) + " times in " + path +
				"; pass REPLACEALL or include more context")
		}
		return bytes.Replace(old, from, to, -1), []any{"replacements", n}, nil
	})
}

// retryRead runs a read attempt again while the file is replaced under it
// (errFileChanged), at most fileRetries times, and answers other errors.
func (s req) retryRead(attempt func() error) {
	for range fileRetries {
		err := attempt()
		if errors.Is(err, errFileChanged) {
			continue
		}
		if err != nil {
			s.fileErr(err)
		}
		return
	}
	s.fileErr(errFileChanged)
}

// bulkOf appends a bulk string of n bytes that fill appends to out; when
// fill fails or writes another length, out is restored and the error
// returned (errFileChanged for a length that moved).
func (s req) bulkOf(n int64, fill func() error) error {
	mark := len(s.Out)
	s.Out = slices.Grow(s.Out, int(n)+32)
	s.Out = append(strconv.AppendInt(append(s.Out, '$'), n, 10), '\r', '\n')
	body := len(s.Out)
	err := fill()
	if err == nil && int64(len(s.Out)-body) != n {
		err = errFileChanged
	}
	if err != nil {
		s.Out = s.Out[:mark]
		return err
	}
	s.Out = append(s.Out, '\r', '\n')
	return nil
}

// fileGet: FILE.GET <path> → the whole file.
func (s req) fileGet(args [][]byte) {
	path, ok := s.filePath(args[0])
	if !ok {
		return
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	k := s.fileKeys(path)
	s.retryRead(func() error {
		m, head, err := f.open(k, 0, 1<<40, fileReadBatch)
		if errors.Is(err, errNoFile) {
			s.appendNil()
			return nil
		}
		if err != nil {
			return err
		}
		if m.size > int64(s.Env.MaxOutput) {
			return replyError("ERR " + path + " is " + strconv.FormatInt(m.size, 10) +
				" bytes, more than the proxy returns at once (listen.max_output_bytes); read it with FILE.GETRANGE")
		}
		return s.bulkOf(m.size, func() error {
			return f.stream(k, m, head, 0, 0, m.chunks-1, func(_ int64, b []byte) error {
				s.Out = append(s.Out, b...)
				return nil
			})
		})
	})
}

// fileGetRange: FILE.GETRANGE <path> <start> <end>, GETRANGE's rules.
func (s req) fileGetRange(args [][]byte) {
	path, ok := s.filePath(args[0])
	if !ok {
		return
	}
	start, err1 := strconv.ParseInt(string(args[1]), 10, 64)
	end, err2 := strconv.ParseInt(string(args[2]), 10, 64)
	if err1 != nil || err2 != nil {
		s.Out = wire.AppendError(s.Out, "ERR value is not an integer or out of range")
		return
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	k := s.fileKeys(path)
	// Guess the chunks from the configured chunk size, so a range of a
	// file written with it comes with the metadata, in one call. Offsets
	// from the end: take the file's head, which is the whole of a small
	// file.
	guess, budget := [2]int64{0, 1 << 40}, fileHeadBytes
	if cs := int64(s.Env.Files.ChunkSize); start >= 0 && end >= start {
		guess, budget = [2]int64{start / cs, end / cs}, fileReadBatch
	}
	s.retryRead(func() error {
		m, head, err := f.open(k, guess[0], guess[1], budget)
		if errors.Is(err, errNoFile) {
			s.appendNil()
			return nil
		}
		if err != nil {
			return err
		}
		lo, hi := start, end // GETRANGE's rules, as Redis 7 applies them
		if lo < 0 {
			lo = max(0, m.size+lo)
		}
		if hi < 0 {
			hi = max(0, m.size+hi)
		}
		hi = min(hi, m.size-1)
		if start < 0 && end < 0 && start > end || lo > hi || m.size == 0 {
			s.Out = append(s.Out, "$0\r\n\r\n"...)
			return nil
		}
		if hi-lo+1 > int64(s.Env.MaxOutput) {
			return replyError("ERR the range is larger than the proxy returns at once (listen.max_output_bytes)")
		}
		cs := m.chunkSize
		return s.bulkOf(hi-lo+1, func() error {
			return f.stream(k, m, head, guess[0], lo/cs, hi/cs, func(n int64, b []byte) error {
				a, z := max(lo-n*cs, 0), min(hi-n*cs+1, int64(len(b)))
				if a < z {
					s.Out = append(s.Out, b[a:z]...)
				}
				return nil
			})
		})
	})
}

// newlines parses a metadata nl list (newlines per chunk).
func (m *fileMeta) newlines() []int64 {
	out := make([]int64, 0, m.chunks)
	for _, f := range strings.Split(m.nl, ",") {
		n, _ := strconv.ParseInt(f, 10, 64)
		out = append(out, n)
	}
	return out
}

// fileRead: FILE.READ <path> [OFFSET n] [LIMIT n]: lines offset.. of the
// file, found from the per-chunk newline counts so only the chunks that
// hold them are read.
func (s req) fileRead(args [][]byte) {
	path, ok := s.filePath(args[0])
	if !ok {
		return
	}
	offset, limit := int64(0), int64(fileDefLimit)
	for i := 1; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.Out = wire.AppendError(s.Out, "ERR syntax error: FILE.READ <path> [OFFSET n] [LIMIT n]")
			return
		}
		switch {
		case keyspace.EqFold(args[i], "offset"):
			n, err := strconv.ParseInt(string(args[i+1]), 10, 64)
			if err != nil || n < 0 {
				s.Out = wire.AppendError(s.Out, "ERR OFFSET must be a line number from 0, got '"+wire.QuoteArg(args[i+1])+"'")
				return
			}
			offset = n
		case keyspace.EqFold(args[i], "limit"):
			if limit, ok = s.PosInt(args[i+1], "LIMIT", fileMaxLimit); !ok {
				return
			}
		default:
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(args[i])+"': FILE.READ <path> [OFFSET n] [LIMIT n]")
			return
		}
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	defer s.shrinkFileBuf()
	k := s.fileKeys(path)
	room := s.Env.MaxOutput / 2 // the reply must fit the client's output limit
	s.retryRead(func() error {
		m, head, err := f.open(k, 0, 1<<40, fileHeadBytes)
		if errors.Is(err, errNoFile) {
			s.appendNil()
			return nil
		}
		if err != nil {
			return err
		}
		if offset > 0 && offset >= m.lines {
			return replyError("ERR offset " + strconv.FormatInt(offset, 10) + " is past the end of " + path +
				" (" + strconv.FormatInt(m.lines, 10) + " lines)")
		}
		endLine := min(offset+limit, m.lines)
		// The content runs from just after newline number offset (or the
		// start) to just after newline number endLine (or the end).
		nl := m.newlines()
		startChunk, endChunk := int64(0), m.chunks-1
		var seen, before int64 // newlines before startChunk
		for i, n := range nl {
			if offset > 0 && seen+n < offset {
				startChunk, before = int64(i)+1, seen+n
			}
			if seen+n >= endLine && endLine < m.lines {
				endChunk = int64(i)
				break
			}
			seen += n
		}
		buf := s.FileBuf[:0]
		lineStart := 0  // where the line being taken starts in buf
		count := before // newlines passed so far
		started := offset == 0
		take := func(n int64, b []byte) error {
			for len(b) > 0 {
				if !started {
					i := bytes.IndexByte(b, '\n')
					if i < 0 {
						return nil
					}
					count++
					b = b[i+1:]
					started = count == offset
					continue
				}
				i := bytes.IndexByte(b, '\n')
				if len(buf)+i+1 > room || i < 0 && len(buf)+len(b) > room {
					if count == offset {
						return errTooBig
					}
					// Stop after the last whole line that fits.
					buf, endLine = buf[:lineStart], count
					return errStop
				}
				if i < 0 {
					buf = append(buf, b...)
					return nil
				}
				buf = append(buf, b[:i+1]...)
				lineStart = len(buf)
				b = b[i+1:]
				count++
				if count == endLine {
					return errStop
				}
			}
			return nil
		}
		err = f.stream(k, m, head, 0, startChunk, endChunk, take)
		s.FileBuf = buf[:0]
		if errors.Is(err, errTooBig) {
			return replyError("ERR line " + strconv.FormatInt(offset+1, 10) + " of " + path +
				" is longer than the proxy returns at once (listen.max_output_bytes); read it with FILE.GETRANGE")
		}
		if err != nil {
			return err
		}
		next := endLine
		if endLine >= m.lines {
			next = -1
		}
		startLine := offset + 1
		if m.lines == 0 {
			startLine = 0
		}
		s.record("path", path, "content", buf, "total_lines", m.lines, "start_line", startLine,
			"end_line", endLine, "next_offset", next, "version", m.version)
		return nil
	})
}

// isDir reports whether any file lies under dir (ending in '/').
func (f *fstore) isDir(k fileKeys, dir string) (bool, error) {
	r, err := f.cmd("ZRANGEBYLEX", k.index, "["+dir, "+", "LIMIT", "0", "1")
	if err != nil {
		return false, err
	}
	items, _ := splitArray(r)
	return len(items) > 0 && strings.HasPrefix(string(items[0]), dir), nil
}

// clash answers why path cannot be a file: it is a directory, or lies
// under a file ("" when it can). The commit script checks the same.
func (f *fstore) clash(k fileKeys, path string) (string, error) {
	is, err := f.isDir(k, path+"/")
	if err != nil || is {
		return "ERR " + path + " is a directory; a file cannot have its name", err
	}
	f.req = f.req[:0]
	var dirs []string
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			dirs = append(dirs, path[:i])
			f.req = upstream.AppendCommand(f.req, "ZSCORE", k.index, path[:i])
		}
	}
	if len(dirs) == 0 {
		return "", nil
	}
	r, err := f.send(len(dirs), f.req)
	if err != nil {
		return "", err
	}
	for _, d := range dirs {
		v, n, err := domain.ParseReply(r)
		if err != nil {
			return "", replyError("ERR unexpected reply from the file index")
		}
		if v.Typ == '$' {
			return "ERR " + d + " is a file; " + path + " cannot be created under it", nil
		}
		r = r[n:]
	}
	return "", nil
}

// fileStat: FILE.STAT <path>.
func (s req) fileStat(args [][]byte) {
	dir, ok := s.fileDir(args[0])
	if !ok {
		return
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	path, perr := files.Clean(string(args[0])) // fails for "/", "/a/", "/a/.": directories
	k := s.fileKeys(path)
	if perr == nil {
		m, _, err := f.open(k, 0, -1, 0)
		if err == nil {
			s.record("path", path, "type", "file", "version", m.version, "size", m.size, "sha1", m.sha1,
				"lines", m.lines, "encoding", m.encoding, "chunks", m.chunks, "chunk_size", m.chunkSize,
				"created_at", m.created, "modified_at", m.modified)
			return
		}
		if !errors.Is(err, errNoFile) {
			s.fileErr(err)
			return
		}
	}
	is, err := f.isDir(k, dir)
	if err != nil {
		s.fileErr(err)
		return
	}
	if !is && dir != "/" {
		s.appendNil()
		return
	}
	s.record("path", dir, "type", "dir")
}

// walk calls fn for every indexed path starting with prefix, in order, a
// page at a time. fn returns the next lower bound to jump to ("" to go
// on), or stop.
func (f *fstore) walk(k fileKeys, prefix string, fn func(path string) (skipTo string, stop bool)) error {
	from := "[" + prefix
	for {
		r, err := f.cmd("ZRANGEBYLEX", k.index, from, "+", "LIMIT", "0", strconv.Itoa(fileIndexPage))
		if err != nil {
			return err
		}
		items, ok := splitArray(r)
		if !ok {
			return replyError("ERR unexpected reply from the file index")
		}
		paths := make([]string, len(items))
		for i, it := range items {
			paths[i] = string(it)
		}
		jumped := false
		skip := ""
		for _, p := range paths {
			if !strings.HasPrefix(p, prefix) {
				return nil
			}
			if skip != "" && p < skip {
				continue
			}
			to, stop := fn(p)
			if stop {
				return nil
			}
			skip = to
		}
		if len(paths) < fileIndexPage {
			return nil
		}
		last := paths[len(paths)-1]
		if skip != "" && skip > last {
			from, jumped = "["+skip, true
		}
		if !jumped {
			from = "(" + last
		}
	}
}

// fileLs: FILE.LS [dir] → the direct children, directories ending in '/'.
func (s req) fileLs(args [][]byte) {
	dir := "/"
	if len(args) > 0 {
		var ok bool
		if dir, ok = s.fileDir(args[0]); !ok {
			return
		}
	}
	if len(args) > 1 {
		s.Out = wire.AppendError(s.Out, "ERR syntax error: FILE.LS [dir]")
		return
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	k := s.fileKeys(dir)
	type entry struct {
		path string
		dir  bool
	}
	var entries []entry
	err := f.walk(k, dir, func(p string) (string, bool) {
		rest := p[len(dir):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			sub := dir + rest[:i+1]
			entries = append(entries, entry{sub, true})
			return dir + rest[:i] + "0", false // '0' follows '/': skip the subtree
		}
		entries = append(entries, entry{p, false})
		return "", false
	})
	if err != nil {
		s.fileErr(err)
		return
	}
	// Sizes and times of the files, in one pipelined round trip.
	f.req = f.req[:0]
	nfiles := 0
	for _, e := range entries {
		if !e.dir {
			f.req = upstream.AppendCommand(f.req, "HMGET", s.fileKeys(e.path).meta, "size", "modified_at")
			nfiles++
		}
	}
	var metas [][]byte
	if nfiles > 0 {
		r, err := f.send(nfiles, f.req)
		if err != nil {
			s.fileErr(err)
			return
		}
		for len(r) > 0 {
			items, _ := splitArray(r)
			if len(items) != 2 {
				items = [][]byte{nil, nil}
			}
			metas = append(metas, items...)
			_, n, err := domain.ParseReply(r)
			if err != nil {
				break
			}
			r = r[n:]
		}
	}
	s.Out = redcon.AppendArray(s.Out, len(entries))
	j := 0
	for _, e := range entries {
		if e.dir {
			s.record("path", e.path, "type", "dir", "size", 0, "modified_at", 0)
			continue
		}
		var size, mod int64
		if 2*j+1 < len(metas) {
			size, _ = strconv.ParseInt(string(metas[2*j]), 10, 64)
			mod, _ = strconv.ParseInt(string(metas[2*j+1]), 10, 64)
		}
		j++
		s.record("path", e.path, "type", "file", "size", size, "modified_at", mod)
	}
}

// globArgs parses the optional PATH and GLOB of FILE.GLOB/FILE.GREP.
func (s req) globOpts(args [][]byte, usage string, withGlob, withMax bool) (dir string, g *files.Glob, maxn int64, ok bool) {
	dir, maxn = "/", fileDefMatches
	var pattern []byte
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.Out = wire.AppendError(s.Out, "ERR syntax error: "+usage)
			return "", nil, 0, false
		}
		v := args[i+1]
		switch {
		case keyspace.EqFold(args[i], "path"):
			if dir, ok = s.fileDir(v); !ok {
				return "", nil, 0, false
			}
		case keyspace.EqFold(args[i], "glob") && withGlob:
			pattern = v
		case keyspace.EqFold(args[i], "maxcount") && withMax:
			if maxn, ok = s.PosInt(v, "MAXCOUNT", fileMaxMatches); !ok {
				return "", nil, 0, false
			}
		default:
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(args[i])+"': "+usage)
			return "", nil, 0, false
		}
	}
	if pattern != nil {
		var err error
		if g, err = files.CompileGlob(string(pattern), dir); err != nil {
			s.Out = wire.AppendError(s.Out, "ERR bad GLOB: "+err.Error())
			return "", nil, 0, false
		}
	}
	return dir, g, maxn, true
}

// fileGlob: FILE.GLOB <pattern> [PATH dir] → matching file paths.
func (s req) fileGlob(args [][]byte) {
	dir, _, _, ok := s.globOpts(args[1:], "FILE.GLOB <pattern> [PATH dir]", false, false)
	if !ok {
		return
	}
	g, err := files.CompileGlob(string(args[0]), dir)
	if err != nil {
		s.Out = wire.AppendError(s.Out, "ERR bad pattern: "+err.Error())
		return
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	var out []string
	err = f.walk(s.fileKeys(dir), g.Prefix(), func(p string) (string, bool) {
		if g.Match(p) {
			out = append(out, p)
		}
		return "", false
	})
	if err != nil {
		s.fileErr(err)
		return
	}
	s.Out = redcon.AppendArray(s.Out, len(out))
	for _, p := range out {
		s.Out = redcon.AppendBulkString(s.Out, p)
	}
}

// fileGrep: FILE.GREP <literal> [PATH dir] [GLOB g] [MAXCOUNT n]. Each
// file is streamed a batch of chunks at a time on a dedicated connection
// and searched in Go.
func (s req) fileGrep(args [][]byte) {
	lit := args[0]
	if len(lit) == 0 || bytes.ContainsAny(lit, "\r\n") {
		s.Out = wire.AppendError(s.Out, "ERR the literal must be non-empty and within one line (no CR or LF)")
		return
	}
	dir, g, maxn, ok := s.globOpts(args[1:], "FILE.GREP <literal> [PATH dir] [GLOB g] [MAXCOUNT n]", true, true)
	if !ok {
		return
	}
	f, ok := s.fstore(true)
	if !ok {
		return
	}
	defer f.close()
	prefix := dir // the walk covers PATH, or the glob's narrower prefix
	if g != nil && strings.HasPrefix(g.Prefix(), dir) {
		prefix = g.Prefix()
	}
	var paths []string
	var hits []grepHit
	var ferr error
	size := 0
	flush := func() bool {
		for _, p := range paths {
			h, err := f.grepFile(s.fileKeys(p), p, lit, maxn-int64(len(hits)))
			if err != nil && !errors.Is(err, errNoFile) {
				ferr = err
				return false
			}
			hits = append(hits, h...)
			for _, x := range h {
				size += len(x.path) + len(x.text) + 64
			}
			if int64(len(hits)) >= maxn || size > s.Env.MaxOutput/2 {
				return false // enough: MAXCOUNT, or as much as one reply may carry
			}
		}
		paths = paths[:0]
		return true
	}
	err := f.walk(s.fileKeys(dir), prefix, func(p string) (string, bool) {
		if strings.HasPrefix(p, dir) && (g == nil || g.Match(p)) {
			paths = append(paths, p)
		}
		if len(paths) >= fileIndexPage {
			return "", !flush()
		}
		return "", false
	})
	if err == nil && ferr == nil && int64(len(hits)) < maxn && size <= s.Env.MaxOutput/2 {
		flush()
	}
	if err == nil {
		err = ferr
	}
	if err != nil {
		s.fileErr(err)
		return
	}
	s.Out = redcon.AppendArray(s.Out, len(hits))
	for _, h := range hits {
		s.record("path", h.path, "line", h.line, "text", h.text)
	}
}

type grepHit struct {
	path string
	line int64
	text []byte
}

// grepFile searches one file line by line for lit, at most maxn hits; a
// file replaced while it is read is searched again from the start.
func (f *fstore) grepFile(k fileKeys, path string, lit []byte, maxn int64) ([]grepHit, error) {
	for range fileRetries {
		m, head, err := f.open(k, 0, 1<<40, fileHeadBytes)
		if err != nil {
			return nil, err
		}
		if m.encoding == "binary" {
			return nil, nil
		}
		var hits []grepHit
		var carry []byte
		line := int64(1)
		search := func(b []byte) {
			done := 0 // b[:done] has been counted into line
			for pos := 0; int64(len(hits)) < maxn; {
				i := bytes.Index(b[pos:], lit)
				if i < 0 {
					break
				}
				hit := pos + i
				ls := bytes.LastIndexByte(b[:hit], '\n') + 1
				le := bytes.IndexByte(b[hit:], '\n')
				if le < 0 {
					le = len(b)
				} else {
					le += hit
				}
				line += int64(bytes.Count(b[done:ls], []byte{'\n'}))
				done = ls
				hits = append(hits, grepHit{path, line, bytes.TrimSuffix(append([]byte(nil), b[ls:le]...), []byte{'\r'})})
				pos = le + 1
				if pos > len(b) {
					break
				}
			}
			line += int64(bytes.Count(b[done:], []byte{'\n'}))
		}
		err = f.stream(k, m, head, 0, 0, m.chunks-1, func(_ int64, b []byte) error {
			if int64(len(hits)) >= maxn {
				return errStop
			}
			if len(carry) > 0 {
				i := bytes.IndexByte(b, '\n')
				if i < 0 {
					carry = append(carry, b...)
					return nil
				}
				carry = append(carry, b[:i+1]...)
				search(carry)
				carry, b = carry[:0], b[i+1:]
			}
			cut := bytes.LastIndexByte(b, '\n') + 1
			search(b[:cut])
			carry = append(carry, b[cut:]...)
			return nil
		})
		if errors.Is(err, errFileChanged) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(carry) > 0 && int64(len(hits)) < maxn {
			search(carry)
		}
		return hits, nil
	}
	return nil, errFileChanged
}

// fileDel: FILE.DEL <path> [RECURSIVE] [IFVERSION v] [FENCE t].
func (s req) fileDel(args [][]byte) {
	o, ok := s.fileOpts(args[1:], "FILE.DEL <path> [RECURSIVE] [IFVERSION v] [FENCE token]", "recursive")
	if !ok {
		return
	}
	dir, ok := s.fileDir(args[0])
	if !ok {
		return
	}
	f, ok := s.fstore(false)
	if !ok {
		return
	}
	defer f.close()
	if path, perr := files.Clean(string(args[0])); perr == nil {
		n, err := f.del([]string{path}, o.ifv, o.token)
		if err != nil {
			s.fileErr(err)
			return
		}
		if n > 0 {
			s.Out = redcon.AppendInt(s.Out, n)
			return
		}
	}
	is, err := f.isDir(s.fileKeys(dir), dir)
	if err != nil {
		s.fileErr(err)
		return
	}
	if !is {
		s.Out = redcon.AppendInt(s.Out, 0)
		return
	}
	if !o.recursive {
		s.Out = wire.AppendError(s.Out, "ERR "+dir+" is a directory; pass RECURSIVE to delete it and everything under it")
		return
	}
	if o.ifv != "" {
		s.Out = wire.AppendError(s.Out, "ERR IFVERSION applies to one file, not to a directory")
		return
	}
	var total int64
	var batch []string
	var derr error
	run := func() bool {
		n, err := f.del(batch, "", "")
		total += n
		batch = batch[:0]
		derr = err
		return err == nil
	}
	err = f.walk(s.fileKeys(dir), dir, func(p string) (string, bool) {
		batch = append(batch, p)
		if len(batch) >= fileDelBatch {
			return "", !run()
		}
		return "", false
	})
	if err == nil && derr == nil && len(batch) > 0 {
		run()
	}
	if err == nil {
		err = derr
	}
	if err != nil {
		s.fileErr(err)
		return
	}
	s.Out = redcon.AppendInt(s.Out, total)
}

// del deletes files, one script each, pipelined; it stops at the first
// refusal (LOCKED, FENCED, CONFLICT) and reports it after counting.
func (f *fstore) del(paths []string, ifv, token string) (int64, error) {
	sc := lua.Get("file_del")
	var total int64
	for _, full := range []bool{false, true} {
		f.req = f.req[:0]
		for _, p := range paths {
			k := f.s.fileKeys(p)
			t := token
			if t == "" {
				t = f.s.HeldToken(k.resource)
			}
			f.req = sc.AppendCall(f.req, full, []string{k.meta, k.index, k.log, k.lock, k.fence},
				[]string{p, f.s.Workspace, k.resource, domain.EventsMaxLen, f.s.Channel(), f.s.Actor, t, ifv}, 0)
		}
		r, err := f.send(len(paths), f.req)
		if err != nil {
			return 0, err
		}
		var first error
		noscript := false
		for len(r) > 0 {
			v, n, err := domain.ParseReply(r)
			if err != nil {
				return total, replyError("ERR unexpected reply deleting files")
			}
			switch {
			case lua.IsNoScript(r):
				noscript = true
			case v.Typ == ':':
				k, _ := strconv.ParseInt(v.Str, 10, 64)
				total += k
			case v.Typ == '-' && first == nil:
				first = replyError(v.Str)
			}
			r = r[n:]
		}
		if noscript && !full {
			continue // the deletions that ran are idempotent to repeat
		}
		return total, first
	}
	return total, nil
}
