package wire

import (
	"bytes"
	"strconv"

	"github.com/agentproxy/agentproxy/keyspace"

	"github.com/tidwall/redcon"
)

// Conn describes a client connection as the proxy knows it, for CLIENT
// INFO and CLIENT LIST.
type Conn struct {
	ID             int64
	Addr, LAddr    string
	Name, User     string
	AgeSeconds     int64
	DB, Proto, Rbs int
	Subscribed     bool // tunnelled: subscriptions or MONITOR
	InMulti        bool
}

// AppendClientLine appends c as a line of CLIENT LIST / CLIENT INFO, in
// Redis's format; cmd is the command being answered.
func AppendClientLine(b []byte, c Conn, cmd string) []byte {
	flags, multi := "N", -1
	switch {
	case c.Subscribed:
		flags = "P"
	case c.InMulti:
		flags, multi = "x", 0
	}
	b = append(b, "id="...)
	b = strconv.AppendInt(b, c.ID, 10)
	b = append(b, " addr="+c.Addr+" laddr="+c.LAddr+" fd=-1 name="+c.Name+" age="...)
	b = strconv.AppendInt(b, c.AgeSeconds, 10)
	b = append(b, " idle=0 flags="+flags+" db="...)
	b = strconv.AppendInt(b, int64(c.DB), 10)
	b = append(b, " sub=0 psub=0 ssub=0 multi="...)
	b = strconv.AppendInt(b, int64(multi), 10)
	b = append(b, " qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs="...)
	b = strconv.AppendInt(b, int64(c.Rbs), 10)
	b = append(b, " rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd="+cmd+" user="+c.User+" redir=-1 resp="...)
	b = strconv.AppendInt(b, int64(c.Proto), 10)
	return append(b, '\n')
}

// ClientListSelects applies the filters of CLIENT LIST (TYPE, ID) to the
// one connection c. It returns whether c is listed, or the error reply of
// a malformed filter.
func ClientListSelects(c Conn, args [][]byte) (bool, string) {
	show := true
	for i := 0; i < len(args); i++ {
		switch {
		case eq(args[i], "type") && i+1 < len(args):
			t := args[i+1]
			switch {
			case eq(t, "normal"):
				show = show && !c.Subscribed
			case eq(t, "pubsub"):
				show = show && c.Subscribed
			case eq(t, "master"), eq(t, "replica"), eq(t, "slave"):
				show = false
			default:
				return false, "ERR Unknown client type '" + QuoteArg(t) + "'"
			}
			i++
		case eq(args[i], "id") && i+1 < len(args):
			mine := false
			for _, a := range args[i+1:] {
				n, err := strconv.ParseInt(string(a), 10, 64)
				if err != nil || n <= 0 {
					return false, "ERR Invalid client ID"
				}
				mine = mine || n == c.ID
			}
			show = show && mine
			i = len(args)
		default:
			return false, ErrSyntax
		}
	}
	return show, ""
}

func eq(b []byte, lower string) bool { return string(bytes.ToLower(b)) == lower }

// AppendText appends a text reply: a verbatim string under RESP3 (as
// Redis answers INFO and CLIENT LIST), a bulk string under RESP2.
func AppendText(b, text []byte, proto int) []byte {
	if proto != 3 {
		return redcon.AppendBulk(b, text)
	}
	b = append(b, '=')
	b = strconv.AppendInt(b, int64(len(text)+4), 10)
	b = append(b, "\r\ntxt:"...)
	b = append(b, text...)
	return append(b, '\r', '\n')
}

// TextBody is the text of a bulk or verbatim string reply, or false.
func TextBody(r []byte) ([]byte, bool) {
	if len(r) < 4 || (r[0] != '$' && r[0] != '=') {
		return nil, false
	}
	i := bytes.IndexByte(r, '\n')
	if i < 0 || len(r) < i+3 {
		return nil, false
	}
	body := r[i+1 : len(r)-2]
	if r[0] == '=' && len(body) >= 4 {
		body = body[4:] // "txt:"
	}
	return body, true
}

// AppendInfoSection appends an INFO section of name and fields (pairs),
// followed by the blank line that separates sections.
func AppendInfoSection(b []byte, name string, fields ...string) []byte {
	b = append(b, "# "+name+"\r\n"...)
	for i := 0; i+1 < len(fields); i += 2 {
		b = append(b, fields[i]+":"+fields[i+1]+"\r\n"...)
	}
	return append(b, "\r\n"...)
}

// TrackingInfoOff appends what CLIENT TRACKINGINFO answers for a
// connection without tracking.
func TrackingInfoOff(b []byte, proto int) []byte {
	b = AppendMap(b, 3, proto)
	b = redcon.AppendBulkString(b, "flags")
	if proto == 3 {
		b = append(b, "~1\r\n"...)
	} else {
		b = redcon.AppendArray(b, 1)
	}
	b = redcon.AppendBulkString(b, "off")
	b = redcon.AppendBulkString(b, "redirect")
	b = redcon.AppendInt(b, -1)
	b = redcon.AppendBulkString(b, "prefixes")
	return redcon.AppendArray(b, 0)
}

// Hello is a parsed HELLO [protover [AUTH user pass] [SETNAME name]].
type Hello struct {
	Proto      int // 0: not given
	User, Pass []byte
	Auth       bool
	Name       string
	SetName    bool
}

// ParseHello parses HELLO's arguments (after the name) the way Redis does:
// every option before any of them takes effect; err is the error to answer.
func ParseHello(args [][]byte) (h Hello, err string) {
	if len(args) > 0 {
		v, ok := ParseInt(args[0])
		switch {
		case !ok:
			return h, "ERR Protocol version is not an integer or out of range"
		case v != 2 && v != 3:
			return h, ErrNoProto
		}
		h.Proto = v
	}
	for i := 1; i < len(args); i++ {
		switch {
		case keyspace.EqFold(args[i], "auth") && i+2 < len(args):
			h.Auth, h.User, h.Pass = true, args[i+1], args[i+2]
			i += 2
		case keyspace.EqFold(args[i], "setname") && i+1 < len(args):
			if !ValidName(args[i+1]) {
				return h, ErrClientName
			}
			h.Name, h.SetName = string(args[i+1]), true
			i++
		default:
			return h, ErrHelloSyntax + string(args[i]) + "'"
		}
	}
	return h, ""
}

// ValidName reports whether a client name is one Redis accepts (CLIENT
// SETNAME, HELLO SETNAME): printable ASCII without spaces.
func ValidName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}
