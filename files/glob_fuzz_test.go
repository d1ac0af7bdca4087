package files

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzGlob(f *testing.F) {
	seeds := [][3]string{
		{"*.go", "/", "/a/b.go"},
		{"/src/**/*.go", "/", "/src/x/y.go"},
		{"{src/a,lib}/*.go", "/p/", "/p/src/a/m.go"},
		{"/[!a-c]?/{x,{y,z}}", "/", "/d文/z"},
		{"/*a*a*a*a*a*a*b", "/", "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"**/a/**/a/**/a/**/b", "/", "/a/a/a/a/a/a/a/a/a/a/a/c"},
		{"\\{a,b\\}[]]\\", "/d/", "/d/{a,b}]\\"},
		{"{,{,{,{,}}}}x", "/", "/x"},
		{"/[\\--\\]][^文]", "/", "/-x"},
		{"..", "/", "/a"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, dir, path string) {
		if len(pattern) > 256 || len(dir) > 64 || len(path) > 256 {
			return
		}
		g, err := CompileGlob(pattern, dir)
		if err != nil {
			return
		}
		p := g.Prefix()
		if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
			t.Fatalf("prefix %q", p)
		}
		if pattern[0] != '/' {
			d, _ := CleanDir(cmp(dir, "/"))
			if !strings.HasPrefix(p, d) {
				t.Fatalf("prefix %q is not under the dir %q", p, d)
			}
		}
		path, err = Clean(path)
		if err != nil {
			return
		}
		start := time.Now()
		m := g.Match(path)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Match took %v", d)
		}
		if m && !strings.HasPrefix(path, p) {
			t.Fatalf("%q matches %q outside the prefix %q", pattern, path, p)
		}
		if want := refMatch(g, path); m != want {
			t.Fatalf("glob %q in %q: Match(%q) = %v, reference %v", pattern, dir, path, m, want)
		}
		// A path escaped as a pattern matches itself.
		lit, err := CompileGlob(escapeGlob(path), "/")
		if err != nil || !lit.Match(path) {
			t.Fatalf("escaped %q: %v, matches %v", path, err, err == nil && lit.Match(path))
		}
	})
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// refMatch is a memoised dynamic-programming matcher over the compiled
// glob, to check the backtracking loops of Match against.
func refMatch(g *Glob, path string) bool {
	for _, a := range g.alts {
		if !strings.HasPrefix(path, a.prefix) {
			continue
		}
		parts := strings.Split(path[len(a.prefix):], "/")
		memo := map[[2]int]bool{}
		var match func(si, pi int) bool
		match = func(si, pi int) bool {
			if v, ok := memo[[2]int{si, pi}]; ok {
				return v
			}
			var v bool
			switch {
			case si == len(a.segs):
				v = pi == len(parts)
			case a.segs[si].globstar:
				v = match(si+1, pi) || pi < len(parts) && match(si, pi+1)
			default:
				v = pi < len(parts) && refSegment(a.segs[si].toks, parts[pi]) && match(si+1, pi+1)
			}
			memo[[2]int{si, pi}] = v
			return v
		}
		if match(0, 0) {
			return true
		}
	}
	return false
}

func refSegment(toks []token, s string) bool {
	runes := []string{}
	for i := 0; i < len(s); {
		_, w := utf8.DecodeRuneInString(s[i:])
		runes = append(runes, s[i:i+w])
		i += w
	}
	memo := map[[2]int]bool{}
	var match func(ti, ri int) bool
	match = func(ti, ri int) bool {
		if v, ok := memo[[2]int{ti, ri}]; ok {
			return v
		}
		var v bool
		switch {
		case ti == len(toks):
			v = ri == len(runes)
		case toks[ti].kind == tokStar:
			v = match(ti+1, ri) || ri < len(runes) && match(ti, ri+1)
		default:
			if ri < len(runes) {
				r, _ := utf8.DecodeRuneInString(runes[ri])
				v = toks[ti].matches(r, runes[ri]) && match(ti+1, ri+1)
			}
		}
		memo[[2]int{ti, ri}] = v
		return v
	}
	return match(0, 0)
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"/a", "//a/./b", "/a/../b", "/a/", "/", "", "a", "/文档/笔记.md", "/a:b%c", "/./.", "/a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if d, err := CleanDir(p); err == nil {
			if !strings.HasSuffix(d, "/") || strings.HasSuffix(d, "//") {
				t.Fatalf("CleanDir(%q) = %q", p, d)
			}
			if again, err := CleanDir(d); err != nil || again != d {
				t.Fatalf("CleanDir(%q) = %q, but CleanDir(%q) = %q, %v", p, d, d, again, err)
			}
		}
		c, err := Clean(p)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "path ") {
				t.Fatalf("Clean(%q) error %q", p, err)
			}
			return
		}
		if again, err := Clean(c); err != nil || again != c {
			t.Fatalf("Clean(%q) = %q, but Clean(%q) = %q, %v", p, c, c, again, err)
		}
		if !strings.HasPrefix(c, "/") || len(c) > MaxPath || strings.ContainsAny(c, "\x00\r\n") {
			t.Fatalf("Clean(%q) = %q", p, c)
		}
		s := c + "/"
		for _, bad := range []string{"//", "/./", "/../"} {
			if strings.Contains(s, bad) {
				t.Fatalf("Clean(%q) = %q contains %q", p, c, bad)
			}
		}
		if d, err := CleanDir(p); err != nil || d != c+"/" {
			t.Fatalf("Clean(%q) = %q but CleanDir = %q, %v", p, c, d, err)
		}
		k := KeyPath(c)
		if strings.Contains(k, ":") {
			t.Fatalf("KeyPath(%q) = %q", c, k)
		}
		if back := strings.NewReplacer("%3A", ":", "%25", "%").Replace(k); back != c {
			t.Fatalf("KeyPath(%q) = %q does not reverse", c, k)
		}
	})
}
