package upstream

import (
	"bytes"
	"errors"
)

// ErrProtocol reports bytes from Redis that are not valid RESP. The
// connection that produced them cannot be trusted any more and is closed.
var ErrProtocol = errors.New("upstream protocol error")

// maxLine bounds a RESP header line ($, *, ;, ...). Redis never sends longer
// ones; a longer one means the stream is corrupt. Simple lines (+, -, :, ...)
// are streamed instead: a Lua script can make them any size.
const maxLine = 64 << 10

// maxStreamDepth bounds nested RESP3 streamed aggregates (*?, %?, ...).
const maxStreamDepth = 64

// Framer finds the boundaries of RESP2/RESP3 replies in a byte stream
// without decoding them. It is resumable: Scan consumes as much of the
// current frame as the buffer holds, remembers where it is, and continues
// on the next call, so a 100 MB bulk string is forwarded in pieces with a
// small, fixed read buffer and a frame of a million elements is scanned
// once, not once per read.
//
// The zero value is ready to scan a new frame.
type Framer struct {
	pending int   // elements still to read in the current frame
	bulk    int   // payload bytes (plus CRLF) still to skip in a bulk
	chunked bool  // inside a streamed string ($?): expecting ;n chunks
	stream  []int // saved pending counts of open streamed aggregates
	started bool  // the current frame has consumed at least one byte
	push    bool  // the current frame is a RESP3 push (>)
	line    bool  // inside a simple line (+, -, :, ...) whose end has not arrived
	cr      bool  // the last byte consumed of that line was '\r'
}

// Reset forgets any partial frame.
func (f *Framer) Reset() {
	f.pending, f.bulk, f.chunked, f.started, f.push = 0, 0, false, false, false
	f.line, f.cr = false, false
	f.stream = f.stream[:0]
}

// Push reports whether the frame being scanned (or just completed) is a RESP3
// push message, which is out-of-band and does not answer a command.
func (f *Framer) Push() bool { return f.push }

// Scan consumes bytes of the current frame from b. It returns how many bytes
// belong to the frame (they may be forwarded at once) and whether the frame
// is complete. When it returns done=false, all of b up to n is consumed and
// the caller must supply more bytes starting at b[n:].
func (f *Framer) Scan(b []byte) (n int, done bool, err error) {
	if !f.started {
		if len(b) == 0 {
			return 0, false, nil
		}
		f.pending = 1
		f.started = true
		f.push = len(b) > 0 && b[0] == '>'
	}
	for {
		if f.line {
			// The rest of a simple line that did not fit the last buffer.
			rest := b[n:]
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				if len(rest) > 0 {
					f.cr = rest[len(rest)-1] == '\r'
				}
				return len(b), false, nil
			}
			if i > 0 {
				f.cr = rest[i-1] == '\r'
			}
			if !f.cr {
				return n, false, ErrProtocol
			}
			n += i + 1
			f.line, f.cr = false, false
			f.pending--
		}
		if f.bulk > 0 {
			k := f.bulk
			if k > len(b)-n {
				k = len(b) - n
			}
			// The final two bytes must be CRLF; check each one present here
			// (a split may fall between them).
			if cr := f.bulk - 2; cr >= 0 && cr < k && b[n+cr] != '\r' {
				return n, false, ErrProtocol
			}
			if lf := f.bulk - 1; lf < k && b[n+lf] != '\n' {
				return n, false, ErrProtocol
			}
			n += k
			f.bulk -= k
			if f.bulk > 0 {
				return n, false, nil
			}
			if !f.chunked {
				f.pending--
			}
		}
		if f.pending == 0 && len(f.stream) == 0 && !f.chunked {
			f.started = false
			return n, true, nil
		}
		if n >= len(b) {
			return n, false, nil
		}
		// A line: type byte, content, CRLF.
		rest := b[n:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if !f.chunked && isSimple(rest[0]) {
				// Forward a simple line as it arrives, like a bulk: a Lua
				// script can make Redis send a status or error of any size,
				// and refusing it would break the connection for everyone.
				f.line = true
				f.cr = len(rest) > 1 && rest[len(rest)-1] == '\r'
				return len(b), false, nil
			}
			if len(rest) > maxLine {
				return n, false, ErrProtocol
			}
			return n, false, nil
		}
		if i < 2 || rest[i-1] != '\r' {
			return n, false, ErrProtocol
		}
		line := rest[1 : i-1]
		typ := rest[0]
		if f.chunked {
			// Streamed string chunks: ;<len>\r\n<data>\r\n, ended by ;0.
			if typ != ';' {
				return n, false, ErrProtocol
			}
			sz, ok := parseLen(line)
			if !ok || sz < 0 {
				return n, false, ErrProtocol
			}
			n += i + 1
			if sz == 0 {
				f.chunked = false
				f.pending--
				continue
			}
			f.bulk = sz + 2
			continue
		}
		switch typ {
		case '+', '-', ':', '_', ',', '#', '(':
			n += i + 1
			f.pending--
		case '$', '!', '=':
			if len(line) == 1 && line[0] == '?' && typ == '$' {
				n += i + 1
				f.chunked = true
				continue
			}
			sz, ok := parseLen(line)
			if !ok || sz < -1 {
				return n, false, ErrProtocol
			}
			n += i + 1
			if sz == -1 {
				f.pending--
				continue
			}
			f.bulk = sz + 2
		case '*', '~', '>', '%', '|':
			if len(line) == 1 && line[0] == '?' && typ != '|' {
				if len(f.stream) >= maxStreamDepth {
					return n, false, ErrProtocol
				}
				n += i + 1
				f.pending--
				f.stream = append(f.stream, f.pending)
				f.pending = -1 << 40 // counts down without reaching 0
				continue
			}
			sz, ok := parseLen(line)
			if !ok || sz < -1 {
				return n, false, ErrProtocol
			}
			n += i + 1
			if sz == -1 {
				f.pending--
				continue
			}
			if typ == '%' || typ == '|' {
				sz *= 2
			}
			if typ == '|' {
				// An attribute precedes the value it describes: the value
				// still counts as the pending element.
				f.pending += sz
			} else {
				f.pending += sz - 1
			}
		case '.':
			if len(line) != 0 || len(f.stream) == 0 {
				return n, false, ErrProtocol
			}
			n += i + 1
			f.pending = f.stream[len(f.stream)-1]
			f.stream = f.stream[:len(f.stream)-1]
		default:
			return n, false, ErrProtocol
		}
	}
}

// isSimple reports whether typ starts a one-line RESP value.
func isSimple(typ byte) bool {
	switch typ {
	case '+', '-', ':', '_', ',', '#', '(':
		return true
	}
	return false
}

// parseLen parses a non-empty decimal length, allowing a leading '-'.
// It rejects anything Redis would not send and values beyond 1<<40.
func parseLen(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 12 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n, true
	}
	return n, true
}
