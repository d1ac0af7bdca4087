package filestore

// FILE.GET, FILE.GETRANGE, FILE.READ and FILE.STAT.

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/files"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

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
