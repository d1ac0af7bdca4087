package proxy

import (
	"bytes"
	"errors"
	"io"
	"time"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/fencing"
	"github.com/agentproxy/agentproxy/internal/membudget"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/tidwall/redcon"
)

// Protocol errors answered to a client before its connection is closed. The
// texts are Redis's own, so clients that special-case them keep working.
var (
	errInvalidMultibulk = errors.New("ERR Protocol error: invalid multibulk length")
	errInvalidBulk      = errors.New("ERR Protocol error: invalid bulk length")
	errTooBigMbulk      = errors.New("ERR Protocol error: too big mbulk count string")
	errTooBigBulkCount  = errors.New("ERR Protocol error: too big bulk count string")
	errTooBigInline     = errors.New("ERR Protocol error: too big inline request")
	errUnbalancedQuotes = errors.New("ERR Protocol error: unbalanced quotes in request")
	errTooBigRequest    = errors.New("ERR Protocol error: request exceeds the proxy's max_request_bytes (listen.max_request_bytes)")
	errBudget           = errors.New("ERR the proxy's memory budget for requests and replies is exhausted (listen.memory_budget); this connection holds one of the largest requests and is closed")
)

// errExpectedDollar is built per offending byte, as Redis words it.
func errExpectedDollar(c byte) error {
	return errors.New("ERR Protocol error: expected '$', got '" + string([]byte{c}) + "'")
}

const (
	// maxInline is Redis's limit for an inline (telnet) command line.
	maxInline = 64 << 10
	// readChunk is the least free space offered to each socket read.
	readChunk = 4 << 10
	// shrinkAbove is the buffer size above which an idle buffer is released.
	shrinkAbove = 64 << 10
)

// command is one client request. Args and Raw point into the reader's buffer
// (or its inline scratch) and are valid until the next readBatch.
type command struct {
	Args [][]byte
	Raw  []byte // the RESP bytes to forward
	off  int    // offset of Raw in the reader buffer, -1 for inline commands
	deny string // set by access control: the error to answer instead
	// cmd is the command's table entry (nil: unknown to the table) and sub
	// its subcommand's (cmd itself for commands without), set by checkBatch.
	cmd, sub *keyspace.Command
	// The write plan (writes.go): replies of hidden TTL commands that
	// follow it, whether it runs as the fenced-write script, and its
	// evented keys (s.evKeys[evLo:evHi]).
	hidden     int
	wrap       bool
	evLo, evHi int
	tx         *domain.Entry     // a domain command queued in MULTI
	txEv       []fencing.Written // the events of a write queued in MULTI, sent if EXEC runs it
}

// reader parses pipelined client requests out of one growing buffer without
// copying or allocating in steady state. Like redcon's ReadPipeline, each
// socket read yields every complete command it holds as one batch. Unlike it,
// a partial command is resumed where parsing stopped, and a request larger
// than maxRequest is refused before it is buffered.
type reader struct {
	rd         io.Reader
	budget     *membudget.Budget
	held       int64 // bytes of buf beyond initial, taken from budget
	buf        []byte
	r, w       int // unread data is buf[r:w]
	maxRequest int
	maxArgs    int
	initial    int

	cmds   []command
	argv   [][]byte
	inline []byte

	// Resumable state of the partial multibulk command at buf[r:].
	pArgc int   // expected argument count, 0 when no command is partial
	pPos  int   // parse position relative to r
	pMark []int // argument start/end pairs relative to r
	err   error // a protocol error to report after the commands before it
}

func newReader(rd io.Reader, initial, maxRequest, maxArgs int) *reader {
	return &reader{rd: rd, buf: make([]byte, initial), initial: initial,
		maxRequest: maxRequest, maxArgs: maxArgs}
}

// buffered reports whether unparsed bytes remain.
func (r *reader) buffered() int { return r.w - r.r }

// readBatch returns the complete commands available, reading from the
// connection only when none is buffered. At most max commands are returned;
// the rest stay buffered for the next call.
func (r *reader) readBatch(max int) ([]command, error) {
	r.cmds = r.cmds[:0]
	r.argv = r.argv[:0]
	r.inline = r.inline[:0]
	for {
		if err := r.parse(max); err != nil {
			return r.cmds, err
		}
		if len(r.cmds) > 0 {
			return r.cmds, nil
		}
		if err := r.fill(); err != nil {
			return nil, err
		}
	}
}

// fill makes room and reads once from the connection.
func (r *reader) fill() error {
	if r.r == r.w {
		r.r, r.w = 0, 0
		if len(r.buf) > shrinkAbove {
			r.buf = make([]byte, r.initial)
			r.release()
		}
	}
	if len(r.buf)-r.w < readChunk {
		if r.r > 0 {
			n := copy(r.buf, r.buf[r.r:r.w])
			r.r, r.w = 0, n
		}
		if len(r.buf)-r.w < readChunk {
			// Double, but not past what one request may need: the buffer
			// stays within max_request_bytes plus a read.
			size := 2 * len(r.buf)
			limit := max(r.maxRequest+96, maxInline) + readChunk
			if size > limit {
				size = limit
			}
			if size < r.w+readChunk {
				size = r.w + readChunk
			}
			// Grow with the bytes that arrived, never with a length the
			// client announced: a 60 MB bulk header followed by 64 KiB
			// costs 128 KiB, not 60 MB.
			if !r.budget.Take(r.held, int64(size-len(r.buf)), budgetWait) {
				return errBudget
			}
			r.held += int64(size - len(r.buf))
			nb := make([]byte, size)
			copy(nb, r.buf[:r.w])
			r.buf = nb
		}
	}
	n, err := r.rd.Read(r.buf[r.w:])
	r.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// budgetWait is how long a small holder waits for room in the budget.
const budgetWait = 2 * time.Second

// release gives the buffer's growth back to the budget.
func (r *reader) release() {
	r.budget.Give(r.held)
	r.held = 0
}

// inject appends bytes read from the connection elsewhere (by a watcher).
// Commands already returned keep pointing at valid memory: a grown buffer
// is a new array and the old one stays alive while referenced.
func (r *reader) inject(data []byte) {
	if len(data) == 0 {
		return
	}
	if len(r.buf)-r.w < len(data) {
		size := r.w + len(data) + readChunk
		if d := int64(size - len(r.buf)); r.budget.TryTake(d) { // bounded by the watcher
			r.held += d
		}
		nb := make([]byte, size)
		copy(nb, r.buf[:r.w])
		r.buf = nb
	}
	r.w += copy(r.buf[r.w:], data)
}

// parse appends complete commands from buf[r:w] to r.cmds.
func (r *reader) parse(max int) error {
	for len(r.cmds) < max && r.r < r.w {
		if r.err != nil {
			return r.err
		}
		var ok bool
		var err error
		if r.buf[r.r] == '*' || r.pArgc > 0 {
			ok, err = r.parseMultibulk()
		} else {
			ok, err = r.parseInline()
		}
		if err != nil {
			if len(r.cmds) > 0 {
				r.err = err // answer the commands before it first
				return nil
			}
			return err
		}
		if !ok {
			break
		}
	}
	if len(r.cmds) == 0 && r.err != nil {
		return r.err
	}
	return nil
}

// parseMultibulk parses or resumes the RESP array command at buf[r:].
func (r *reader) parseMultibulk() (bool, error) {
	b := r.buf[r.r:r.w]
	if r.pArgc == 0 {
		i := bytes.IndexByte(b, '\n')
		if i > maxInline || i < 0 && len(b) > maxInline {
			// The same verdict whether or not the newline has arrived.
			return false, errTooBigMbulk
		}
		if i < 0 {
			return false, nil
		}
		if i < 2 || b[i-1] != '\r' {
			return false, errInvalidMultibulk
		}
		n, ok := wire.ParseInt(b[1 : i-1])
		if !ok || n > r.maxArgs {
			return false, errInvalidMultibulk
		}
		if n <= 0 {
			// Redis skips empty multibulks silently.
			r.r += i + 1
			return true, nil
		}
		r.pArgc = n
		r.pPos = i + 1
		r.pMark = r.pMark[:0]
	}
	for len(r.pMark) < 2*r.pArgc {
		rest := b[r.pPos:]
		if len(rest) == 0 {
			return false, r.checkSize()
		}
		if rest[0] != '$' {
			return false, errExpectedDollar(rest[0])
		}
		i := bytes.IndexByte(rest, '\n')
		if i > 32 || i < 0 && len(rest) > 32 {
			return false, errTooBigBulkCount
		}
		if i < 0 {
			return false, nil
		}
		if i < 2 || rest[i-1] != '\r' {
			return false, errInvalidBulk
		}
		n, ok := wire.ParseInt(rest[1 : i-1])
		if !ok || n < 0 || n > r.maxRequest {
			return false, errInvalidBulk
		}
		start := r.pPos + i + 1
		if start+n+2 > r.maxRequest+64 {
			return false, errTooBigRequest
		}
		if len(b) < start+n+2 {
			return false, r.checkSize()
		}
		if b[start+n] != '\r' || b[start+n+1] != '\n' {
			return false, errInvalidBulk
		}
		r.pMark = append(r.pMark, start, start+n)
		r.pPos = start + n + 2
	}
	first := len(r.argv)
	for k := 0; k < len(r.pMark); k += 2 {
		r.argv = append(r.argv, b[r.pMark[k]:r.pMark[k+1]:r.pMark[k+1]])
	}
	r.cmds = append(r.cmds, command{Args: r.argv[first:len(r.argv):len(r.argv)], Raw: b[:r.pPos:r.pPos], off: r.r})
	r.r += r.pPos
	r.pArgc, r.pPos = 0, 0
	return true, nil
}

// checkSize refuses a partial command that already exceeds the request limit.
func (r *reader) checkSize() error {
	if r.w-r.r > r.maxRequest+64 {
		return errTooBigRequest
	}
	return nil
}

// parseInline parses a telnet-style command line, converting it to RESP so it
// can be forwarded like any other command.
func (r *reader) parseInline() (bool, error) {
	b := r.buf[r.r:r.w]
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(b) > maxInline {
			return false, errTooBigInline
		}
		return false, nil
	}
	if i > maxInline {
		return false, errTooBigInline
	}
	line := b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	start := len(r.inline)
	args, ok := wire.SplitInline(r.inline, line)
	if !ok {
		return false, errUnbalancedQuotes
	}
	r.r += i + 1
	if len(args) == start {
		return true, nil // empty line: ignored, as Redis does
	}
	// args holds the unescaped words after start; build RESP after them.
	words := args[start:]
	var marks [64]int
	m := marks[:0]
	pos := 0
	for pos < len(words) {
		n := int(words[pos])<<24 | int(words[pos+1])<<16 | int(words[pos+2])<<8 | int(words[pos+3])
		m = append(m, pos+4, pos+4+n)
		pos += 4 + n
	}
	raw := len(args)
	args = redcon.AppendArray(args, len(m)/2)
	for k := 0; k < len(m); k += 2 {
		args = redcon.AppendBulk(args, args[start+m[k]:start+m[k+1]])
	}
	r.inline = args
	first := len(r.argv)
	for k := 0; k < len(m); k += 2 {
		r.argv = append(r.argv, args[start+m[k]:start+m[k+1]:start+m[k+1]])
	}
	r.cmds = append(r.cmds, command{Args: r.argv[first:], Raw: args[raw:], off: -1})
	return true, nil
}
