package files

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// maxExpansions bounds the patterns one glob may expand to.
	maxExpansions = 256
	// maxPattern bounds the length of a glob pattern, in bytes.
	maxPattern = 4 * MaxPath
)

// Glob is a compiled glob pattern (docs/FILES.md "glob"):
//
//   - '*' matches any run of characters except '/';
//   - "**" as a whole segment matches any number of whole path segments,
//     including none, except at the end of a pattern, where it matches at
//     least one (the file name); inside a segment ("a**b") it is '*';
//   - '?' matches one character (UTF-8 rune) except '/';
//   - "[abc]", "[a-z]", "[!a]", "[^a]" match one rune of (or not of) a
//     class; ']' first in a class is literal, a backslash escapes inside
//     a class, and a '[' without its ']' in the same segment is literal;
//   - "{a,b}" matches either alternative; braces nest and may contain '/'
//     ("{src/a,lib}/*.go"); "{a}" is "a" and "{}" is empty;
//     at most 256 patterns may result;
//   - a backslash makes the next character literal ("\/" is just '/');
//   - '*' and '?' match a leading dot.
//
// Empty and "." segments in a pattern are ignored, as Clean ignores them
// in paths; a ".." segment or a pattern naming a directory (ending in '/')
// is an error.
type Glob struct {
	alts   []globAlt
	prefix string
}

// globAlt is one brace expansion of a pattern.
type globAlt struct {
	prefix string    // the leading literal directories, "/" to "/a/b/"
	segs   []segment // the segments after prefix
}

// segment matches one path segment, or any number of them (globstar).
type segment struct {
	globstar bool
	literal  bool   // toks are all literals; lit is their text
	lit      string //
	toks     []token
}

type tokenKind uint8

const (
	tokLit   tokenKind = iota // one rune, exactly
	tokAny                    // ?
	tokStar                   // *
	tokClass                  // [...]
)

type token struct {
	kind  tokenKind
	lit   string // tokLit: the rune's bytes
	neg   bool   // tokClass: [!...]
	class []runeRange
}

type runeRange struct{ lo, hi rune }

// CompileGlob compiles pattern relative to the directory dir ("" is "/"):
// a pattern starting with "/" is absolute and ignores dir; a pattern
// without any "/" matches base names at any depth under dir (as if it were
// dir + "**/" + pattern); any other pattern is dir + pattern.
// Errors about dir start with "path ", errors about the pattern with "glob ".
func CompileGlob(pattern, dir string) (*Glob, error) {
	switch {
	case pattern == "":
		return nil, fmt.Errorf(`glob pattern "" is empty`)
	case len(pattern) > maxPattern:
		return nil, fmt.Errorf("glob pattern %s is too long (%d bytes, at most %d)", quote(pattern), len(pattern), maxPattern)
	case strings.ContainsAny(pattern, "\x00\r\n"):
		return nil, fmt.Errorf("glob pattern %s contains a NUL, CR or LF byte", quote(pattern))
	}
	if dir == "" {
		dir = "/"
	}
	d, err := CleanDir(dir)
	if err != nil {
		return nil, err
	}
	full := pattern
	switch {
	case pattern[0] == '/':
	case !strings.Contains(pattern, "/"):
		full = escapeGlob(d) + "**/" + pattern
	default:
		full = escapeGlob(d) + pattern
	}

	var exps []string
	if err := expandBraces(full, &exps); err != nil {
		return nil, fmt.Errorf("glob pattern %s has more than %d alternatives after brace expansion", quote(pattern), maxExpansions)
	}
	g := &Glob{}
	seen := make(map[string]bool, len(exps))
	for i, e := range exps {
		if seen[e] {
			continue
		}
		seen[e] = true
		a, err := compileAlt(e)
		if err != nil {
			return nil, fmt.Errorf("glob pattern %s %s", quote(pattern), err)
		}
		g.alts = append(g.alts, a)
		if i == 0 {
			g.prefix = a.prefix
		} else {
			g.prefix = commonDir(g.prefix, a.prefix)
		}
	}
	return g, nil
}

// Match reports whether the cleaned absolute file path matches.
func (g *Glob) Match(path string) bool {
	if len(path) < 2 || path[0] != '/' || path[len(path)-1] == '/' {
		return false
	}
	for i := range g.alts {
		a := &g.alts[i]
		if strings.HasPrefix(path, a.prefix) && matchSegments(a.segs, path[len(a.prefix):]) {
			return true
		}
	}
	return false
}

// Prefix is the longest literal directory prefix, ending in "/", that
// every match starts with: a narrowing for a lexicographic range scan.
// It is at least "/" and, for a relative pattern, at least its directory.
func (g *Glob) Prefix() string { return g.prefix }

// commonDir is the longest common prefix of a and b ending in "/"; both
// start with "/".
func commonDir(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:strings.LastIndexByte(a[:n], '/')+1]
}

// escapeGlob makes s match itself literally.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `\*?[]{},`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`\*?[]{},`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// classEnd returns the index just past the ']' closing the class that
// starts at s[i] == '[', or -1 when there is none before the end of the
// segment (then the '[' is literal).
func classEnd(s string, i int) int {
	j := i + 1
	if j < len(s) && (s[j] == '!' || s[j] == '^') {
		j++
	}
	if j < len(s) && s[j] == ']' {
		j++
	}
	for j < len(s) {
		switch s[j] {
		case '\\':
			if j+1 < len(s) && s[j+1] == '/' {
				return -1
			}
			j += 2
		case '/':
			return -1
		case ']':
			return j + 1
		default:
			j++
		}
	}
	return -1
}

// expandBraces appends the brace expansions of s to out, failing when
// there are more than maxExpansions.
func expandBraces(s string, out *[]string) error {
	open, close := findBraces(s)
	if open < 0 {
		if len(*out) >= maxExpansions {
			return fmt.Errorf("too many expansions")
		}
		*out = append(*out, s)
		return nil
	}
	body := s[open+1 : close]
	for start, depth, i := 0, 0, 0; i <= len(body); i++ {
		if i < len(body) {
			switch body[i] {
			case '\\':
				i++
				continue
			case '[':
				if end := classEnd(body, i); end >= 0 {
					i = end - 1
				}
				continue
			case '{':
				depth++
				continue
			case '}':
				depth--
				continue
			case ',':
				if depth > 0 {
					continue
				}
			default:
				continue
			}
		}
		// a top-level ',' or the end of the body
		if err := expandBraces(s[:open]+body[start:i]+s[close+1:], out); err != nil {
			return err
		}
		start = i + 1
	}
	return nil
}

// findBraces returns the first '{' of s that has a matching '}', and that
// '}', or -1, -1. Escaped braces and braces inside classes do not count.
func findBraces(s string) (open, close int) {
	open, close = -1, -1
	var stack []int
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '[':
			if end := classEnd(s, i); end >= 0 {
				i = end - 1
			}
		case '{':
			stack = append(stack, i)
		case '}':
			if len(stack) > 0 {
				o := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				if open < 0 || o < open {
					open, close = o, i
				}
			}
		}
	}
	return open, close
}

// splitPattern splits a brace-free pattern at '/' (escaped or not).
func splitPattern(s string) []string {
	var segs []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) && s[i+1] == '/' {
				segs = append(segs, s[start:i])
				start = i + 2
			}
			i++
		case '/':
			segs = append(segs, s[start:i])
			start = i + 1
		}
	}
	return append(segs, s[start:])
}

// compileAlt compiles one brace-free absolute pattern.
func compileAlt(s string) (globAlt, error) {
	raw := splitPattern(s)[1:] // s starts with '/'
	if last := raw[len(raw)-1]; last == "" || last == "." {
		return globAlt{}, fmt.Errorf("names a directory (add ** to match the files under it)")
	}
	var segs []segment
	for _, r := range raw {
		switch r {
		case "", ".":
			continue
		case "..":
			return globAlt{}, fmt.Errorf(`has a ".." segment`)
		case "**":
			if len(segs) == 0 || !segs[len(segs)-1].globstar {
				segs = append(segs, segment{globstar: true})
			}
			continue
		}
		seg, err := compileSegment(r)
		if err != nil {
			return globAlt{}, err
		}
		segs = append(segs, seg)
	}
	if segs[len(segs)-1].globstar { // a trailing ** needs a file name
		segs = append(segs, segment{toks: []token{{kind: tokStar}}})
	}
	a := globAlt{prefix: "/"}
	n := 0
	for n < len(segs)-1 && segs[n].literal {
		a.prefix += segs[n].lit + "/"
		n++
	}
	a.segs = segs[n:]
	return a, nil
}

// compileSegment compiles a pattern for one path segment.
func compileSegment(s string) (segment, error) {
	seg := segment{literal: true}
	for i := 0; i < len(s); {
		switch s[i] {
		case '*':
			if n := len(seg.toks); n == 0 || seg.toks[n-1].kind != tokStar {
				seg.toks = append(seg.toks, token{kind: tokStar})
			}
			seg.literal = false
			i++
			continue
		case '?':
			seg.toks = append(seg.toks, token{kind: tokAny})
			seg.literal = false
			i++
			continue
		case '[':
			if end := classEnd(s, i); end >= 0 {
				t, err := compileClass(s[i+1 : end-1])
				if err != nil {
					return segment{}, err
				}
				seg.toks = append(seg.toks, t)
				seg.literal = false
				i = end
				continue
			}
		case '\\':
			if i+1 < len(s) {
				i++
			}
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		seg.toks = append(seg.toks, token{kind: tokLit, lit: s[i : i+w]})
		seg.lit += s[i : i+w]
		i += w
	}
	if !seg.literal {
		seg.lit = ""
	}
	return seg, nil
}

// compileClass compiles the inside of "[...]".
func compileClass(s string) (token, error) {
	t := token{kind: tokClass}
	if s != "" && (s[0] == '!' || s[0] == '^') {
		t.neg = true
		s = s[1:]
	}
	for i := 0; i < len(s); {
		var lo, hi rune
		lo, i = classRune(s, i)
		hi = lo
		if i+1 < len(s) && s[i] == '-' {
			hi, i = classRune(s, i+1)
			if hi < lo {
				return token{}, fmt.Errorf("has a backwards range %s in a class", quote(string(lo)+"-"+string(hi)))
			}
		}
		t.class = append(t.class, runeRange{lo, hi})
	}
	return t, nil
}

// classRune reads the possibly escaped rune at s[i].
func classRune(s string, i int) (rune, int) {
	if s[i] == '\\' && i+1 < len(s) {
		i++
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return r, i + w
}

// matches reports whether t (not a star) matches the rune r, whose bytes
// are b.
func (t *token) matches(r rune, b string) bool {
	switch t.kind {
	case tokLit:
		return t.lit == b
	case tokAny:
		return true
	case tokClass:
		for _, rr := range t.class {
			if rr.lo <= r && r <= rr.hi {
				return !t.neg
			}
		}
		return t.neg
	}
	return false
}

// match reports whether the segment matches the path segment s, with the
// classic star-backtracking loop: on a mismatch only the last '*' takes
// one more rune, so the time is at most len(toks) * len(s).
func (seg *segment) match(s string) bool {
	if seg.literal {
		return s == seg.lit
	}
	toks := seg.toks
	ti, si := 0, 0
	starT, starS := -1, 0
	for ti < len(toks) || si < len(s) {
		if ti < len(toks) {
			t := &toks[ti]
			if t.kind == tokStar {
				starT, starS = ti, si
				ti++
				continue
			}
			if si < len(s) {
				r, w := utf8.DecodeRuneInString(s[si:])
				if t.matches(r, s[si:si+w]) {
					ti++
					si += w
					continue
				}
			}
		}
		if starT >= 0 && starS < len(s) {
			_, w := utf8.DecodeRuneInString(s[starS:])
			starS += w
			ti, si = starT+1, starS
			continue
		}
		return false
	}
	return true
}

// nextSegment returns the path segment of p starting at i and the start of
// the one after it (len(p)+1 past the last).
func nextSegment(p string, i int) (string, int) {
	j := strings.IndexByte(p[i:], '/')
	if j < 0 {
		return p[i:], len(p) + 1
	}
	return p[i : i+j], i + j + 1
}

// matchSegments reports whether segs match the '/'-separated segments of
// the non-empty p. It is the star-backtracking loop of segment.match one
// level up, with "**" as the star and whole segments as the runes, so it
// never backtracks further than the last "**".
func matchSegments(segs []segment, p string) bool {
	si, pi := 0, 0 // pi > len(p) once every segment of p is used
	starS, starP := -1, 0
	for si < len(segs) || pi <= len(p) {
		if si < len(segs) {
			if segs[si].globstar {
				starS, starP = si, pi
				si++
				continue
			}
			if pi <= len(p) {
				s, next := nextSegment(p, pi)
				if segs[si].match(s) {
					si++
					pi = next
					continue
				}
			}
		}
		if starS >= 0 && starP <= len(p) {
			_, starP = nextSegment(p, starP)
			si, pi = starS+1, starP
			continue
		}
		return false
	}
	return true
}
