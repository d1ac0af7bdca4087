package keyspace

import "errors"

// ErrKeys means the arguments do not let the keys be found (a numkeys that
// is not a number or points past the end). Redis rejects such commands
// too; the proxy refuses them before they are sent.
var ErrKeys = errors.New("cannot find the keys of this command")

// Access lists what one command touches, as indexes into its arguments.
// It is reused across commands so extraction does not allocate.
type Access struct {
	Keys     []int // key names
	Channels []int // pub/sub channels (exact names)
	Patterns []int // glob patterns over keys or channels that must stay inside a workspace
	Writes   bool  // some key is written
}

// Reset empties a for reuse.
func (a *Access) Reset() {
	a.Keys, a.Channels, a.Patterns, a.Writes = a.Keys[:0], a.Channels[:0], a.Patterns[:0], false
}

// ArityOK reports whether len(args) fits the command's arity (negative:
// at least -arity).
func (c *Command) ArityOK(n int) bool {
	if c.Arity >= 0 {
		return n == c.Arity
	}
	return n >= -c.Arity
}

// Extract fills a with the keys, channels and patterns of args, which
// invoke c (as returned by Resolve). It follows Redis 7's key specs and
// handles the commands whose specs are incomplete (SORT, MIGRATE) and the
// pub/sub commands, whose channels are not keys.
func Extract(c *Command, args [][]byte, a *Access) error {
	a.Reset()
	switch c.Name {
	case "sort", "sort_ro":
		return extractSort(args, a)
	case "migrate":
		return extractMigrate(args, a)
	case "subscribe", "unsubscribe", "ssubscribe", "sunsubscribe":
		for i := 1; i < len(args); i++ {
			a.Channels = append(a.Channels, i)
		}
		return nil
	case "psubscribe", "punsubscribe":
		for i := 1; i < len(args); i++ {
			a.Patterns = append(a.Patterns, i)
		}
		return nil
	case "publish", "spublish":
		if len(args) > 1 {
			a.Channels = append(a.Channels, 1)
		}
		return nil
	case "pubsub|channels", "pubsub|shardchannels":
		if len(args) > 2 {
			a.Patterns = append(a.Patterns, 2)
		}
		return nil
	case "pubsub|numsub", "pubsub|shardnumsub":
		for i := 2; i < len(args); i++ {
			a.Channels = append(a.Channels, i)
		}
		return nil
	case "keys":
		if len(args) > 1 {
			a.Patterns = append(a.Patterns, 1)
		}
		return nil
	case "client|tracking":
		// BCAST reports every modified key under its PREFIXes: they are
		// patterns over keys (without one, policy refuses BCAST).
		for i := 3; i+1 < len(args); i++ {
			if EqFold(args[i], "prefix") {
				a.Patterns = append(a.Patterns, i+1)
				i++
			}
		}
		return nil
	}
	argc := len(args)
	for k := range c.Keys {
		ks := &c.Keys[k]
		if ks.Flags&KNotKey != 0 {
			continue
		}
		first := 0
		switch ks.Begin {
		case BeginIndex:
			first = ks.Index
		case BeginKeyword:
			first = findKeyword(args, ks.Keyword, ks.StartFrom)
			if first < 0 {
				continue // optional keyword absent: no keys from this spec
			}
		default:
			continue
		}
		last, step := 0, 1
		switch ks.Find {
		case FindRange:
			step = ks.KeyStep
			switch {
			case ks.LastKey >= 0:
				last = first + ks.LastKey
			case ks.Limit <= 1:
				last = argc + ks.LastKey
			default:
				last = first + ((argc-first)/ks.Limit + ks.LastKey)
			}
		case FindKeynum:
			idx := first + ks.KeyNumIdx
			if idx >= argc {
				return ErrKeys
			}
			n, ok := parseCount(args[idx])
			if !ok || n < 0 || n > argc {
				return ErrKeys
			}
			first += ks.FirstKey
			last = first + n - 1
			step = ks.KeyStep
		default:
			continue
		}
		if step <= 0 {
			step = 1
		}
		if last < first {
			continue // zero keys (numkeys 0)
		}
		if last >= argc {
			return ErrKeys
		}
		for i := first; i <= last; i += step {
			a.Keys = append(a.Keys, i)
		}
		if ks.Flags&(KRW|KOW|KRM|KUpdate|KInsert|KDelete) != 0 {
			a.Writes = true
		}
	}
	return nil
}

// findKeyword returns the index after kw, searching forward from startFrom
// (or backward from argc+startFrom when negative), or -1.
func findKeyword(args [][]byte, kw string, startFrom int) int {
	argc := len(args)
	if startFrom >= 0 {
		for i := startFrom; i < argc; i++ {
			if EqFold(args[i], kw) {
				return i + 1
			}
		}
		return -1
	}
	for i := argc + startFrom; i >= 1; i-- {
		if EqFold(args[i], kw) {
			return i + 1
		}
	}
	return -1
}

// extractSort follows Redis's sortGetKeys: the sorted key, the STORE
// destination (the last one wins), and the BY and GET patterns, which name
// keys too and so must stay inside the workspace.
func extractSort(args [][]byte, a *Access) error {
	if len(args) < 2 {
		return ErrKeys
	}
	a.Keys = append(a.Keys, 1)
	store := -1
	for i := 2; i < len(args); i++ {
		switch {
		case EqFold(args[i], "limit"):
			i += 2
		case EqFold(args[i], "by"), EqFold(args[i], "get"):
			if i+1 < len(args) {
				p := args[i+1]
				// "BY nosort" and "GET #" name no key.
				if !(EqFold(args[i], "by") && EqFold(p, "nosort")) && !(len(p) == 1 && p[0] == '#') {
					a.Patterns = append(a.Patterns, i+1)
				}
			}
			i++
		case EqFold(args[i], "store"):
			if i+1 < len(args) {
				store = i + 1
			}
			i++
		}
	}
	if store >= 0 {
		a.Keys = append(a.Keys, store)
		a.Writes = true
	}
	return nil
}

// extractMigrate follows migrateGetKeys: the key at 3, or with an empty key
// there, every key after KEYS (the empty key itself when KEYS is absent).
func extractMigrate(args [][]byte, a *Access) error {
	if len(args) < 6 {
		return ErrKeys
	}
	a.Writes = true
	if len(args[3]) > 0 {
		a.Keys = append(a.Keys, 3)
		return nil
	}
	for i := 6; i < len(args); i++ {
		if EqFold(args[i], "keys") {
			for j := i + 1; j < len(args); j++ {
				a.Keys = append(a.Keys, j)
			}
			return nil
		}
		if EqFold(args[i], "auth") {
			i++
		} else if EqFold(args[i], "auth2") {
			i += 2
		}
	}
	// No KEYS: Redis migrates (and deletes) the key with the empty name.
	a.Keys = append(a.Keys, 3)
	return nil
}

// parseCount parses a non-negative decimal as Redis does, accepting a
// superset of what Redis accepts (so a count Redis reads is never missed).
func parseCount(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// EqFold compares an ASCII argument with a lowercase word, ignoring the
// argument's case, without allocating.
func EqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
