package filestore

// FILE.WRITE, FILE.APPEND, FILE.EDIT and FILE.DEL.

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/files"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/lua"
	"github.com/tidwall/redcon"
)

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
				[]string{p, f.s.Workspace, k.resource, f.s.EventsMaxLen(), f.s.Channel(), f.s.Actor, t, ifv}, 0)
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
