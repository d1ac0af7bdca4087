package proxy

import (
	"errors"
	"sort"
	"strconv"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/upstream"
)

// wsInfo answers WS.INFO: keys per kind, bytes (MEMORY USAGE), files,
// todos and locks held in the connection's workspace. It walks the
// workspace with SCAN on a connection of its own, a page at a time, so it
// never runs a long script and never stalls other clients.
func (s *session) wsInfo() {
	var ws string
	if !s.takeDedicated(&ws) {
		s.out = appendError(s.out, ErrTryAgainDedicated)
		return
	}
	defer s.giveDedicated(ws)
	conn, err := s.srv.pool.Dedicated(2)
	if err != nil {
		s.out = appendError(s.out, ErrTryAgainDown)
		return
	}
	clean := false
	defer func() { s.srv.pool.Release(conn, 2, clean) }()
	g := s.srv.policy.Load().Grammar
	prefix := g.WorkspacePrefix(s.ident.Workspace)
	kinds := map[string]int64{}
	var total, bytes int64
	call := upstream.NewCall()
	var req []byte
	cursor := "0"
	for {
		req = upstream.AppendCommand(req[:0], "SCAN", cursor, "MATCH", prefix+"*", "COUNT", "1000")
		call.Out, call.N = call.Out[:0], 1
		if err := s.ctlCall(conn, call, req); err != nil {
			s.out = appendError(s.out, callError(err))
			return
		}
		next, keys, err := parseScan(call.Out)
		if err != nil {
			s.out = appendError(s.out, "ERR WS.INFO: "+err.Error())
			return
		}
		if len(keys) > 0 {
			req = req[:0]
			for _, k := range keys {
				total++
				kinds[g.KindOf([]byte(k), s.ident.Workspace)]++
				req = upstream.AppendCommand(req, "MEMORY", "USAGE", k)
			}
			call.Out, call.N = call.Out[:0], len(keys)
			if err := s.ctlCall(conn, call, req); err != nil {
				s.out = appendError(s.out, callError(err))
				return
			}
			bytes += sumInts(call.Out)
		}
		if next == "0" {
			break
		}
		cursor = next
	}
	clean = true
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	start := len(s.out)
	s.out = redcon.AppendArray(s.out, 2*(5+len(names)))
	s.out = redcon.AppendBulkString(s.out, "workspace")
	s.out = redcon.AppendBulkString(s.out, s.ident.Workspace)
	s.out = redcon.AppendBulkString(s.out, "keys")
	s.out = redcon.AppendInt(s.out, total)
	s.out = redcon.AppendBulkString(s.out, "bytes")
	s.out = redcon.AppendInt(s.out, bytes)
	s.out = redcon.AppendBulkString(s.out, "locks_held")
	s.out = redcon.AppendInt(s.out, kinds["lock"])
	s.out = redcon.AppendBulkString(s.out, "todos")
	s.out = redcon.AppendInt(s.out, kinds["todo"])
	for _, k := range names {
		name := k
		if name == "" {
			name = "(other)"
		}
		s.out = redcon.AppendBulkString(s.out, "keys:"+name)
		s.out = redcon.AppendInt(s.out, kinds[k])
	}
	s.asMap(start)
}

// ctlCall runs a control-plane request on conn and waits for it.
func (s *session) ctlCall(conn *upstream.Conn, call *upstream.Call, req []byte) error {
	call.MaxOut = s.srv.opts.MaxOutputBytes
	if err := conn.Send(call, req); err != nil {
		return err
	}
	call.Wait()
	if call.Err == nil && len(call.Out) > 0 && call.Out[0] == '-' {
		return errors.New(string(call.Out[1 : len(call.Out)-2]))
	}
	return call.Err
}

// parseScan reads a RESP2 SCAN reply: [cursor, [key, ...]].
func parseScan(b []byte) (string, []string, error) {
	bad := errors.New("unexpected SCAN reply")
	line := func() ([]byte, bool) {
		for i := 0; i+1 < len(b); i++ {
			if b[i] == '\r' && b[i+1] == '\n' {
				l := b[:i]
				b = b[i+2:]
				return l, true
			}
		}
		return nil, false
	}
	bulk := func() (string, bool) {
		l, ok := line()
		if !ok || len(l) < 2 || l[0] != '$' {
			return "", false
		}
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil || n < 0 || len(b) < n+2 {
			return "", false
		}
		v := string(b[:n])
		b = b[n+2:]
		return v, true
	}
	if l, ok := line(); !ok || string(l) != "*2" {
		return "", nil, bad
	}
	cursor, ok := bulk()
	if !ok {
		return "", nil, bad
	}
	l, ok := line()
	if !ok || len(l) < 2 || l[0] != '*' {
		return "", nil, bad
	}
	n, err := strconv.Atoi(string(l[1:]))
	if err != nil || n < 0 {
		return "", nil, bad
	}
	keys := make([]string, 0, n)
	for i := 0; i < n; i++ {
		k, ok := bulk()
		if !ok {
			return "", nil, bad
		}
		keys = append(keys, k)
	}
	return cursor, keys, nil
}

// sumInts adds the integer replies (":n") in a run of raw replies; nil
// replies (a key gone meanwhile) count zero.
func sumInts(b []byte) int64 {
	var total int64
	for len(b) > 0 {
		i := 0
		for i+1 < len(b) && !(b[i] == '\r' && b[i+1] == '\n') {
			i++
		}
		if b[0] == ':' {
			n, _ := strconv.ParseInt(string(b[1:i]), 10, 64)
			total += n
		}
		if i+2 > len(b) {
			break
		}
		b = b[i+2:]
	}
	return total
}
