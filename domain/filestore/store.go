package filestore

// The store: a file's metadata, chunks and index, read and written a few
// chunks at a time on a shared or dedicated connection.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/lua"
	"github.com/agentproxy/agentproxy/upstream"
)

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
		c, err := s.Env.Node(s.Workspace).Dedicated(2, true)
		if err != nil {
			s.Up.GiveDedicated(f.ws)
			s.Out = wire.AppendError(s.Out, wire.TryAgainDown(s.Env.Node(s.Workspace)))
			return nil, false
		}
		f.conn = c
	} else if f.conn = s.Env.Node(s.Workspace).Shared(2); f.conn == nil {
		s.Out = wire.AppendError(s.Out, wire.TryAgainDown(s.Env.Node(s.Workspace)))
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
	if c, err := f.s.Env.Node(f.s.Workspace).Dedicated(2, true); err == nil {
		f.conn, f.ded, f.bad = c, true, false
	} else {
		f.s.Up.GiveDedicated(f.ws)
	}
}

func (f *fstore) close() {
	if f.ded {
		f.conn.Pool().Release(f.conn, 2, !f.bad)
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
	args := []string{path, f.s.Workspace, k.resource, f.s.EventsMaxLen(), f.s.Channel(), f.s.Actor, token, ifv,
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
