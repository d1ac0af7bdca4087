package keyspace

import (
	"bytes"
	"errors"
	"math"
	"slices"
)

// ErrKeys means the arguments do not let the keys be found (a numkeys that
// counts none, or more than the arguments). Redis finds none either, so its
// ACLs check none, and the command rejects the form with its own error: the
// proxy sends it on with no keys, after the checks of the role.
var ErrKeys = errors.New("cannot find the keys of this command")

// ErrAmbiguous means a keyword that introduces keys (STORE, STREAMS) occurs
// more than once, so which key the command writes depends on whose parser
// reads it; the proxy refuses such forms for agents.
var ErrAmbiguous = errors.New("a keyword that introduces keys occurs more than once")

// Access lists what one command touches, as indexes into its arguments.
// It is reused across commands so extraction does not allocate.
type Access struct {
	Keys     []int // key names
	Written  []int // the keys among Keys that the command may modify
	Channels []int // pub/sub channels (exact names)
	Patterns []int // glob patterns over keys or channels that must stay inside a workspace
	Writes   bool  // some key is written
}

// Reset empties a for reuse.
func (a *Access) Reset() {
	a.Keys, a.Written, a.Channels, a.Patterns, a.Writes = a.Keys[:0], a.Written[:0], a.Channels[:0], a.Patterns[:0], false
}

// IsWritten reports whether the key at argument index i may be modified.
func (a *Access) IsWritten(i int) bool {
	for _, w := range a.Written {
		if w == i {
			return true
		}
	}
	return false
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
//
// On an error a is empty. ErrKeys means Redis finds no keys either (its
// key specs and the command's own key finder give up; its ACLs check none)
// and the command rejects the form itself.
func Extract(c *Command, args [][]byte, a *Access) error {
	err := extract(c, args, a)
	if err != nil {
		a.Reset()
	}
	return err
}

func extract(c *Command, args [][]byte, a *Access) error {
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
	specs := 0
	for k := range c.Keys {
		ks := &c.Keys[k]
		if ks.Flags&KNotKey != 0 {
			continue
		}
		specs++
		first := 0
		switch ks.Begin {
		case BeginIndex:
			first = ks.Index
		case BeginKeyword:
			var n int
			first, n = findKeyword(args, ks.Keyword, ks.StartFrom)
			if n > 1 {
				// Redis's key spec takes the first occurrence, but the
				// command's own parser may take the last (GEORADIUS ...
				// STORE a STORE b writes b): the form is ambiguous.
				return ErrAmbiguous
			}
			if first < 0 {
				continue // optional keyword absent: no keys from this spec
			}
		default:
			return ErrKeys
		}
		last, step := 0, 1
		switch ks.Find {
		case FindRange:
			step = ks.KeyStep
			switch {
			case ks.LastKey >= 0:
				last = first + ks.LastKey
			case ks.Limit == 0:
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
			first += ks.FirstKey
			step = ks.KeyStep
			if ok && n == 0 && c.Redis&RNoMandatoryKeys != 0 {
				continue // EVAL script 0: no keys, as Redis allows
			}
			if !ok || n > argc || n == 0 || first+n-1 >= argc {
				// Redis falls back to the command's own key finder
				// (genericGetKeys), which reads numkeys with atoi: its
				// ACLs check the keys it finds, and so does the proxy.
				if n, ok = laxKeynum(args[idx], argc, first, step); !ok {
					return ErrKeys
				}
			}
			last = first + n - 1
		default:
			return ErrKeys
		}
		if step <= 0 {
			step = 1
		}
		// A range that ends before it begins is empty: optional keys not
		// given (PFMERGE dest without sources; Redis 7.0's key spec calls
		// it invalid, finds no keys, and the command writes dest anyway).
		if ks.Find == FindRange && ks.LastKey < 0 && (first >= argc || last < first) {
			continue
		}
		// As in Redis's getKeysUsingKeySpecs: a range out of bounds is a
		// form Redis cannot resolve.
		if last >= argc || last < first || first >= argc {
			return ErrKeys
		}
		write := ks.Flags&(KRW|KOW|KRM|KUpdate|KInsert|KDelete) != 0
		for i := first; i <= last; i += step {
			a.Keys = append(a.Keys, i)
			if write {
				a.Written = append(a.Written, i)
			}
		}
		if write {
			a.Writes = true
		}
	}
	if specs > 0 && len(a.Keys) == 0 && c.Redis&RNoMandatoryKeys == 0 {
		// A command that takes keys called without any (XREAD without
		// STREAMS): Redis rejects it, and the proxy cannot check it.
		return ErrKeys
	}
	return nil
}

// findKeyword returns the index after kw and how often kw occurs, searching
// as Redis does: forward from startFrom up to the next-to-last argument, or
// backward from argc+startFrom down to 1 when startFrom is negative. The
// index is -1 when kw does not occur.
func findKeyword(args [][]byte, kw string, startFrom int) (int, int) {
	argc := len(args)
	first, n := -1, 0
	if startFrom > 0 {
		for i := startFrom; i < argc-1; i++ {
			if EqFold(args[i], kw) {
				if n == 0 {
					first = i + 1
				}
				n++
			}
		}
		return first, n
	}
	for i := argc + startFrom; i >= 1; i-- {
		if i < argc && EqFold(args[i], kw) {
			if n == 0 {
				first = i + 1
			}
			n++
		}
	}
	return first, n
}

// extractSort follows Redis's sortGetKeys: the sorted key, the STORE
// destination (the last one wins), and the BY and GET patterns, which name
// keys too and so must stay inside the workspace.
func extractSort(args [][]byte, a *Access) error {
	if len(args) < 2 {
		return ErrKeys
	}
	a.Keys = append(a.Keys, 1)
	store, stores := -1, 0
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
		case EqFold(args[i], "store") && i+1 < len(args):
			// Redis's sortGetKeys does not skip STORE's argument (so
			// "STORE store x" names x) while SORT itself does: count
			// every STORE the way sortGetKeys sees them.
			store = i + 1
			stores++
		}
	}
	if stores > 1 {
		return ErrAmbiguous
	}
	// SORT itself parses its arguments otherwise (it skips STORE's
	// argument): where the two disagree on what the command writes or
	// reads ("SORT s STORE limit STORE x" writes x), the form is refused.
	if es, known, ok := sortExec(args, len(args[0]) == 7, a.Patterns); ok && (es != store || !known) {
		return ErrAmbiguous
	}
	if store >= 0 {
		a.Keys = append(a.Keys, store)
		a.Written = append(a.Written, store)
		a.Writes = true
	}
	return nil
}

// sortExec follows sortCommand's own parsing: the STORE destination it
// writes (-1: none), and whether every BY or GET pattern it reads keys by
// is among known; !ok for forms it answers with a syntax error (they run
// nothing).
func sortExec(args [][]byte, readonly bool, known []int) (store int, patternsKnown, ok bool) {
	store, patternsKnown = -1, true
	for j := 2; j < len(args); j++ {
		left := len(args) - j - 1
		a := args[j]
		switch {
		case EqFold(a, "asc"), EqFold(a, "desc"), EqFold(a, "alpha"):
		case EqFold(a, "limit") && left >= 2:
			j += 2
		case EqFold(a, "store") && left >= 1 && !readonly:
			store = j + 1
			j++
		case (EqFold(a, "by") || EqFold(a, "get")) && left >= 1:
			p := args[j+1]
			reads := EqFold(a, "by") && bytes.IndexByte(p, '*') >= 0 || EqFold(a, "get") && !(len(p) == 1 && p[0] == '#')
			if reads && !slices.Contains(known, j+1) {
				patternsKnown = false
			}
			j++
		default:
			return -1, false, false
		}
	}
	return store, patternsKnown, true
}

// extractMigrate follows migrateGetKeys: the key at 3, or with an empty key
// there, every key after KEYS (the empty key itself when KEYS is absent).
func extractMigrate(args [][]byte, a *Access) error {
	if len(args) < 6 {
		return ErrKeys
	}
	a.Writes = true
	// Redis's key spec looks for KEYS backward from the next-to-last
	// argument; only when it is there does migrateGetKeys scan forward
	// from 6, skipping the values of AUTH and AUTH2.
	keys := -1
	if kw, _ := findKeyword(args, "keys", -2); kw >= 0 {
		for i := 6; i < len(args); i++ {
			if EqFold(args[i], "keys") {
				keys = i + 1
				break
			}
			if EqFold(args[i], "auth") {
				i++
			} else if EqFold(args[i], "auth2") {
				i += 2
			}
		}
	}
	switch {
	case keys >= 0 && (len(args[3]) > 0 || keys == len(args)):
		return ErrKeys // KEYS with a key name at 3, or with no key after it
	case keys >= 0:
		for j := keys; j < len(args); j++ {
			a.Keys = append(a.Keys, j)
		}
	default:
		// The key at 3; without KEYS an empty name at 3 is migrated
		// (and deleted) too.
		a.Keys = append(a.Keys, 3)
	}
	a.Written = append(a.Written, a.Keys...) // migrated keys are deleted here
	return nil
}

// parseCount parses a non-negative decimal as Redis does, accepting a
// superset of what Redis accepts (so a count Redis reads is never missed).
// laxKeynum reads numkeys as Redis's genericGetKeys does, with C's atoi
// (leading spaces, a sign, digits up to the first other byte; a long
// truncated to int): the count of keys from first, or false when it finds
// none (fewer than one, or more than the arguments hold).
func laxKeynum(b []byte, argc, first, step int) (int, bool) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] >= '\t' && b[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var v int64 // strtol: clamped to the range of a long
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := int64(b[i] - '0')
		switch {
		case !neg && v > (math.MaxInt64-d)/10:
			v = math.MaxInt64
		case neg && -v < (math.MinInt64+d)/10:
			v = math.MinInt64
		case neg:
			v = v*10 - d
		default:
			v = v*10 + d
		}
	}
	n := int(int32(v)) // atoi's int
	if step < 1 {
		step = 1
	}
	if n < 1 || n > (argc-first)/step {
		return 0, false
	}
	return n, true
}

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

// HasArg reports whether the option word (lowercase) is among args,
// compared as Redis does (ASCII, ignoring case).
func HasArg(args [][]byte, word string) bool {
	for _, a := range args {
		if EqFold(a, word) {
			return true
		}
	}
	return false
}

// EqFold compares an ASCII argument with a lowercase word, ignoring the
// argument's case, without allocating.
//
// The argument ends at its first NUL byte, as for Redis's strcasecmp, which
// parses every option: "STREAMS\x00..." is STREAMS to Redis, so it must be
// to the proxy too (else a key after it would go unchecked).
func EqFold(b []byte, lower string) bool {
	if len(b) < len(lower) || len(b) > len(lower) && b[len(lower)] != 0 {
		return false
	}
	for i := 0; i < len(lower); i++ {
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
