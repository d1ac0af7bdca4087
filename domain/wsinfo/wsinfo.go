package wsinfo

import (
	"errors"
	"sort"
	"strconv"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/upstream"
)

// req is a domain request as this family's handlers see it.
type req struct{ *domain.Req }

func init() {
	domain.Register("ws.info", "", func(r *domain.Req, a [][]byte) { req{r}.wsInfo() })
}

// wsInfo answers WS.INFO: keys per kind, bytes (MEMORY USAGE), files,
// todos and locks held in the connection's workspace. It walks the
// workspace with SCAN on a connection of its own, a page at a time, so it
// never runs a long script and never stalls other clients.
func (s req) wsInfo() {
	ws, ok := s.Up.TakeDedicated()
	if !ok {
		s.Out = wire.AppendError(s.Out, wire.ErrTryAgainDedicated)
		return
	}
	defer s.Up.GiveDedicated(ws)
	conn, err := s.Env.Node(s.Workspace).Dedicated(2, true)
	if err != nil {
		s.Out = wire.AppendError(s.Out, wire.TryAgainDown(s.Env.Node(s.Workspace)))
		return
	}
	clean := false
	defer func() { conn.Pool().Release(conn, 2, clean) }()
	g := s.Grammar
	prefix := g.WorkspacePrefix(s.Workspace)
	kinds := map[string]int64{}
	var total, bytes int64
	call := upstream.NewCall()
	var req []byte
	cursor := "0"
	for {
		req = upstream.AppendCommand(req[:0], "SCAN", cursor, "MATCH", prefix+"*", "COUNT", "1000")
		call.Out, call.N = call.Out[:0], 1
		if err := s.ctlCall(conn, call, req); err != nil {
			s.Out = wire.AppendError(s.Out, wire.CallError(err))
			return
		}
		next, keys, err := parseScan(call.Out)
		if err != nil {
			s.Out = wire.AppendError(s.Out, "ERR WS.INFO: "+err.Error())
			return
		}
		if len(keys) > 0 {
			req = req[:0]
			for _, k := range keys {
				total++
				kinds[g.KindOf([]byte(k), s.Workspace)]++
				req = upstream.AppendCommand(req, "MEMORY", "USAGE", k)
			}
			call.Out, call.N = call.Out[:0], len(keys)
			if err := s.ctlCall(conn, call, req); err != nil {
				s.Out = wire.AppendError(s.Out, wire.CallError(err))
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
	start := len(s.Out)
	s.Out = redcon.AppendArray(s.Out, 2*(5+len(names)))
	s.Out = redcon.AppendBulkString(s.Out, "workspace")
	s.Out = redcon.AppendBulkString(s.Out, s.Workspace)
	s.Out = redcon.AppendBulkString(s.Out, "keys")
	s.Out = redcon.AppendInt(s.Out, total)
	s.Out = redcon.AppendBulkString(s.Out, "bytes")
	s.Out = redcon.AppendInt(s.Out, bytes)
	s.Out = redcon.AppendBulkString(s.Out, "locks_held")
	s.Out = redcon.AppendInt(s.Out, kinds["lock"])
	s.Out = redcon.AppendBulkString(s.Out, "todos")
	s.Out = redcon.AppendInt(s.Out, kinds["todo"])
	for _, k := range names {
		name := k
		if name == "" {
			name = "(other)"
		}
		s.Out = redcon.AppendBulkString(s.Out, "keys:"+name)
		s.Out = redcon.AppendInt(s.Out, kinds[k])
	}
	s.AsMap(start)
}

// ctlCall runs a control-plane request on conn and waits for it.
func (s req) ctlCall(conn *upstream.Conn, call *upstream.Call, req []byte) error {
	call.MaxOut = s.Env.MaxOutput
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
