package wire

import (
	"strconv"
	"strings"

	"github.com/agentproxy/agentproxy/upstream"
	"github.com/tidwall/redcon"
)

// AppendError appends an error reply.
func AppendError(b []byte, msg string) []byte { return redcon.AppendError(b, msg) }

// AppendArity appends Redis's wrong-number-of-arguments error for cmd.
func AppendArity(b []byte, cmd string) []byte {
	b = append(b, '-')
	b = append(b, ErrWrongArityPrefix...)
	b = append(b, cmd...)
	b = append(b, ErrWrongAritySuffix...)
	return append(b, '\r', '\n')
}

// AppendNull appends a null: _ under RESP3, a null bulk under RESP2.
func AppendNull(b []byte, proto int) []byte {
	if proto == 3 {
		return append(b, '_', '\r', '\n')
	}
	return redcon.AppendNull(b)
}

// AppendMap appends the header of a map of n pairs: % under RESP3, a flat
// array of 2n elements under RESP2.
func AppendMap(b []byte, n, proto int) []byte {
	if proto == 3 {
		b = append(b, '%')
		b = strconv.AppendInt(b, int64(n), 10)
		return append(b, '\r', '\n')
	}
	return redcon.AppendArray(b, 2*n)
}

// AsMap turns a flat [field, value, ...] array reply at b[start:] into a
// RESP3 map for RESP3 clients; RESP2 clients keep the flat array.
func AsMap(b []byte, start, proto int) []byte {
	if proto != 3 || start >= len(b) || b[start] != '*' {
		return b
	}
	end := start + 1
	for end < len(b) && b[end] != '\r' {
		end++
	}
	n, err := strconv.Atoi(string(b[start+1 : end]))
	if err != nil || n%2 != 0 {
		return b
	}
	hdr := strconv.AppendInt([]byte{'%'}, int64(n/2), 10)
	rest := append([]byte(nil), b[end:]...)
	return append(append(b[:start], hdr...), rest...)
}

// QuoteArg shortens an argument for an error message and keeps it on one
// line.
func QuoteArg(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' {
			return '?'
		}
		return r
	}, string(b))
}

// AppendHello appends the reply to HELLO: the server as the proxy
// presents it, with the client's proxy id.
func AppendHello(b []byte, proto int, id int64, version string) []byte {
	b = AppendMap(b, 7, proto)
	b = redcon.AppendBulkString(b, "server")
	b = redcon.AppendBulkString(b, "redis")
	b = redcon.AppendBulkString(b, "version")
	b = redcon.AppendBulkString(b, version)
	b = redcon.AppendBulkString(b, "proto")
	b = redcon.AppendInt(b, int64(proto))
	b = redcon.AppendBulkString(b, "id")
	b = redcon.AppendInt(b, id)
	b = redcon.AppendBulkString(b, "mode")
	b = redcon.AppendBulkString(b, "standalone")
	b = redcon.AppendBulkString(b, "role")
	b = redcon.AppendBulkString(b, "master")
	b = redcon.AppendBulkString(b, "modules")
	return redcon.AppendArray(b, 0)
}

// AppendUnsubscribed appends what Redis answers UNSUBSCRIBE, PUNSUBSCRIBE
// or SUNSUBSCRIBE (name) of a client that is not subscribed: once per
// channel (once with a null channel when none is named), with no
// subscriptions left; a push under RESP3.
func AppendUnsubscribed(b []byte, proto int, name string, channels [][]byte) []byte {
	one := func(ch []byte) {
		if proto == 3 {
			b = append(b, ">3\r\n"...)
		} else {
			b = append(b, "*3\r\n"...)
		}
		b = redcon.AppendBulkString(b, name)
		if ch == nil {
			b = AppendNull(b, proto)
		} else {
			b = redcon.AppendBulk(b, ch)
		}
		b = redcon.AppendInt(b, 0)
	}
	if len(channels) == 0 {
		one(nil)
	}
	for _, ch := range channels {
		if ch == nil {
			ch = []byte{}
		}
		one(ch)
	}
	return b
}

// Elements splits an array reply (RESP2 or RESP3) into its elements, as
// [start, end) offsets in b; false when b is not one whole array.
func Elements(b []byte) ([][2]int, bool) {
	if len(b) < 4 || (b[0] != '*' && b[0] != '~' && b[0] != '>') {
		return nil, false
	}
	i := strings.IndexByte(string(b[:min(len(b), 24)]), '\n')
	if i < 0 {
		return nil, false
	}
	n, err := strconv.Atoi(string(b[1 : i-1]))
	if err != nil || n < 0 {
		return nil, false
	}
	var out [][2]int
	pos := i + 1
	for k := 0; k < n; k++ {
		var f upstream.Framer
		m, done, err := f.Scan(b[pos:])
		if err != nil || !done {
			return nil, false
		}
		out = append(out, [2]int{pos, pos + m})
		pos += m
	}
	return out, pos == len(b)
}

// InfoSections reads INFO's arguments: all (none given, or all, everything,
// default) or the sections asked for, lowercase.
func InfoSections(args [][]byte) (all bool, want map[string]bool) {
	want = map[string]bool{}
	all = len(args) == 0
	for _, a := range args {
		w := strings.ToLower(string(a))
		all = all || w == "all" || w == "everything" || w == "default"
		want[w] = true
	}
	return all, want
}

// AppendPing appends the reply to PING args (the whole command).
func AppendPing(b []byte, args [][]byte) []byte {
	switch len(args) {
	case 1:
		return append(b, "+PONG\r\n"...)
	case 2:
		return redcon.AppendBulk(b, args[1])
	}
	return AppendArity(b, "ping")
}

// AppendEcho appends the reply to ECHO args (the whole command).
func AppendEcho(b []byte, args [][]byte) []byte {
	if len(args) != 2 {
		return AppendArity(b, "echo")
	}
	return redcon.AppendBulk(b, args[1])
}
