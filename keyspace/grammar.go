package keyspace

import "bytes"

// DefaultKinds are the key kinds of SPEC §4.
var DefaultKinds = []string{"todos", "todo", "files", "cache", "events", "lock", "fence", "kv"}

// DefaultOwners says who writes each default kind with raw commands: the
// domain commands keep their state in every kind but kv ("domain": only
// they, and admins, write it; "agents": free-form).
func DefaultOwners() map[string]string {
	return map[string]string{
		"todos": "domain", "todo": "domain", "files": "domain", "cache": "domain",
		"events": "domain", "lock": "domain", "fence": "domain", "kv": "agents",
	}
}

// Problem is what is wrong with a key, channel or pattern.
type Problem uint8

const (
	// OK: inside the workspace and well formed.
	OK Problem = iota
	// Outside: not under <prefix>:{<workspace>}: (another workspace, or no
	// workspace at all).
	Outside
	// BadKind: inside the workspace but the kind is missing or unknown.
	BadKind
)

// Grammar is the key grammar <prefix>:{<workspace>}:<kind>[:<rest>].
type Grammar struct {
	Prefix string
	kinds  map[string]int // kind -> index in names
	names  []string
	list   string // kinds for messages, comma separated
}

// NewGrammar returns the grammar for prefix and kinds.
func NewGrammar(prefix string, kinds []string) *Grammar {
	g := &Grammar{Prefix: prefix, kinds: map[string]int{}}
	for i, k := range kinds {
		if _, dup := g.kinds[k]; dup {
			continue
		}
		g.kinds[k] = len(g.names)
		g.names = append(g.names, k)
		if i > 0 {
			g.list += ", "
		}
		g.list += k
	}
	return g
}

// Kinds lists the known kinds, comma separated.
func (g *Grammar) Kinds() string { return g.list }

// WorkspacePrefix is "<prefix>:{<ws>}:", which every key of ws starts with.
func (g *Grammar) WorkspacePrefix(ws string) string { return g.Prefix + ":{" + ws + "}:" }

// hasWSPrefix reports whether b starts with <prefix>:{ws}: without
// building the string.
func (g *Grammar) hasWSPrefix(b []byte, ws string) bool {
	p := g.Prefix
	n := len(p) + 2 + len(ws) + 2
	if len(b) < n {
		return false
	}
	return string(b[:len(p)]) == p && b[len(p)] == ':' && b[len(p)+1] == '{' &&
		string(b[len(p)+2:len(p)+2+len(ws)]) == ws && b[n-2] == '}' && b[n-1] == ':'
}

// Key checks that key belongs to workspace ws and has a known kind.
func (g *Grammar) Key(key []byte, ws string) Problem {
	p, _ := g.KeyKind(key, ws)
	return p
}

// KeyKind is Key that also returns the index of the key's kind (in the
// order the kinds were given; -1 unless the problem is OK), without
// allocating.
func (g *Grammar) KeyKind(key []byte, ws string) (Problem, int) {
	if !g.hasWSPrefix(key, ws) {
		return Outside, -1
	}
	rest := key[len(g.Prefix)+4+len(ws):]
	if i := bytes.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	k, ok := g.kinds[string(rest)]
	if !ok {
		return BadKind, -1
	}
	return OK, k
}

// Split returns the workspace of a key that follows the grammar (a slice
// of key), the index of its kind and the length of its workspace prefix
// "<prefix>:{ws}:"; kind is -1 for a key outside the grammar. It
// allocates nothing.
func (g *Grammar) Split(key []byte) (ws []byte, kind, prefixLen int) {
	p := g.Prefix
	if len(key) < len(p)+4 || string(key[:len(p)]) != p || key[len(p)] != ':' || key[len(p)+1] != '{' {
		return nil, -1, 0
	}
	rest := key[len(p)+2:]
	end := bytes.IndexByte(rest, '}')
	if end <= 0 || end+1 >= len(rest) || rest[end+1] != ':' {
		return nil, -1, 0
	}
	ws = rest[:end]
	kindPart := rest[end+2:]
	if i := bytes.IndexByte(kindPart, ':'); i >= 0 {
		kindPart = kindPart[:i]
	}
	k, ok := g.kinds[string(kindPart)]
	if !ok {
		return nil, -1, 0
	}
	return ws, k, len(p) + 2 + end + 2
}

// KindNames lists the kinds in index order.
func (g *Grammar) KindNames() []string { return g.names }

// KindIndex is the index of a kind, or -1.
func (g *Grammar) KindIndex(kind string) int {
	if k, ok := g.kinds[kind]; ok {
		return k
	}
	return -1
}

// KindOf returns the kind of a well-formed key of ws, or "".
func (g *Grammar) KindOf(key []byte, ws string) string {
	if !g.hasWSPrefix(key, ws) {
		return ""
	}
	rest := key[len(g.Prefix)+4+len(ws):]
	if i := bytes.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	return string(rest)
}

// Channel checks a pub/sub channel: <prefix>:{ws}:events or below it.
func (g *Grammar) Channel(ch []byte, ws string) Problem {
	if !g.hasWSPrefix(ch, ws) {
		return Outside
	}
	rest := ch[len(g.Prefix)+4+len(ws):]
	if string(rest) == "events" || bytes.HasPrefix(rest, []byte("events:")) {
		return OK
	}
	return BadKind
}

// IsEventsChannel reports whether ch is exactly the workspace's event
// channel <prefix>:{ws}:events (the domain's feed).
func (g *Grammar) IsEventsChannel(ch []byte, ws string) bool {
	return g.hasWSPrefix(ch, ws) && string(ch[len(g.Prefix)+4+len(ws):]) == "events"
}

// LocksChannel is the channel the lock scripts announce ws's lock changes
// on, which the proxies' fencing registries follow.
func (g *Grammar) LocksChannel(ws string) string { return g.WorkspacePrefix(ws) + "events:locks" }

// IsLocksChannel reports whether ch is exactly ws's lock channel.
func (g *Grammar) IsLocksChannel(ch []byte, ws string) bool {
	return g.hasWSPrefix(ch, ws) && string(ch[len(g.Prefix)+4+len(ws):]) == "events:locks"
}

// SortPatternKind is the kind a SORT BY/GET pattern of ws builds keys of,
// or -1 when the kind is not spelt out literally before the first '*'
// (the element value replaces it, so "<ws>:*" could build keys of any kind).
func (g *Grammar) SortPatternKind(p []byte, ws string) int {
	if !g.hasWSPrefix(p, ws) {
		return -1
	}
	rest := p[len(g.Prefix)+4+len(ws):]
	star := bytes.IndexByte(rest, '*')
	colon := bytes.IndexByte(rest, ':')
	kind := rest
	switch {
	case colon >= 0 && (star < 0 || colon < star):
		kind = rest[:colon]
	case star >= 0:
		return -1
	default:
		if i := bytes.Index(rest, []byte("->")); i >= 0 {
			kind = rest[:i]
		}
	}
	k, ok := g.kinds[string(kind)]
	if !ok {
		return -1
	}
	return k
}

// Pattern checks that a glob pattern can only match names inside ws: its
// literal start must be the workspace prefix (no wildcard or escape before
// the prefix ends).
func (g *Grammar) Pattern(p []byte, ws string) Problem {
	if g.hasWSPrefix(p, ws) {
		return OK
	}
	return Outside
}

// ParseKey splits a key into workspace and kind; ok is false when the key
// does not follow the grammar (used by lint).
func (g *Grammar) ParseKey(key string) (ws, kind string, ok bool) {
	p := g.Prefix + ":{"
	if len(key) < len(p) || key[:len(p)] != p {
		return "", "", false
	}
	rest := key[len(p):]
	end := -1
	for i := 0; i < len(rest); i++ {
		if rest[i] == '}' {
			end = i
			break
		}
	}
	if end <= 0 || end+1 >= len(rest) || rest[end+1] != ':' {
		return "", "", false
	}
	ws = rest[:end]
	if !ValidWorkspace(ws) {
		return "", "", false
	}
	kind = rest[end+2:]
	for i := 0; i < len(kind); i++ {
		if kind[i] == ':' {
			kind = kind[:i]
			break
		}
	}
	_, known := g.kinds[kind]
	return ws, kind, known
}

// ValidWorkspace reports whether ws matches [A-Za-z0-9_.-]{1,64}.
func ValidWorkspace(ws string) bool {
	if len(ws) == 0 || len(ws) > 64 {
		return false
	}
	for i := 0; i < len(ws); i++ {
		c := ws[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
