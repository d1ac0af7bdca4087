package filestore

// FILE.LS, FILE.GLOB and FILE.GREP: walks of the path index.

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/files"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
	"github.com/tidwall/redcon"
)

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
