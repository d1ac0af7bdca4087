package filestore

import (
	"errors"
	"strconv"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/files"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
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
