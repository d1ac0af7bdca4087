package domain

import (
	"bytes"
	"errors"
	"strconv"
)

// Reply is a parsed reply of a domain script or command (the domain's own
// replies, never client data on the forwarding path).
type Reply struct {
	Typ  byte
	Str  string // bulk/simple/integer text
	Raw  []byte // the whole frame, for scalars
	Kids []Reply
}

// ErrShortReply means the bytes end inside the reply.
var ErrShortReply = errors.New("short reply")

// ParseReply parses one reply frame: arrays, bulk and simple strings,
// integers, errors and nulls (what a Lua script can return).
func ParseReply(b []byte) (Reply, int, error) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 1 {
		return Reply{}, 0, ErrShortReply
	}
	line := string(b[1:i])
	switch b[0] {
	case '+', '-', ':', '_', ',', '#':
		return Reply{Typ: b[0], Str: line, Raw: b[:i+2]}, i + 2, nil
	case '$':
		n, err := strconv.Atoi(line)
		if err != nil {
			return Reply{}, 0, err
		}
		if n < 0 {
			return Reply{Typ: '_', Raw: b[:i+2]}, i + 2, nil
		}
		end := i + 2 + n + 2
		if len(b) < end {
			return Reply{}, 0, ErrShortReply
		}
		return Reply{Typ: '$', Str: string(b[i+2 : i+2+n]), Raw: b[:end]}, end, nil
	case '*':
		n, err := strconv.Atoi(line)
		if err != nil {
			return Reply{}, 0, err
		}
		v := Reply{Typ: '*'}
		off := i + 2
		for range max(n, 0) {
			k, m, err := ParseReply(b[off:])
			if err != nil {
				return Reply{}, 0, err
			}
			v.Kids = append(v.Kids, k)
			off += m
		}
		return v, off, nil
	}
	return Reply{}, 0, errors.New("unexpected reply type " + string(b[0]))
}
