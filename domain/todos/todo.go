package todos

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lua"
)

// The todo list (SPEC §5): TODO.REPLACE, LIST, ADD, UPDATE, CLAIM and
// REMOVE. Arguments are checked here; the scripts todo_write and todo_list
// check the lock on resource "todos", IFVERSION and the list's state, and
// write atomically. A script may only touch the keys it is given, and which
// item keys a command touches depends on the list (REPLACE rewrites it,
// ADD mints the next id), so a command first reads the list's ids and then
// runs with those keys declared; the script answers TODORETRY when the list
// changed in between, and the command runs again.

const (
	todoResource  = "todos"
	todoMaxItems  = 1000
	todoMaxRetry  = 50
	todoStatusErr = "ERR status must be one of pending, in_progress, completed, cancelled"
	todoRetry     = "-TODORETRY "
	todoJSONErr   = "ERR TODO.REPLACE takes a JSON array of {content, status} objects: "
)

var todoStatuses = map[string]bool{"pending": true, "in_progress": true, "completed": true, "cancelled": true}

// req is a domain request as this family's handlers see it.
type req struct{ *domain.Req }

func init() {
	domain.Register("todo.list", "todos", func(r *domain.Req, a [][]byte) { req{r}.todoList() })
	domain.Register("todo.replace", "todos", func(r *domain.Req, a [][]byte) { req{r}.todoReplace(a) })
	domain.Register("todo.add", "todos", func(r *domain.Req, a [][]byte) { req{r}.todoAdd(a) })
	for _, op := range []string{"update", "claim", "remove"} {
		op := op
		domain.Register("todo."+op, "todos", func(r *domain.Req, a [][]byte) { req{r}.todoItem(op, a) })
	}
}

// todoKeys are the keys every todo script gets, then the given items'.
func (s req) todoKeys(ids ...string) []string {
	keys := []string{s.Key("todos", ""), s.Key("todos", "order"), s.Key("lock", todoResource),
		s.Key("fence", todoResource), s.Key("events", "log")}
	for _, id := range ids {
		keys = append(keys, s.Key("todo", id))
	}
	return keys
}

// todoArgv is the head of todo_write's ARGV.
func (s req) todoArgv(op, ifv, token, next string) []string {
	if token == "" {
		token = s.HeldToken(todoResource)
	}
	return []string{op, s.Workspace, s.Actor, s.Channel(), s.EventsMaxLen(), ifv, token, next}
}

// todoOpt parses IFVERSION v and FENCE t; false (with the error sent) on a
// bad value.
func (s req) todoOpt(name, val []byte, ifv, token *string) (handled, ok bool) {
	switch {
	case keyspace.EqFold(name, "ifversion"):
		n, err := strconv.ParseInt(string(val), 10, 64)
		if err != nil || n < 0 {
			s.Out = wire.AppendError(s.Out, "ERR IFVERSION must be a whole number (0: create only), got '"+wire.QuoteArg(val)+"'")
			return true, false
		}
		*ifv = strconv.FormatInt(n, 10)
		return true, true
	case keyspace.EqFold(name, "fence"):
		n, ok := s.PosInt(val, "FENCE token", 1<<62)
		*token = strconv.FormatInt(n, 10)
		return true, ok
	}
	return false, true
}

// todoState reads the list's next id and ids in order; false when the
// read failed (its error is in out).
func (s req) todoState() (next string, ids []string, ok bool) {
	start := len(s.Out)
	s.Script(lua.Get("todo_list"), s.todoKeys()[:2], []string{"ids"})
	v, _, err := domain.ParseReply(s.Out[start:])
	if err != nil || v.Typ != '*' || len(v.Kids) < 2 {
		if len(s.Out) == start || s.Out[start] != '-' {
			s.Out = append(s.Out[:start], "-ERR unexpected reply reading the todo list\r\n"...)
		}
		return "", nil, false
	}
	s.Out = s.Out[:start]
	for _, k := range v.Kids[2:] {
		ids = append(ids, k.Str)
	}
	return v.Kids[0].Str, ids, true
}

// todoRun reads the list's state, then runs the script call builds from
// it, again while the list changed in between; records in the reply become
// maps for RESP3 clients.
func (s req) todoRun(sc *lua.Script, call func(next string, ids []string) (keys, argv []string)) {
	for range todoMaxRetry {
		next, ids, ok := s.todoState()
		if !ok {
			return
		}
		keys, argv := call(next, ids)
		start := len(s.Out)
		s.Script(sc, keys, argv)
		if bytes.HasPrefix(s.Out[start:], []byte(todoRetry)) {
			s.Out = s.Out[:start]
			continue
		}
		if s.Proto == 3 && len(s.Out) > start && s.Out[start] == '*' {
			if v, n, err := domain.ParseReply(s.Out[start:]); err == nil && start+n == len(s.Out) {
				s.Out = appendRESP3(s.Out[:start], v)
			}
		}
		return
	}
	s.Out = wire.AppendError(s.Out, "TRYAGAIN the todo list kept changing while this command ran; retry")
}

func (s req) todoList() {
	s.todoRun(lua.Get("todo_list"), func(_ string, ids []string) ([]string, []string) {
		return append(s.todoKeys()[:2], s.todoItemKeys(ids)...), append([]string{"list"}, ids...)
	})
}

func (s req) todoItemKeys(ids []string) []string {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.Key("todo", id)
	}
	return keys
}

// todoAdd: TODO.ADD <content> [STATUS s] [POSITION n] [OWNER o] [PRIORITY p]
// [IFVERSION v] [FENCE t].
func (s req) todoAdd(args [][]byte) {
	const usage = ": TODO.ADD <content> [STATUS s] [POSITION n] [OWNER o] [PRIORITY p] [IFVERSION v] [FENCE t]"
	if len(args[0]) == 0 {
		s.Out = wire.AppendError(s.Out, "ERR todo content must not be empty")
		return
	}
	status, pos, owner, prio, ifv, token := "pending", "", "", "", "", ""
	for i := 1; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.Out = wire.AppendError(s.Out, "ERR syntax error"+usage)
			return
		}
		v := args[i+1]
		if handled, ok := s.todoOpt(args[i], v, &ifv, &token); !ok {
			return
		} else if handled {
			continue
		}
		switch {
		case keyspace.EqFold(args[i], "status"):
			if !todoStatuses[string(v)] {
				s.Out = wire.AppendError(s.Out, todoStatusErr+", got '"+wire.QuoteArg(v)+"'")
				return
			}
			status = string(v)
		case keyspace.EqFold(args[i], "position"):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				s.Out = wire.AppendError(s.Out, "ERR POSITION must be a whole number from 0 (the top), got '"+wire.QuoteArg(v)+"'")
				return
			}
			pos = strconv.FormatInt(n, 10)
		case keyspace.EqFold(args[i], "owner"):
			owner = string(v)
		case keyspace.EqFold(args[i], "priority"):
			prio = string(v)
		default:
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(args[i])+"'"+usage)
			return
		}
	}
	s.todoRun(lua.Get("todo_write"), func(next string, _ []string) ([]string, []string) {
		return s.todoKeys(next), append(s.todoArgv("add", ifv, token, next), string(args[0]), status, owner, prio, pos)
	})
}

// todoItem: TODO.UPDATE <id> [IFVERSION v] [FENCE t] field value ...,
// TODO.CLAIM <id> <owner> [IFVERSION v] [FENCE t], TODO.REMOVE <id>
// [IFVERSION v] [FENCE t].
func (s req) todoItem(op string, args [][]byte) {
	usage := map[string]string{
		"update": ": TODO.UPDATE <id> [IFVERSION v] [FENCE t] field value ... (fields: content, status, owner, priority)",
		"claim":  ": TODO.CLAIM <id> <owner> [IFVERSION v] [FENCE t]",
		"remove": ": TODO.REMOVE <id> [IFVERSION v] [FENCE t]",
	}[op]
	id := string(args[0])
	if !validTodoID(id) {
		s.Out = wire.AppendError(s.Out, "ERR no such todo '"+wire.QuoteArg(args[0])+"'; TODO.LIST shows the ids")
		return
	}
	rest := args[1:]
	var extra []string
	if op == "claim" {
		if len(args[1]) == 0 {
			s.Out = wire.AppendError(s.Out, "ERR the owner must not be empty"+usage)
			return
		}
		extra = []string{string(args[1])}
		rest = args[2:]
	}
	ifv, token := "", ""
	for i := 0; i < len(rest); i += 2 {
		if i+1 >= len(rest) {
			s.Out = wire.AppendError(s.Out, "ERR syntax error"+usage)
			return
		}
		v := rest[i+1]
		if handled, ok := s.todoOpt(rest[i], v, &ifv, &token); !ok {
			return
		} else if handled {
			continue
		}
		f := strings.ToLower(string(rest[i]))
		if op != "update" || (f != "content" && f != "status" && f != "owner" && f != "priority") {
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(rest[i])+"'"+usage)
			return
		}
		if f == "status" && !todoStatuses[string(v)] {
			s.Out = wire.AppendError(s.Out, todoStatusErr+", got '"+wire.QuoteArg(v)+"'")
			return
		}
		if f == "content" && len(v) == 0 {
			s.Out = wire.AppendError(s.Out, "ERR todo content must not be empty")
			return
		}
		extra = append(extra, f, string(v))
	}
	if op == "update" && len(extra) == 0 {
		s.Out = wire.AppendError(s.Out, "ERR TODO.UPDATE needs at least one field to set"+usage)
		return
	}
	start := len(s.Out)
	s.Script(lua.Get("todo_write"), s.todoKeys(id), append(append(s.todoArgv(op, ifv, token, ""), id), extra...))
	s.AsMap(start)
}

// validTodoID: ids are minted by the scripts as decimal numbers.
func validTodoID(id string) bool {
	if len(id) == 0 || len(id) > 18 || id[0] == '0' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}

// todoWant is one element of TODO.REPLACE's array.
type todoWant struct {
	id, content, status, owner, priority string // owner, priority: "" absent, "=" + value
}

// todoReplace: TODO.REPLACE <json-array> [IFVERSION v] [FENCE t].
func (s req) todoReplace(args [][]byte) {
	want, err := parseTodos(args[0])
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, todoStatusErr) {
			msg = todoJSONErr + msg
		}
		s.Out = wire.AppendError(s.Out, msg)
		return
	}
	ifv, token := "", ""
	for i := 1; i < len(args); i += 2 {
		if i+1 >= len(args) {
			s.Out = wire.AppendError(s.Out, "ERR syntax error: TODO.REPLACE <json-array> [IFVERSION v] [FENCE t]")
			return
		}
		if handled, ok := s.todoOpt(args[i], args[i+1], &ifv, &token); !ok {
			return
		} else if !handled {
			s.Out = wire.AppendError(s.Out, "ERR syntax error near '"+wire.QuoteArg(args[i])+"': TODO.REPLACE <json-array> [IFVERSION v] [FENCE t]")
			return
		}
	}
	s.todoRun(lua.Get("todo_write"), func(next string, ids []string) ([]string, []string) {
		n, _ := strconv.ParseInt(next, 10, 64)
		keys := s.todoKeys(ids...)
		for j := range want {
			keys = append(keys, s.Key("todo", strconv.FormatInt(n+int64(j), 10)))
		}
		argv := append(s.todoArgv("replace", ifv, token, next), strconv.Itoa(len(ids)))
		argv = append(argv, ids...)
		argv = append(argv, strconv.Itoa(len(want)))
		for _, w := range want {
			argv = append(argv, w.id, w.content, w.status, w.owner, w.priority)
		}
		return keys, argv
	})
}

// parseTodos checks TODO.REPLACE's JSON completely before anything is
// written; its errors say what is wrong and where.
func parseTodos(b []byte) ([]todoWant, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, errors.New("got null, not an array")
	}
	if len(raw) > todoMaxItems {
		return nil, errors.New("at most " + strconv.Itoa(todoMaxItems) + " items, got " + strconv.Itoa(len(raw)))
	}
	out := make([]todoWant, 0, len(raw))
	seen := map[string]int{}
	for i, r := range raw {
		at := "element " + strconv.Itoa(i)
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(r, &obj); err != nil || obj == nil {
			return nil, errors.New(at + " is not an object")
		}
		var w todoWant
		var err error
		if w.content, err = jsonText(obj, "content", false); err != nil {
			return nil, errors.New(at + ": " + err.Error())
		}
		if w.content == "" {
			return nil, errors.New(at + " has no content")
		}
		if w.status, err = jsonText(obj, "status", false); err != nil {
			return nil, errors.New(at + ": " + err.Error())
		}
		if w.status == "" {
			return nil, errors.New(at + " has no status")
		}
		if !todoStatuses[w.status] {
			return nil, errors.New(todoStatusErr + ", got '" + wire.QuoteArg([]byte(w.status)) + "' in " + at)
		}
		if w.id, err = jsonText(obj, "id", true); err != nil {
			return nil, errors.New(at + ": " + err.Error())
		}
		if w.id != "" {
			if j, dup := seen[w.id]; dup {
				return nil, errors.New(at + " repeats id " + w.id + " of element " + strconv.Itoa(j))
			}
			seen[w.id] = i
		}
		for _, f := range []struct {
			name string
			dst  *string
		}{{"owner", &w.owner}, {"priority", &w.priority}} {
			if _, ok := obj[f.name]; !ok || string(obj[f.name]) == "null" {
				continue
			}
			v, err := jsonText(obj, f.name, true)
			if err != nil {
				return nil, errors.New(at + ": " + err.Error())
			}
			*f.dst = "=" + v
		}
		out = append(out, w)
	}
	return out, nil
}

// jsonText reads a string field (or, with numbers, a number as text); an
// absent or null field is "".
func jsonText(obj map[string]json.RawMessage, name string, numbers bool) (string, error) {
	r, ok := obj[name]
	if !ok || string(r) == "null" {
		return "", nil
	}
	var str string
	if err := json.Unmarshal(r, &str); err == nil {
		return str, nil
	}
	if numbers {
		var n json.Number
		if err := json.Unmarshal(r, &n); err == nil {
			return n.String(), nil
		}
		return "", errors.New(name + " must be a string or a number")
	}
	return "", errors.New(name + " must be a string")
}

// appendRESP3 writes a todo reply for a RESP3 client: an array of
// field/value pairs (its first element the bulk "id" or "version") is a
// map, recursively; other arrays stay arrays.
func appendRESP3(b []byte, v domain.Reply) []byte {
	if v.Typ != '*' {
		return append(b, v.Raw...)
	}
	isMap := len(v.Kids)%2 == 0 && len(v.Kids) > 0 && v.Kids[0].Typ == '$' &&
		(v.Kids[0].Str == "id" || v.Kids[0].Str == "version")
	if isMap {
		b = strconv.AppendInt(append(b, '%'), int64(len(v.Kids)/2), 10)
	} else {
		b = strconv.AppendInt(append(b, '*'), int64(len(v.Kids)), 10)
	}
	b = append(b, '\r', '\n')
	for _, k := range v.Kids {
		b = appendRESP3(b, k)
	}
	return b
}
