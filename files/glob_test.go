package files

import (
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	type c struct {
		pattern, dir string
		yes, no      []string
	}
	tests := []c{
		// '*'
		{"/*", "/", []string{"/a", "/.a", "/a.txt", "/文档"}, []string{"/a/b"}},
		{"/*.go", "/", []string{"/a.go", "/.go", "/x.y.go"}, []string{"/a.go.txt", "/a/b.go", "/ago"}},
		{"/a*b", "/", []string{"/ab", "/axxb", "/abab"}, []string{"/a/b", "/abc", "/ba"}},
		{"/*a*a*a*a*a*b", "/", []string{"/aaaaab", "/xaxaxaxaxab"}, []string{"/" + strings.Repeat("a", 200), "/aaaab"}},
		{"/a**b", "/", []string{"/ab", "/axyzb"}, []string{"/a/b", "/a/x/b"}}, // ** inside a segment is *
		{"/***", "/", []string{"/a"}, []string{"/a/b"}},
		{"/src/*", "/", []string{"/src/a", "/src/.env"}, []string{"/src", "/src/a/b", "/srcx/a"}},
		// '**'
		{"/**", "/", []string{"/a", "/a/b/c", "/.git/config"}, nil},
		{"/**/*.go", "/", []string{"/a.go", "/x/a.go", "/x/y/z/a.go", "/.a/.b.go"}, []string{"/a.gox", "/x/a.go/b"}},
		{"/src/**/*.go", "/", []string{"/src/a.go", "/src/x/a.go", "/src/x/y/a.go"}, []string{"/a.go", "/srcx/a.go", "/lib/src/a.go"}},
		{"/src/**", "/", []string{"/src/a", "/src/a/b/c"}, []string{"/src", "/srca", "/x/src/a"}},
		{"/**/test", "/", []string{"/test", "/a/test", "/a/b/test"}, []string{"/test/a", "/atest"}},
		{"/a/**/b/**/c", "/", []string{"/a/b/c", "/a/x/b/y/c", "/a/b/b/b/c", "/a/x/y/b/c"}, []string{"/a/c", "/a/b/c/d", "/a/b"}},
		{"/**/**/x", "/", []string{"/x", "/a/x", "/a/b/x"}, []string{"/xa"}},
		{"/**/a/**/a/**/a/**/b", "/", []string{"/a/a/a/b", "/x/a/y/a/z/a/w/b"},
			[]string{"/" + strings.Repeat("a/", 100) + "c", "/a/a/b"}},
		{"**/*.md", "/docs/", []string{"/docs/a.md", "/docs/x/y.md"}, []string{"/a.md", "/docsa.md"}},
		// '?'
		{"/?", "/", []string{"/a", "/.", "/文", "/\xff"}, []string{"/ab", "/"}},
		{"/a?c", "/", []string{"/abc", "/a.c", "/a文c"}, []string{"/ac", "/a/c", "/abbc"}},
		{"/???.md", "/", []string{"/笔记本.md", "/abc.md"}, []string{"/笔记.md"}},
		// classes
		{"/[abc].txt", "/", []string{"/a.txt", "/c.txt"}, []string{"/d.txt", "/ab.txt", "/.txt"}},
		{"/[a-c]x", "/", []string{"/ax", "/bx", "/cx"}, []string{"/dx", "/Ax"}},
		{"/[!a-c]x", "/", []string{"/dx", "/.x", "/文x"}, []string{"/ax", "/cx", "/x"}},
		{"/[^a]", "/", []string{"/b"}, []string{"/a"}},
		{"/[]]", "/", []string{"/]"}, []string{"/a"}},
		{"/[]a]", "/", []string{"/]", "/a"}, []string{"/b"}},
		{"/[!]]", "/", []string{"/a"}, []string{"/]"}},
		{"/[-a]", "/", []string{"/-", "/a"}, []string{"/b"}},
		{"/[a-]", "/", []string{"/-", "/a"}, []string{"/b"}},
		{"/[\\]]", "/", []string{"/]"}, []string{"/\\"}},
		{"/[\\--\\]]", "/", []string{"/-", "/A", "/]"}, []string{"/a"}},
		{"/[文档]x", "/", []string{"/文x", "/档x"}, []string{"/笔x"}},
		{"/[一-龥].md", "/", []string{"/文.md", "/笔.md"}, []string{"/a.md", "/文档.md"}},
		{"/[0-9a-fA-F][0-9]", "/", []string{"/a1", "/F9"}, []string{"/g1", "/aa"}},
		{"/[ab", "/", []string{"/[ab"}, []string{"/a"}},                 // unterminated: literal
		{"/a[b/c]", "/", []string{"/a[b/c]"}, []string{"/ab", "/a/c]"}}, // a class cannot span '/'
		{"/[!]", "/", []string{"/[!]"}, []string{"/a"}},
		// braces
		{"/{a,b}.txt", "/", []string{"/a.txt", "/b.txt"}, []string{"/c.txt", "/ab.txt"}},
		{"/{a,{b,c}}", "/", []string{"/a", "/b", "/c"}, []string{"/d", "/{a,{b,c}}"}},
		{"/x{a,b{c,d}e}y", "/", []string{"/xay", "/xbcey", "/xbdey"}, []string{"/xbey", "/xby"}},
		{"/{a,}b", "/", []string{"/ab", "/b"}, []string{"/a"}},
		{"/a{}b", "/", []string{"/ab"}, []string{"/a{}b"}},
		{"/{x}", "/", []string{"/x"}, []string{"/{x}"}},
		{"{src/a,lib}/*.go", "/", []string{"/src/a/m.go", "/lib/m.go"}, []string{"/src/m.go", "/lib/x/m.go", "/x/lib/m.go"}},
		{"/{src,lib}/**/*.{go,md}", "/", []string{"/src/a.go", "/lib/x/y.md"}, []string{"/doc/a.go", "/src/a.txt"}},
		{"/{a,b}{c,d}", "/", []string{"/ac", "/ad", "/bc", "/bd"}, []string{"/ab", "/cd"}},
		{"/a{b", "/", []string{"/a{b"}, []string{"/ab"}},  // unmatched '{'
		{"/a}b", "/", []string{"/a}b"}, nil},              // unmatched '}'
		{"/{a{b,c}", "/", []string{"/{ab", "/{ac"}, nil},  // only the inner braces match
		{"/a,b", "/", []string{"/a,b"}, []string{"/a"}},   // a comma outside braces is literal
		{"/{a\\,b,c}", "/", []string{"/a,b", "/c"}, nil},  // escaped comma
		{"/[{]x}", "/", []string{"/{x}"}, []string{"/x"}}, // braces inside a class are literal
		{"/{**/,}x", "/", []string{"/x", "/a/x", "/a/b/x"}, nil},
		{"/{a/**,b}", "/", []string{"/a/x", "/a/x/y", "/b"}, []string{"/a"}},
		// escapes
		{"/\\*", "/", []string{"/*"}, []string{"/a"}},
		{"/a\\?", "/", []string{"/a?"}, []string{"/ab"}},
		{"/\\[a]", "/", []string{"/[a]"}, []string{"/a"}},
		{"/\\{a,b\\}", "/", []string{"/{a,b}"}, []string{"/a"}},
		{"/a\\\\b", "/", []string{"/a\\b"}, nil},
		{"/a\\", "/", []string{"/a\\"}, nil}, // a trailing backslash is literal
		{"/\\a\\b", "/", []string{"/ab"}, nil},
		{"/a\\/b", "/", []string{"/a/b"}, nil},
		// dotfiles
		{"*", "/", []string{"/.env", "/a/.gitignore", "/a"}, nil},
		{"/.*", "/", []string{"/.env", "/..x"}, []string{"/env"}},
		{"**/.git/**", "/", []string{"/.git/config", "/a/.git/HEAD"}, []string{"/.gitx/a"}},
		// patterns without '/' match base names at any depth under dir
		{"*.py", "/", []string{"/c.py", "/a/b/c.py", "/.py"}, []string{"/c.pyc", "/a.py/b"}},
		{"*.py", "/src/", []string{"/src/c.py", "/src/a/b/c.py"}, []string{"/c.py", "/srcc.py", "/lib/src.py"}},
		{"*.py", "/src", []string{"/src/c.py"}, nil}, // dir's trailing '/' is optional
		{"*.py", "", []string{"/c.py"}, nil},         // "" is the root
		{"README.md", "/", []string{"/README.md", "/a/README.md"}, []string{"/README.mdx"}},
		{"{a,b}.txt", "/d/", []string{"/d/a.txt", "/d/x/b.txt"}, []string{"/a.txt"}},
		{"笔记.md", "/文档/", []string{"/文档/笔记.md", "/文档/x/笔记.md"}, []string{"/笔记.md"}},
		// relative patterns with '/' are anchored at dir
		{"a/*.md", "/", []string{"/a/x.md"}, []string{"/b/a/x.md"}},
		{"a/*.md", "/d/", []string{"/d/a/x.md"}, []string{"/a/x.md", "/d/b/a/x.md"}},
		{"**/*.md", "/d", []string{"/d/x.md", "/d/e/x.md"}, []string{"/x.md"}},
		{"./a/.//b", "/d/", []string{"/d/a/b"}, nil},
		// absolute patterns ignore dir
		{"/docs/*.md", "/other/", []string{"/docs/a.md"}, []string{"/other/docs/a.md", "/docs/x/a.md"}},
		{"//docs/./*.md", "/", []string{"/docs/a.md"}, nil},
		// dir metacharacters are literal
		{"*.md", "/a[1]/", []string{"/a[1]/x.md"}, []string{"/a1/x.md"}},
		{"*.md", "/{a,b}*/", []string{"/{a,b}*/x.md"}, []string{"/a/x.md", "/b/x.md"}},
		{"x/*", "/\\/", []string{"/\\/x/y"}, nil},
		// unicode and spaces
		{"/文档/*.md", "/", []string{"/文档/笔记.md"}, []string{"/文档/笔记.txt", "/文/笔记.md"}},
		{"/my docs/* *.txt", "/", []string{"/my docs/a b.txt", "/my docs/ .txt"}, []string{"/my docs/ab.txt"}},
		// literal patterns
		{"/a/b.txt", "/", []string{"/a/b.txt"}, []string{"/a/b.txt2", "/a/b", "/a/b.txt/c"}},
		// not a clean file path: never matches
		{"/**", "/", nil, []string{"", "/", "a", "/a/"}},
	}
	for _, tt := range tests {
		g, err := CompileGlob(tt.pattern, tt.dir)
		if err != nil {
			t.Errorf("CompileGlob(%q, %q): %v", tt.pattern, tt.dir, err)
			continue
		}
		for _, p := range tt.yes {
			if !g.Match(p) {
				t.Errorf("glob %q in %q does not match %q", tt.pattern, tt.dir, p)
			}
			if !strings.HasPrefix(p, g.Prefix()) {
				t.Errorf("glob %q in %q matches %q outside its prefix %q", tt.pattern, tt.dir, p, g.Prefix())
			}
		}
		for _, p := range tt.no {
			if g.Match(p) {
				t.Errorf("glob %q in %q matches %q", tt.pattern, tt.dir, p)
			}
		}
	}
}

// TestGlobOverlap checks two patterns that select overlapping file sets.
func TestGlobOverlap(t *testing.T) {
	all := []string{"/a.md", "/docs/a.md", "/docs/x/b.md", "/src/docs/c.md", "/docs/a.txt"}
	tests := []struct {
		pattern string
		want    []string
	}{
		{"**/*.md", []string{"/a.md", "/docs/a.md", "/docs/x/b.md", "/src/docs/c.md"}},
		{"*.md", []string{"/a.md", "/docs/a.md", "/docs/x/b.md", "/src/docs/c.md"}},
		{"/docs/*.md", []string{"/docs/a.md"}},
		{"/docs/**/*.md", []string{"/docs/a.md", "/docs/x/b.md"}},
		{"**/docs/*.md", []string{"/docs/a.md", "/src/docs/c.md"}},
		{"docs/*", []string{"/docs/a.md", "/docs/a.txt"}},
		{"{**/*.md,/docs/*}", []string{"/a.md", "/docs/a.md", "/docs/x/b.md", "/src/docs/c.md", "/docs/a.txt"}},
	}
	for _, tt := range tests {
		g, err := CompileGlob(tt.pattern, "/")
		if err != nil {
			t.Fatalf("CompileGlob(%q): %v", tt.pattern, err)
		}
		var got []string
		for _, p := range all {
			if g.Match(p) {
				got = append(got, p)
			}
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("glob %q matches %q, want %q", tt.pattern, got, tt.want)
		}
	}
}

func TestGlobPrefix(t *testing.T) {
	tests := []struct{ pattern, dir, want string }{
		{"/src/**/*.go", "/", "/src/"},
		{"/src/a/b.go", "/", "/src/a/"},
		{"/a.go", "/", "/"},
		{"/*", "/", "/"},
		{"/src/**", "/", "/src/"},
		{"/src/x*/y", "/", "/src/"},
		{"/src/x?/y", "/x/", "/src/"},
		{"*.go", "/", "/"},
		{"*.go", "/src/", "/src/"},
		{"*.go", "/src/lib", "/src/lib/"},
		{"a/b/*.go", "/src/", "/src/a/b/"},
		{"{src/a,lib}/*.go", "/", "/"},
		{"{src/a,lib}/*.go", "/p/", "/p/"},
		{"{src/a,src/b}/*.go", "/", "/src/"},
		{"/src/{a,b}/c.go", "/", "/src/"},
		{"/src/{a/x,a/y}/c.go", "/", "/src/a/"},
		{"/{src}/c.go", "/", "/src/"},
		{"/ab{c,d}/e", "/", "/"},
		{"/a\\*b/c", "/", "/a*b/"},
		{"/文档/*.md", "/", "/文档/"},
		{"/docs/*.md", "/other/", "/docs/"},
		{"**/x", "/d/", "/d/"},
		{"/a/[b]/c", "/", "/a/"},
		{"/a/[b/c", "/", "/a/[b/"},
		{"*", "/a[b]/", "/a[b]/"},
	}
	for _, tt := range tests {
		g, err := CompileGlob(tt.pattern, tt.dir)
		if err != nil {
			t.Errorf("CompileGlob(%q, %q): %v", tt.pattern, tt.dir, err)
			continue
		}
		if got := g.Prefix(); got != tt.want {
			t.Errorf("CompileGlob(%q, %q).Prefix() = %q, want %q", tt.pattern, tt.dir, got, tt.want)
		}
	}
}

func TestGlobErrors(t *testing.T) {
	tests := []struct{ pattern, dir, err string }{
		{"", "/", `glob pattern "" is empty`},
		{"/", "/", "names a directory"},
		{"src/", "/", "names a directory"},
		{"/a/.", "/", "names a directory"},
		{".", "/", "names a directory"},
		{"/{a/,b}", "/", "names a directory"},
		{"/a/../b", "/", `".." segment`},
		{"..", "/", `".." segment`},
		{"/{..,a}/b", "/", `".." segment`},
		{"/[z-a]", "/", "backwards range"},
		{"/a\x00", "/", "NUL"},
		{"/a\nb", "/", "NUL, CR or LF"},
		{strings.Repeat("{a,b}", 8) + "{a,b,c}", "/", "more than 256 alternatives"},
		{strings.Repeat("{a,b}", 100), "/", "more than 256 alternatives"},
		{"/" + strings.Repeat("a", maxPattern), "/", "too long"},
		{"*", "rel", `path "rel" is not absolute`},
		{"*", "/a/../b", `path "/a/../b" has a ".." segment`},
	}
	for _, tt := range tests {
		g, err := CompileGlob(tt.pattern, tt.dir)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("CompileGlob(%q, %q) = %v, %v; want an error with %q", tt.pattern, tt.dir, g, err, tt.err)
		}
	}
	// exactly 256 expansions is fine
	if _, err := CompileGlob(strings.Repeat("{a,b}", 8), "/"); err != nil {
		t.Errorf("256 expansions: %v", err)
	}
}

func TestGlobLinear(t *testing.T) {
	// Patterns that make naive backtracking exponential.
	g, err := CompileGlob("/"+strings.Repeat("*a", 30)+"*b", "/")
	if err != nil {
		t.Fatal(err)
	}
	if g.Match("/" + strings.Repeat("a", 1000)) {
		t.Error("matched")
	}
	g, err = CompileGlob(strings.Repeat("**/a/", 30)+"b", "/")
	if err != nil {
		t.Fatal(err)
	}
	if g.Match("/" + strings.Repeat("a/", 500) + "c") {
		t.Error("matched")
	}
}

func BenchmarkGlobMatch(b *testing.B) {
	g, err := CompileGlob("/src/**/*.{go,md}", "/")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		g.Match("/src/internal/files/glob_test.go")
	}
}
