package tests

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

func flCases() []flCase {
	five := "l1\nl2\nl3\nl4\nl5\n"
	var b300 strings.Builder
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&b300, "line %03d\n", i)
	}
	lines300 := b300.String()
	x2500 := strings.Repeat("x\n", 2500)
	txt := flText(1000, 1) // 16 chunks of 64, the last one 40 bytes
	bin := make([]byte, 512)
	for i := range bin {
		bin[i] = byte(i)
	}
	all256 := string(bin)
	long := "/" + strings.Repeat("p", 1023) // 1024 bytes: the longest path

	glob := [][]string{
		flW("/g/a.py", "a"), flW("/g/b.py", "b"), flW("/g/c.txt", "c"), flW("/g/sub/d.py", "d"),
		flW("/g/sub/deep/e.py", "e"), flW("/g/.hidden.py", "h"), flW("/g/x1.md", "1"), flW("/g/x2.md", "2"),
		flW("/g/xa.md", "a"), flW("/g/sub/f.go", "f"),
		flW("/g-x/z.py", "n"), flW("/g.py", "n"), flW("/g0/y.py", "n"), // neighbours of /g/ in sort order
	}
	allPy := []string{"/g/.hidden.py", "/g/a.py", "/g/b.py", "/g/sub/d.py", "/g/sub/deep/e.py"}
	line1 := strings.Repeat("x", 60) + "needle across"                      // needle at bytes 60..65: crosses 64
	line2 := strings.Repeat("y", 150) + "needle" + strings.Repeat("z", 100) // spans four chunks
	grep := [][]string{
		flW("/gr/a.txt", "alpha\nneedle one\nbeta\nneedle two\n"),
		flW("/gr/b.md", "needle in md\n"),
		flW("/gr/bin.dat", "\xff\xfe needle\n\x00\n"),
		flW("/gr/long.txt", line1+"\n"+line2+"\nlast line\n"),
		flW("/gr/sub/c.txt", "no match\nxx needle\n"),
	}
	gr := func(path string, line int, text string) []any {
		return []any{"path", path, "line", line, "text", text}
	}
	ls := func(path, typ string, size int) []any {
		mod := any(flPos)
		if typ == "dir" {
			mod = 0
		}
		return []any{"path", path, "type", typ, "size", size, "modified_at", mod}
	}
	wrec := func(path string, version int, content string) flCheck {
		return flRecord("path", path, "version", version, "size", len(content), "sha1", flSHA1(content))
	}
	read := func(path, content string, total, start, end, next, version int) flCheck {
		return flRecord("path", path, "content", content, "total_lines", total, "start_line", start,
			"end_line", end, "next_offset", next, "version", version)
	}
	edgeC := strings.Repeat("a", 62) + "MARK" + strings.Repeat("b", 34) // MARK crosses the first chunk boundary
	edgeNew := strings.Repeat("a", 62) + "<a longer replacement that moves every later byte>" + strings.Repeat("b", 34)
	app1, app2 := flText(100, 3), flText(100, 4)

	return []flCase{
		// write / get round trips
		{name: "write creates", cmd: flW("/rt/a.txt", "hello\nworld\n"),
			want: flAll(wrec("/rt/a.txt", 1, "hello\nworld\n"), flThen(flBulk("hello\nworld\n"), "FILE.GET", "/rt/a.txt"))},
		{name: "overwrite bumps the version", setup: [][]string{flW("/rt/b.txt", "v1")}, cmd: flW("/rt/b.txt", "version two"),
			want: flAll(wrec("/rt/b.txt", 2, "version two"), flThen(flBulk("version two"), "FILE.GET", "/rt/b.txt"))},
		{name: "multi-chunk round trip", setup: [][]string{flW("/rt/big.txt", txt)}, cmd: []string{"FILE.GET", "/rt/big.txt"}, want: flBulk(txt)},
		{name: "shrinking overwrite drops old chunks", setup: [][]string{flW("/rt/shrink.txt", txt), flW("/rt/shrink.txt", "short")},
			cmd: []string{"FILE.GET", "/rt/shrink.txt"}, want: flBulk("short")},
		{name: "get missing", cmd: []string{"FILE.GET", "/rt/missing.txt"}, want: flNil()},
		{name: "empty content", cmd: flW("/rt/empty.txt", ""),
			want: flAll(wrec("/rt/empty.txt", 1, ""), flThen(flBulk(""), "FILE.GET", "/rt/empty.txt"))},

		// read: offset / limit math
		{name: "read whole", setup: [][]string{flW("/r/five.txt", five)}, cmd: []string{"FILE.READ", "/r/five.txt"},
			want: read("/r/five.txt", five, 5, 1, 5, -1, 1)},
		{name: "read middle", cmd: []string{"FILE.READ", "/r/five.txt", "OFFSET", "1", "LIMIT", "2"},
			want: read("/r/five.txt", "l2\nl3\n", 5, 2, 3, 3, 1)},
		{name: "read up to the last line", cmd: []string{"FILE.READ", "/r/five.txt", "OFFSET", "3", "LIMIT", "2"},
			want: read("/r/five.txt", "l4\nl5\n", 5, 4, 5, -1, 1)},
		{name: "read limit past the end", cmd: []string{"FILE.READ", "/r/five.txt", "OFFSET", "4", "LIMIT", "100"},
			want: read("/r/five.txt", "l5\n", 5, 5, 5, -1, 1)},
		{name: "read limit only", cmd: []string{"FILE.READ", "/r/five.txt", "LIMIT", "1"},
			want: read("/r/five.txt", "l1\n", 5, 1, 1, 1, 1)},
		{name: "read offset at the end", cmd: []string{"FILE.READ", "/r/five.txt", "OFFSET", "5"},
			want: flRaw("-ERR offset 5 is past the end of /r/five.txt (5 lines)\r\n")},
		{name: "read offset far past the end", cmd: []string{"FILE.READ", "/r/five.txt", "OFFSET", "99", "LIMIT", "1"},
			want: flRaw("-ERR offset 99 is past the end of /r/five.txt (5 lines)\r\n")},
		{name: "read empty file", setup: [][]string{flW("/r/empty.txt", "")}, cmd: []string{"FILE.READ", "/r/empty.txt"},
			// start_line / end_line of an empty read: the contract's formulas
			// give 1 and 0; only content, total_lines and next_offset are pinned.
			want: flRecord("path", "/r/empty.txt", "content", "", "total_lines", 0, "start_line", flAnyV,
				"end_line", flAnyV, "next_offset", -1, "version", 1)},
		{name: "read no trailing newline", setup: [][]string{flW("/r/nonl.txt", "a\nb\nc")},
			cmd: []string{"FILE.READ", "/r/nonl.txt", "OFFSET", "2"}, want: read("/r/nonl.txt", "c", 3, 3, 3, -1, 1)},
		{name: "read CRLF stays CRLF", setup: [][]string{flW("/r/crlf.txt", "a\r\nb\r\nc\r\n")},
			cmd: []string{"FILE.READ", "/r/crlf.txt", "OFFSET", "1", "LIMIT", "1"}, want: read("/r/crlf.txt", "b\r\n", 3, 2, 2, 2, 1)},
		{name: "read lines across chunks", setup: [][]string{flW("/r/300.txt", lines300)},
			cmd:  []string{"FILE.READ", "/r/300.txt", "OFFSET", "100", "LIMIT", "50"},
			want: read("/r/300.txt", lines300[100*9:150*9], 300, 101, 150, 150, 1)},
		{name: "read default limit 2000", setup: [][]string{flW("/r/2500.txt", x2500)}, cmd: []string{"FILE.READ", "/r/2500.txt"},
			want: read("/r/2500.txt", x2500[:4000], 2500, 1, 2000, 2000, 1)},
		{name: "read limit 1000000", cmd: []string{"FILE.READ", "/r/2500.txt", "OFFSET", "2000", "LIMIT", "1000000"},
			want: read("/r/2500.txt", x2500[4000:], 2500, 2001, 2500, -1, 1)},
		{name: "read limit 0", cmd: []string{"FILE.READ", "/r/five.txt", "LIMIT", "0"}, want: flErr("ERR ")},
		{name: "read limit over 1000000", cmd: []string{"FILE.READ", "/r/five.txt", "LIMIT", "1000001"}, want: flErr("ERR ")},
		{name: "read negative offset", cmd: []string{"FILE.READ", "/r/five.txt", "OFFSET", "-1"}, want: flErr("ERR ")},
		{name: "read bad limit", cmd: []string{"FILE.READ", "/r/five.txt", "LIMIT", "x"}, want: flErr("ERR ")},
		{name: "read missing", cmd: []string{"FILE.READ", "/r/missing.txt"}, want: flNil()},

		// binary content, GETRANGE
		{name: "binary round trip", setup: [][]string{flW("/bin/all.bin", all256)}, cmd: []string{"FILE.GET", "/bin/all.bin"}, want: flBulk(all256)},
		{name: "binary getrange", cmd: []string{"FILE.GETRANGE", "/bin/all.bin", "0", "255"}, want: flBulk(all256[:256])},
		{name: "binary getrange tail", cmd: []string{"FILE.GETRANGE", "/bin/all.bin", "250", "300"}, want: flBulk(all256[250:301])},
		{name: "getrange across chunks", setup: [][]string{flW("/gr-range/t.txt", txt)},
			cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "60", "200"}, want: flBulk(txt[60:201])},
		{name: "getrange one byte at a boundary", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "64", "64"}, want: flBulk(txt[64:65])},
		{name: "getrange negative", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "-10", "-1"}, want: flBulk(txt[990:])},
		{name: "getrange negative across chunks", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "-100", "-30"}, want: flBulk(txt[900:971])},
		{name: "getrange start before 0", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "-100000", "10"}, want: flBulk(txt[:11])},
		{name: "getrange end past size", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "990", "5000"}, want: flBulk(txt[990:])},
		{name: "getrange whole", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "0", "-1"}, want: flBulk(txt)},
		{name: "getrange start after end", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "10", "5"}, want: flBulk("")},
		{name: "getrange start past size", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "2000", "3000"}, want: flBulk("")},
		{name: "getrange exact chunk multiple", setup: [][]string{flW("/gr-range/128", txt[:128])}, cmd: []string{"FILE.GETRANGE", "/gr-range/128", "63", "64"},
			want: flAll(flBulk(txt[63:65]), flThen(flBulk(txt[64:128]), "FILE.GETRANGE", "/gr-range/128", "64", "-1"))},
		{name: "getrange empty file", setup: [][]string{flW("/gr-range/empty", "")}, cmd: []string{"FILE.GETRANGE", "/gr-range/empty", "0", "-1"}, want: flBulk("")},
		{name: "getrange missing", cmd: []string{"FILE.GETRANGE", "/gr-range/missing", "0", "10"}, want: flNil()},
		{name: "getrange not a number", cmd: []string{"FILE.GETRANGE", "/gr-range/t.txt", "a", "10"}, want: flErr("ERR ")},

		// unicode and the key escapes
		{name: "unicode path", cmd: flW("/ünï/文件 名.md", "héllo ✓\n"),
			want: flAll(wrec("/ünï/文件 名.md", 1, "héllo ✓\n"), flThen(flBulk("héllo ✓\n"), "FILE.GET", "/ünï/文件 名.md"))},
		{name: "unicode path listed", cmd: []string{"FILE.LS", "/ünï/"}, want: flRecords(ls("/ünï/文件 名.md", "file", len("héllo ✓\n")))},
		{name: "colon and percent never alias", setup: [][]string{flW("/pc/a:b", "colon"), flW("/pc/a%3Ab", "escaped"), flW("/pc/a%253Ab", "double")},
			cmd: []string{"FILE.GET", "/pc/a:b"},
			want: flAll(flBulk("colon"), flThen(flBulk("escaped"), "FILE.GET", "/pc/a%3Ab"), flThen(flBulk("double"), "FILE.GET", "/pc/a%253Ab"),
				flThen(flStrings("/pc/a%253Ab", "/pc/a%3Ab", "/pc/a:b"), "FILE.GLOB", "/pc/*"))},

		// stat
		{name: "stat file", setup: [][]string{flW("/s/f.txt", "a\nb\n")}, cmd: []string{"FILE.STAT", "/s/f.txt"},
			want: flRecord("path", "/s/f.txt", "type", "file", "version", 1, "size", 4, "sha1", flSHA1("a\nb\n"), "lines", 2,
				"encoding", flStr, "chunks", 1, "chunk_size", flChunk, "created_at", flPos, "modified_at", flPos)},
		{name: "stat multi-chunk", setup: [][]string{flW("/s/big.txt", lines300), flW("/s/big.txt", lines300)}, cmd: []string{"FILE.STAT", "/s/big.txt"},
			want: flRecord("path", "/s/big.txt", "type", "file", "version", 2, "size", 2700, "sha1", flSHA1(lines300), "lines", 300,
				"encoding", flStr, "chunks", 43, "chunk_size", flChunk, "created_at", flPos, "modified_at", flPos)},
		{name: "stat binary encoding differs", setup: [][]string{flW("/s/b.bin", all256)}, cmd: []string{"FILE.STAT", "/s/b.bin"},
			want: func(t *testing.T, e *flEnv, got []byte) {
				t.Helper()
				enc := flField(t, got, "encoding")
				text := flField(t, e.c.Do("FILE.STAT", "/s/f.txt"), "encoding")
				t.Logf("%s: encoding of text %q, of binary %q", e.name, text, enc)
				if enc == text {
					t.Fatalf("binary and text files both have encoding %q", enc)
				}
				if n, _ := flInt(flField(t, got, "chunks")); n != 8 {
					t.Fatalf("chunks %d, want 8", n)
				}
			}},
		{name: "stat times", cmd: []string{"FILE.STAT", "/s/big.txt"},
			want: func(t *testing.T, e *flEnv, got []byte) {
				t.Helper()
				c, _ := flInt(flField(t, got, "created_at"))
				m, _ := flInt(flField(t, got, "modified_at"))
				if m < c {
					t.Fatalf("modified_at %d before created_at %d", m, c)
				}
			}},
		{name: "stat exact chunk multiple", setup: [][]string{flW("/s/128.txt", txt[:128])}, cmd: []string{"FILE.STAT", "/s/128.txt"},
			want: func(t *testing.T, e *flEnv, got []byte) {
				t.Helper()
				if n, _ := flInt(flField(t, got, "chunks")); n != 2 {
					t.Fatalf("chunks %d, want 2", n)
				}
			}},
		{name: "stat empty file", setup: [][]string{flW("/s/empty.txt", "")}, cmd: []string{"FILE.STAT", "/s/empty.txt"},
			want: flRecord("path", "/s/empty.txt", "type", "file", "version", 1, "size", 0, "sha1", flSHA1(""), "lines", 0,
				"encoding", flStr, "chunks", flAnyV, "chunk_size", flChunk, "created_at", flPos, "modified_at", flPos)},
		{name: "stat directory", cmd: []string{"FILE.STAT", "/s"}, want: flRaw("*4\r\n$4\r\npath\r\n$3\r\n/s/\r\n$4\r\ntype\r\n$3\r\ndir\r\n")},
		{name: "stat missing", cmd: []string{"FILE.STAT", "/s/missing"}, want: flNil()},

		// ls
		{name: "ls direct children sorted", setup: [][]string{flW("/ls/b.txt", "bb"), flW("/ls/a.txt", "a"), flW("/ls/sub/x.txt", "x"),
			flW("/ls/sub/deep/y.txt", "y"), flW("/ls/c/z", "z"), flW("/ls-x/n", "n"), flW("/ls.txt", "n"), flW("/ls0/n", "n")},
			cmd:  []string{"FILE.LS", "/ls/"},
			want: flRecords(ls("/ls/a.txt", "file", 1), ls("/ls/b.txt", "file", 2), ls("/ls/c/", "dir", 0), ls("/ls/sub/", "dir", 0))},
		{name: "ls without trailing slash", cmd: []string{"FILE.LS", "/ls"},
			want: flRecords(ls("/ls/a.txt", "file", 1), ls("/ls/b.txt", "file", 2), ls("/ls/c/", "dir", 0), ls("/ls/sub/", "dir", 0))},
		{name: "ls nested", cmd: []string{"FILE.LS", "/ls/sub"}, want: flRecords(ls("/ls/sub/deep/", "dir", 0), ls("/ls/sub/x.txt", "file", 1))},
		{name: "ls missing directory", cmd: []string{"FILE.LS", "/ls/none/"}, want: flEmptyList()},
		{name: "ls root", cmd: []string{"FILE.LS", "/"}, want: func(t *testing.T, e *flEnv, got []byte) {
			t.Helper()
			arr, ok := lkMust(t, got).([]any)
			if !ok {
				t.Fatalf("not an array: %.200q", got)
			}
			var paths []string
			for _, r := range arr {
				pairs, _ := flPairs(r)
				p := fmt.Sprint(pairs[1])
				if strings.Count(strings.TrimSuffix(p, "/"), "/") != 1 {
					t.Fatalf("LS / lists a grandchild %q", p)
				}
				paths = append(paths, p)
			}
			if !slices.Contains(paths, "/ls/") {
				t.Fatalf("LS / misses /ls/: %q", paths)
			}
			for i := 1; i < len(paths); i++ {
				if paths[i-1] >= paths[i] {
					t.Fatalf("LS / not sorted: %q", paths)
				}
			}
		}},

		// glob
		{name: "glob base name at any depth", setup: glob, cmd: []string{"FILE.GLOB", "*.py", "PATH", "/g"}, want: flStrings(allPy...)},
		{name: "glob absolute", cmd: []string{"FILE.GLOB", "/g/*.py"}, want: flStrings("/g/.hidden.py", "/g/a.py", "/g/b.py")},
		{name: "glob double star", cmd: []string{"FILE.GLOB", "**/*.py", "PATH", "/g/"}, want: flStrings(allPy...)},
		{name: "glob trailing double star", cmd: []string{"FILE.GLOB", "/g/sub/**"}, want: flStrings("/g/sub/d.py", "/g/sub/deep/e.py", "/g/sub/f.go")},
		{name: "glob question mark", cmd: []string{"FILE.GLOB", "x?.md", "PATH", "/g"}, want: flStrings("/g/x1.md", "/g/x2.md", "/g/xa.md")},
		{name: "glob question mark leading dot", cmd: []string{"FILE.GLOB", "/g/?hidden.py"}, want: flStrings("/g/.hidden.py")},
		{name: "glob one character at any depth", cmd: []string{"FILE.GLOB", "?.py", "PATH", "/g"}, want: flStrings("/g/a.py", "/g/b.py", "/g/sub/d.py", "/g/sub/deep/e.py")},
		{name: "glob class range", cmd: []string{"FILE.GLOB", "x[0-9].md", "PATH", "/g"}, want: flStrings("/g/x1.md", "/g/x2.md")},
		{name: "glob negated class !", cmd: []string{"FILE.GLOB", "x[!0-9].md", "PATH", "/g"}, want: flStrings("/g/xa.md")},
		{name: "glob negated class ^", cmd: []string{"FILE.GLOB", "x[^12].md", "PATH", "/g"}, want: flStrings("/g/xa.md")},
		{name: "glob class set", cmd: []string{"FILE.GLOB", "/g/[ab].py"}, want: flStrings("/g/a.py", "/g/b.py")},
		{name: "glob alternatives", cmd: []string{"FILE.GLOB", "*.{py,go}", "PATH", "/g/sub"}, want: flStrings("/g/sub/d.py", "/g/sub/deep/e.py", "/g/sub/f.go")},
		{name: "glob nested alternatives", cmd: []string{"FILE.GLOB", "{x{1,a},b}.*", "PATH", "/g"}, want: flStrings("/g/b.py", "/g/x1.md", "/g/xa.md")},
		{name: "glob overlapping alternatives once", cmd: []string{"FILE.GLOB", "{*.py,a.*}", "PATH", "/g"}, want: flStrings(allPy...)},
		{name: "glob relative with slash", cmd: []string{"FILE.GLOB", "sub/*", "PATH", "/g"}, want: flStrings("/g/sub/d.py", "/g/sub/f.go")},
		{name: "glob neighbours outside PATH", cmd: []string{"FILE.GLOB", "**", "PATH", "/g"},
			want: flStrings("/g/.hidden.py", "/g/a.py", "/g/b.py", "/g/c.txt", "/g/sub/d.py", "/g/sub/deep/e.py", "/g/sub/f.go", "/g/x1.md", "/g/x2.md", "/g/xa.md")},
		{name: "glob unicode question mark", setup: [][]string{flW("/gu/文件 名.md", "u")}, cmd: []string{"FILE.GLOB", "/gu/?件?名.md"},
			want: flStrings("/gu/文件 名.md")},
		{name: "glob absolute pattern ignores PATH", cmd: []string{"FILE.GLOB", "/g/x1.*", "PATH", "/g/sub"}, want: flStrings("/g/x1.md")},
		{name: "glob no match", cmd: []string{"FILE.GLOB", "*.rs", "PATH", "/g"}, want: flRaw("*0\r\n")},

		// grep
		{name: "grep literal in a dir", setup: grep, cmd: []string{"FILE.GREP", "needle", "PATH", "/gr"},
			want: flRecords(gr("/gr/a.txt", 2, "needle one"), gr("/gr/a.txt", 4, "needle two"), gr("/gr/b.md", 1, "needle in md"),
				gr("/gr/long.txt", 1, line1), gr("/gr/long.txt", 2, line2), gr("/gr/sub/c.txt", 2, "xx needle"))},
		{name: "grep with glob", cmd: []string{"FILE.GREP", "needle", "PATH", "/gr/", "GLOB", "*.txt"},
			want: flRecords(gr("/gr/a.txt", 2, "needle one"), gr("/gr/a.txt", 4, "needle two"),
				gr("/gr/long.txt", 1, line1), gr("/gr/long.txt", 2, line2), gr("/gr/sub/c.txt", 2, "xx needle"))},
		{name: "grep glob relative to path", cmd: []string{"FILE.GREP", "needle", "PATH", "/gr", "GLOB", "sub/*"},
			want: flRecords(gr("/gr/sub/c.txt", 2, "xx needle"))},
		{name: "grep maxcount", cmd: []string{"FILE.GREP", "needle", "PATH", "/gr", "MAXCOUNT", "2"},
			want: flRecords(gr("/gr/a.txt", 2, "needle one"), gr("/gr/a.txt", 4, "needle two"))},
		{name: "grep is literal", setup: [][]string{flW("/gr2/r.txt", "abc\na.c\n[x]*\n")}, cmd: []string{"FILE.GREP", "a.c", "PATH", "/gr2"},
			want: flRecords(gr("/gr2/r.txt", 2, "a.c"))},
		{name: "grep regex metacharacters", cmd: []string{"FILE.GREP", "[x]*", "PATH", "/gr2"}, want: flRecords(gr("/gr2/r.txt", 3, "[x]*"))},
		{name: "grep CRLF text has no terminator", setup: [][]string{flW("/gr3/crlf.txt", "first\r\nneedle crlf\r\nlast")},
			cmd: []string{"FILE.GREP", "needle", "PATH", "/gr3"}, want: flRecords(gr("/gr3/crlf.txt", 2, "needle crlf"))},
		{name: "grep no match", cmd: []string{"FILE.GREP", "haystack-only", "PATH", "/gr"}, want: flRaw("*0\r\n")},

		// edit
		{name: "edit one match", setup: [][]string{flW("/e/a.txt", "one two three\n")}, cmd: []string{"FILE.EDIT", "/e/a.txt", "two", "2"},
			want: flAll(flRecord("path", "/e/a.txt", "version", 2, "size", 12, "sha1", flSHA1("one 2 three\n"), "replacements", 1),
				flThen(flBulk("one 2 three\n"), "FILE.GET", "/e/a.txt"))},
		{name: "edit no match", cmd: []string{"FILE.EDIT", "/e/a.txt", "four", "4"},
			want: flRaw("-ERR no match for the old string in /e/a.txt\r\n")},
		{name: "edit several matches", setup: [][]string{flW("/e/m.txt", "ab ab ab\n")}, cmd: []string{"FILE.EDIT", "/e/m.txt", "ab", "X"},
			want: flRaw("-ERR the old string occurs 3 times in /e/m.txt; pass REPLACEALL or include more context\r\n")},
		{name: "edit replaceall", cmd: []string{"FILE.EDIT", "/e/m.txt", "ab", "X", "REPLACEALL"},
			want: flAll(flRecord("path", "/e/m.txt", "version", 2, "size", 6, "sha1", flSHA1("X X X\n"), "replacements", 3),
				flThen(flBulk("X X X\n"), "FILE.GET", "/e/m.txt"))},
		{name: "edit across a chunk boundary", setup: [][]string{flW("/e/c.txt", edgeC)},
			cmd: []string{"FILE.EDIT", "/e/c.txt", "MARK", "<a longer replacement that moves every later byte>"},
			want: flAll(flRecord("path", "/e/c.txt", "version", 2, "size", len(edgeNew), "sha1", flSHA1(edgeNew), "replacements", 1),
				flThen(flBulk(edgeNew), "FILE.GET", "/e/c.txt"))},
		{name: "edit replaceall when new contains old", setup: [][]string{flW("/e/grow.txt", "a-a")},
			cmd:  []string{"FILE.EDIT", "/e/grow.txt", "a", "aa", "REPLACEALL"},
			want: flAll(flRecord("path", "/e/grow.txt", "version", 2, "size", 5, "sha1", flSHA1("aa-aa"), "replacements", 2), flThen(flBulk("aa-aa"), "FILE.GET", "/e/grow.txt"))},
		{name: "edit to empty content", setup: [][]string{flW("/e/gone.txt", "all")}, cmd: []string{"FILE.EDIT", "/e/gone.txt", "all", ""},
			want: flAll(flRecord("path", "/e/gone.txt", "version", 2, "size", 0, "sha1", flSHA1(""), "replacements", 1), flThen(flBulk(""), "FILE.GET", "/e/gone.txt"))},
		{name: "edit empty old string", cmd: []string{"FILE.EDIT", "/e/a.txt", "", "x"}, want: flErr("ERR ")},
		{name: "edit missing file", cmd: []string{"FILE.EDIT", "/e/missing.txt", "a", "b"}, want: flErrOrNil(), ev: flN(0)},

		// append
		{name: "append creates", cmd: []string{"FILE.APPEND", "/ap/new.txt", "abc"}, want: wrec("/ap/new.txt", 1, "abc")},
		{name: "append extends", setup: [][]string{flW("/ap/x.txt", app1)}, cmd: []string{"FILE.APPEND", "/ap/x.txt", app2},
			want: flAll(wrec("/ap/x.txt", 2, app1+app2), flThen(flBulk(app1+app2), "FILE.GET", "/ap/x.txt"))},

		// del
		{name: "del file", setup: [][]string{flW("/d1/f", "x")}, cmd: []string{"FILE.DEL", "/d1/f"},
			want: flAll(flInteger(1), flThen(flNil(), "FILE.GET", "/d1/f"), flThen(flNil(), "FILE.STAT", "/d1"))},
		{name: "del missing", cmd: []string{"FILE.DEL", "/d1/missing"}, want: flInteger(0)},
		{name: "del directory needs RECURSIVE", setup: [][]string{flW("/d2/a", "a"), flW("/d2/b", "b"), flW("/d2/s/c", "c")},
			cmd: []string{"FILE.DEL", "/d2"}, want: flAll(flErr("ERR /d2"), flErrHas("is a directory"))}, // the contract spells "/a", the proxy "/d2/"
		{name: "del recursive", cmd: []string{"FILE.DEL", "/d2", "RECURSIVE"},
			want: flAll(flInteger(3), flThen(flEmptyList(), "FILE.LS", "/d2"), flThen(flRaw("*0\r\n"), "FILE.GLOB", "/d2/**"))},
		{name: "del recursive trailing slash", setup: [][]string{flW("/d3/a", "a"), flW("/d3/b/c", "c"), flW("/d3x", "keep")},
			cmd: []string{"FILE.DEL", "/d3/", "RECURSIVE"}, want: flAll(flInteger(2), flThen(flBulk("keep"), "FILE.GET", "/d3x"))},

		// IFVERSION
		{name: "ifversion 0 creates", cmd: flW("/iv/a", "x", "IFVERSION", "0"), want: wrec("/iv/a", 1, "x")},
		{name: "ifversion 0 on an existing file", setup: [][]string{flW("/iv/b", "1")}, cmd: flW("/iv/b", "x", "IFVERSION", "0"),
			want: flErr("CONFLICT version is 1, not 0")},
		{name: "ifversion stale", setup: [][]string{flW("/iv/c", "1"), flW("/iv/c", "2")}, cmd: flW("/iv/c", "x", "IFVERSION", "1"),
			want: flErr("CONFLICT version is 2, not 1")},
		{name: "ifversion current", setup: [][]string{flW("/iv/d", "1")}, cmd: flW("/iv/d", "x", "IFVERSION", "1"), want: wrec("/iv/d", 2, "x")},
		{name: "edit ifversion stale", setup: [][]string{flW("/iv/e", "abc"), flW("/iv/e", "abc")},
			cmd: []string{"FILE.EDIT", "/iv/e", "b", "B", "IFVERSION", "1"}, want: flErr("CONFLICT version is 2, not 1")},
		{name: "edit ifversion current", cmd: []string{"FILE.EDIT", "/iv/e", "b", "B", "IFVERSION", "2"},
			want: flRecord("path", "/iv/e", "version", 3, "size", 3, "sha1", flSHA1("aBc"), "replacements", 1)},
		{name: "append ifversion stale", setup: [][]string{flW("/iv/f", "a")}, cmd: []string{"FILE.APPEND", "/iv/f", "b", "IFVERSION", "7"},
			want: flErr("CONFLICT version is 1, not 7")},
		{name: "del ifversion stale", setup: [][]string{flW("/iv/g", "a")}, cmd: []string{"FILE.DEL", "/iv/g", "IFVERSION", "3"},
			want: flErr("CONFLICT version is 1, not 3")},
		{name: "ifversion on a missing file", cmd: flW("/iv/h", "x", "IFVERSION", "4"), want: flErr("CONFLICT ")},
		{name: "ifversion not a number", cmd: flW("/iv/i", "x", "IFVERSION", "x"), want: flErr("ERR ")},

		// bad paths
		{name: "relative path", cmd: flW("a.txt", "x"), want: flErr("ERR path")},
		{name: "empty path", cmd: flW("", "x"), want: flErr("ERR path")},
		{name: "dot-dot segment", cmd: flW("/a/../b.txt", "x"), want: flErr("ERR path")},
		{name: "dot-dot at the root", cmd: flW("/../b.txt", "x"), want: flErr("ERR path")},
		{name: "NUL in path", cmd: flW("/a\x00b", "x"), want: flErr("ERR path")},
		{name: "CR in path", cmd: flW("/a\rb", "x"), want: flErr("ERR path")},
		{name: "LF in path", cmd: []string{"FILE.GET", "/a\nb"}, want: flErr("ERR path")},
		{name: "path too long", cmd: flW(long+"p", "x"), want: flErr("ERR path")},
		{name: "path of 1024 bytes", cmd: flW(long, "x"), want: wrec(long, 1, "x")},
		{name: "relative GET", cmd: []string{"FILE.GET", "rel.txt"}, want: flErr("ERR path")},
		{name: "relative READ", cmd: []string{"FILE.READ", "rel.txt"}, want: flErr("ERR path")},
		{name: "relative STAT", cmd: []string{"FILE.STAT", "rel.txt"}, want: flErr("ERR path")},
		{name: "relative GETRANGE", cmd: []string{"FILE.GETRANGE", "rel.txt", "0", "1"}, want: flErr("ERR path")},
		{name: "relative APPEND", cmd: []string{"FILE.APPEND", "rel.txt", "x"}, want: flErr("ERR path")},
		{name: "relative EDIT", cmd: []string{"FILE.EDIT", "rel.txt", "a", "b"}, want: flErr("ERR path")},
		{name: "relative DEL", cmd: []string{"FILE.DEL", "rel.txt"}, want: flErr("ERR path")},
		{name: "relative LS", cmd: []string{"FILE.LS", "rel/"}, want: flErr("ERR path")},
		{name: "relative GLOB PATH", cmd: []string{"FILE.GLOB", "*", "PATH", "rel"}, want: flErr("ERR path")},
		{name: "relative GREP PATH", cmd: []string{"FILE.GREP", "x", "PATH", "rel"}, want: flErr("ERR path")},
		{name: "relative BEGIN", cmd: []string{"FILE.BEGIN", "rel.txt"}, want: flErr("ERR path")},
		{name: "dot-dot in LS", cmd: []string{"FILE.LS", "/a/../"}, want: flErr("ERR path")},
		{name: "trailing slash on a file command", cmd: flW("/tr/x/", "x"), want: flErr("ERR ")},
		{name: "path cleaned", cmd: flW("//cl/./x.txt", "clean"),
			want: flAll(wrec("/cl/x.txt", 1, "clean"), flThen(flBulk("clean"), "FILE.GET", "/cl//x.txt"))},
		{name: "dots inside a name are fine", cmd: flW("/dots/..b", "d"), want: wrec("/dots/..b", 1, "d")},

		// file / directory clashes
		{name: "file under a file", setup: [][]string{flW("/cl/f", "x")}, cmd: flW("/cl/f/g", "y"), want: flErr("ERR /cl/f is a file")},
		{name: "file over a directory", setup: [][]string{flW("/cl/d/x", "x")}, cmd: flW("/cl/d", "y"), want: flErr("ERR /cl/d is a directory")},
		{name: "append over a directory", cmd: []string{"FILE.APPEND", "/cl/d", "y"}, want: flErr("ERR /cl/d is a directory")},
		{name: "deep file under a file", cmd: flW("/cl/f/g/h", "y"), want: flErr("ERR /cl/f is a file")},
	}
}

// TestFilesSemantics is the table of FILE.* cases (issue acceptance 1).
func TestFilesSemantics(t *testing.T) {
	cases := flCases()
	t.Logf("%d cases per backend", len(cases))
	flBackends(t, flChunk, func(t *testing.T, b lkBackend) {
		e := &flEnv{name: b.name, c: testutil.Dial(t, b.addr), aux: testutil.Dial(t, b.addr)}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { e.run(t, tc) })
		}
	})
}

// TestFilesFence: a file's lock resource is files:<path>; while another
// connection holds it, writes without its token are LOCKED, stale tokens
// FENCED, the holder's token (given or applied by the proxy) passes.
func TestFilesFence(t *testing.T) {
	flBackends(t, flChunk, func(t *testing.T, b lkBackend) {
		e := &flEnv{name: b.name, c: testutil.Dial(t, b.addr), aux: testutil.Dial(t, b.addr)}
		holder := testutil.Dial(t, b.addr)
		const res = "files:/lk/x.txt"
		ok := func(c *testutil.Conn, args ...string) {
			t.Helper()
			before := e.xlen(t)
			if got := c.DoS(args...); got[0] == '-' {
				t.Fatalf("%q: %q", args, got)
			}
			if n := e.xlen(t) - before; n != 1 {
				t.Fatalf("%q: event log grew by %d, want 1", args, n)
			}
		}
		refused := func(prefix string, args ...string) {
			t.Helper()
			before, content := e.xlen(t), e.aux.DoS("FILE.STAT", "/lk/x.txt")
			got := e.c.DoS(args...)
			if !strings.HasPrefix(got, "-"+prefix) {
				t.Fatalf("%q: %q, want %q...", args, got, prefix)
			}
			if e.xlen(t) != before || e.aux.DoS("FILE.STAT", "/lk/x.txt") != content {
				t.Fatalf("%q refused but something changed", args)
			}
		}
		ok(e.c, flW("/lk/x.txt", "v1\n")...)
		t1 := lkAcquire(t, holder, res, 60000)
		holder.Do("LOCK.RELEASE", res, strconv.FormatInt(t1, 10))
		t2 := lkAcquire(t, holder, res, 60000, "OWNER", "alice")
		s1, s2 := strconv.FormatInt(t1, 10), strconv.FormatInt(t2, 10)

		refused("LOCKED ", flW("/lk/x.txt", "v2\n")...)
		refused("LOCKED ", "FILE.APPEND", "/lk/x.txt", "more")
		refused("LOCKED ", "FILE.EDIT", "/lk/x.txt", "v1", "v2")
		refused("LOCKED ", "FILE.DEL", "/lk/x.txt")
		refused("FENCED ", flW("/lk/x.txt", "v2\n", "FENCE", s1)...)
		refused("FENCED ", "FILE.EDIT", "/lk/x.txt", "v1", "v2", "FENCE", s1)
		refused("FENCED ", flW("/lk/x.txt", "v2\n", "FENCE", "999")...)
		if got := e.c.DoS("FILE.GET", "/lk/x.txt"); got != "$3\r\nv1\n\r\n" {
			t.Fatalf("content after refused writes: %q", got)
		}
		// An upload to the locked path is refused at BEGIN or at COMMIT.
		if got := e.c.DoS("FILE.BEGIN", "/lk/x.txt"); strings.HasPrefix(got, "-") {
			lkWantPrefix(t, "BEGIN on a locked file", []byte(got), "-LOCKED ")
		} else {
			id, _ := lkMust(t, []byte(got)).(string)
			e.c.Do("FILE.CHUNK", id, "0", "up")
			refused("LOCKED ", "FILE.COMMIT", id)
		}
		// Other files are not locked.
		ok(e.c, flW("/lk/y.txt", "free")...)
		// The holder's token, given explicitly or applied by the proxy.
		ok(e.c, flW("/lk/x.txt", "v2\n", "FENCE", s2)...)
		ok(e.c, "FILE.EDIT", "/lk/x.txt", "v2", "v3", "FENCE", s2)
		ok(holder, "FILE.APPEND", "/lk/x.txt", "h")
		ok(holder, flW("/lk/x.txt", "v4\n")...)
		if got := e.c.DoS("FILE.GET", "/lk/x.txt"); got != "$3\r\nv4\n\r\n" {
			t.Fatalf("content after fenced writes: %q", got)
		}
		// Released: the token is stale, plain writes pass again.
		holder.Do("LOCK.RELEASE", res, s2)
		refused("FENCED ", flW("/lk/x.txt", "v5\n", "FENCE", s2)...)
		ok(e.c, flW("/lk/x.txt", "v5\n")...)
		ok(e.c, "FILE.DEL", "/lk/x.txt")
	})
}

// TestFilesUpload: FILE.BEGIN / CHUNK / COMMIT / ABORT with parts that do
// not line up with the 64-byte storage chunks.
func TestFilesUpload(t *testing.T) {
	flBackends(t, flChunk, func(t *testing.T, b lkBackend) {
		e := &flEnv{name: b.name, c: testutil.Dial(t, b.addr), aux: testutil.Dial(t, b.addr)}
		c, c2 := e.c, testutil.Dial(t, b.addr)
		begin := func(args ...string) string {
			t.Helper()
			got := c.Do(append([]string{"FILE.BEGIN"}, args...)...)
			id, ok := lkMust(t, got).(string)
			if !ok || id == "" {
				t.Fatalf("FILE.BEGIN %q: %q", args, got)
			}
			return id
		}
		want := func(what string, got []byte, chk flCheck) {
			t.Helper()
			t.Run(what, func(t *testing.T) { chk(t, e, got) })
		}
		parts := []string{flText(100, 10), flText(37, 11), flText(300, 12), flText(1, 13), flText(64, 14)}
		whole := strings.Join(parts, "")
		id := begin("/up/f.txt")
		n := 0
		for i, p := range parts {
			n += len(p)
			conn := c
			if i == 1 {
				conn = c2 // the id works from any connection to this proxy
			}
			want(fmt.Sprintf("chunk %d", i), conn.Do("FILE.CHUNK", id, strconv.Itoa(i), p), flInteger(n))
		}
		want("not visible before COMMIT", e.aux.Do("FILE.GET", "/up/f.txt"), flNil())
		before := e.xlen(t)
		want("commit", c.Do("FILE.COMMIT", id, "SHA1", flSHA1(whole)), flRecord("path", "/up/f.txt", "version", 1, "size", len(whole), "sha1", flSHA1(whole)))
		if n := e.xlen(t) - before; n != 1 {
			t.Errorf("COMMIT: event log grew by %d, want 1", n)
		} else {
			ev := e.lastEvent(t)
			t.Logf("%s: COMMIT event type %q cmd %q", b.name, ev.Type, ev.Cmd)
			if ev.Version == nil || *ev.Version != 1 {
				t.Errorf("COMMIT event version %v, want 1", ev.Version)
			}
		}
		want("content", c.Do("FILE.GET", "/up/f.txt"), flBulk(whole))
		want("stat", c.Do("FILE.STAT", "/up/f.txt"), flRecord("path", "/up/f.txt", "type", "file", "version", 1, "size", len(whole),
			"sha1", flSHA1(whole), "lines", flAnyV, "encoding", flStr, "chunks", (len(whole)+flChunk-1)/flChunk,
			"chunk_size", flChunk, "created_at", flPos, "modified_at", flPos))
		want("commit again", c.Do("FILE.COMMIT", id), flErr(""))

		// An upload over an existing file, no SHA1: a new version.
		id = begin("/up/f.txt", "IFVERSION", "1")
		want("chunk", c.Do("FILE.CHUNK", id, "0", "replaced\n"), flInteger(9))
		want("commit over", c.Do("FILE.COMMIT", id), flRecord("path", "/up/f.txt", "version", 2, "size", 9, "sha1", flSHA1("replaced\n")))
		want("content over", c.Do("FILE.GET", "/up/f.txt"), flBulk("replaced\n"))

		// An empty upload.
		id = begin("/up/empty.txt")
		want("commit empty", c.Do("FILE.COMMIT", id, "SHA1", flSHA1("")), flRecord("path", "/up/empty.txt", "version", 1, "size", 0, "sha1", flSHA1("")))

		// SHA1 mismatch: refused, nothing written.
		id = begin("/up/bad.txt")
		want("chunk", c.Do("FILE.CHUNK", id, "0", whole), flInteger(len(whole)))
		before = e.xlen(t)
		want("sha1 mismatch", c.Do("FILE.COMMIT", id, "SHA1", flSHA1(whole+"x")), flErr("ERR "))
		want("sha1 mismatch writes nothing", c.Do("FILE.GET", "/up/bad.txt"), flNil())
		if e.xlen(t) != before {
			t.Errorf("refused COMMIT logged an event")
		}
		id = begin("/up/bad2.txt")
		want("sha1 not hex", c.Do("FILE.COMMIT", id, "SHA1", "xyz"), flErr("ERR "))

		// Chunks out of order, each on its own upload.
		id = begin("/up/order1.txt")
		want("first chunk is 1", c.Do("FILE.CHUNK", id, "1", "abc"), flErr("ERR "))
		id = begin("/up/order2.txt")
		want("chunk 0", c.Do("FILE.CHUNK", id, "0", "abc"), flInteger(3))
		want("chunk 2 after 0", c.Do("FILE.CHUNK", id, "2", "def"), flErr("ERR "))
		id = begin("/up/order3.txt")
		want("negative chunk", c.Do("FILE.CHUNK", id, "-1", "def"), flErr("ERR "))
		id = begin("/up/order4.txt")
		c.Do("FILE.CHUNK", id, "0", "abc")
		t.Logf("%s: chunk 0 sent twice: %q; then chunk 1: %q; COMMIT: %.200q", b.name,
			c.Do("FILE.CHUNK", id, "0", "abc"), c.Do("FILE.CHUNK", id, "1", "def"), c.Do("FILE.COMMIT", id))

		// ABORT.
		id = begin("/up/aborted.txt")
		want("chunk", c.Do("FILE.CHUNK", id, "0", "abc"), flInteger(3))
		want("abort", c.Do("FILE.ABORT", id), flRaw("+OK\r\n"))
		want("chunk after abort", c.Do("FILE.CHUNK", id, "1", "def"), flErr(""))
		want("commit after abort", c.Do("FILE.COMMIT", id), flErr(""))
		want("nothing written", c.Do("FILE.GET", "/up/aborted.txt"), flNil())
		want("unknown id", c.Do("FILE.CHUNK", "no-such-upload", "0", "x"), flErr(""))
		t.Logf("%s: ABORT of an unknown id: %q", b.name, c.Do("FILE.ABORT", "no-such-upload"))

		// IFVERSION 0 on an existing file: CONFLICT at BEGIN or at COMMIT.
		got := c.Do("FILE.BEGIN", "/up/f.txt", "IFVERSION", "0")
		if got[0] != '-' {
			id, _ := lkMust(t, got).(string)
			c.Do("FILE.CHUNK", id, "0", "x")
			got = c.Do("FILE.COMMIT", id)
		}
		want("create-only upload over a file", got, flErr("CONFLICT version is 2, not 0"))
		want("still version 2", c.Do("FILE.GET", "/up/f.txt"), flBulk("replaced\n"))
	})
}

// TestFilesRESP3: records are maps, nil is '_', lists are arrays of maps.
func TestFilesRESP3(t *testing.T) {
	flBackends(t, flChunk, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		e := &flEnv{name: b.name, c: c, aux: testutil.Dial(t, b.addr)}
		if got := c.Do("HELLO", "3"); got[0] != '%' {
			t.Fatalf("HELLO 3: %q", got)
		}
		prefix := func(what string, got []byte, p string) {
			t.Helper()
			if !strings.HasPrefix(string(got), p) {
				t.Errorf("%s: %.300q, want prefix %q", what, got, p)
			}
		}
		content := "one\ntwo needle\n" + flText(100, 20)
		w := c.Do(flW("/r3/a.txt", content)...)
		prefix("WRITE", w, "%4\r\n$4\r\npath\r\n")
		flRecord("path", "/r3/a.txt", "version", 1, "size", len(content), "sha1", flSHA1(content))(t, e, w)
		r := c.Do("FILE.READ", "/r3/a.txt", "LIMIT", "1")
		prefix("READ", r, "%7\r\n")
		flRecord("path", "/r3/a.txt", "content", "one\n", "total_lines", flLines(content), "start_line", 1,
			"end_line", 1, "next_offset", 1, "version", 1)(t, e, r)
		prefix("STAT", c.Do("FILE.STAT", "/r3/a.txt"), "%11\r\n$4\r\npath\r\n")
		flRaw("%2\r\n$4\r\npath\r\n$4\r\n/r3/\r\n$4\r\ntype\r\n$3\r\ndir\r\n")(t, e, c.Do("FILE.STAT", "/r3"))
		flRaw("_\r\n")(t, e, c.Do("FILE.GET", "/r3/none"))
		flRaw("_\r\n")(t, e, c.Do("FILE.READ", "/r3/none"))
		flRaw("_\r\n")(t, e, c.Do("FILE.STAT", "/r3/none"))
		flRaw("_\r\n")(t, e, c.Do("FILE.GETRANGE", "/r3/none", "0", "1"))
		ed := c.Do("FILE.EDIT", "/r3/a.txt", "one", "ONE")
		prefix("EDIT", ed, "%5\r\n")
		ap := c.Do("FILE.APPEND", "/r3/b.txt", "x")
		prefix("APPEND", ap, "%4\r\n")
		prefix("LS", c.Do("FILE.LS", "/r3"), "*2\r\n%4\r\n$4\r\npath\r\n$9\r\n/r3/a.txt\r\n")
		flRecords([]any{"path", "/r3/a.txt", "type", "file", "size", len(content), "modified_at", flPos},
			[]any{"path", "/r3/b.txt", "type", "file", "size", 1, "modified_at", flPos})(t, e, c.Do("FILE.LS", "/r3"))
		g := c.Do("FILE.GREP", "needle", "PATH", "/r3")
		prefix("GREP", g, "*1\r\n%3\r\n")
		flRecords([]any{"path", "/r3/a.txt", "line", 2, "text", "two needle"})(t, e, g)
		flRaw("*2\r\n$9\r\n/r3/a.txt\r\n$9\r\n/r3/b.txt\r\n")(t, e, c.Do("FILE.GLOB", "*.txt", "PATH", "/r3"))
		id, _ := lkMust(t, c.Do("FILE.BEGIN", "/r3/up.txt")).(string)
		flInteger(2)(t, e, c.Do("FILE.CHUNK", id, "0", "up"))
		prefix("COMMIT", c.Do("FILE.COMMIT", id), "%4\r\n")
		flInteger(1)(t, e, c.Do("FILE.DEL", "/r3/b.txt"))
		flErr("CONFLICT version is 2, not 0")(t, e, c.Do(flW("/r3/a.txt", "x", "IFVERSION", "0")...))
	})
}

// TestFilesStorage checks the key layout of docs/FILES.md "Storage": one
// generation of chunks per file, never expiring once committed, old
// generations deleted by the write that replaces them, staged upload
// chunks with a TTL, ':' and '%' escaped, nothing left after a delete.
func TestFilesStorage(t *testing.T) {
	flBackends(t, flChunk, func(t *testing.T, b lkBackend) {
		c := testutil.Dial(t, b.addr)
		const pre = "deepagents:{default}:files:"
		keys := func(pattern string) []string {
			t.Helper()
			var out []string
			cur := "0"
			for {
				v, ok := lkMust(t, c.Do("SCAN", cur, "MATCH", pattern, "COUNT", "1000")).([]any)
				if !ok || len(v) != 2 {
					t.Fatalf("SCAN %s: %v", pattern, v)
				}
				for _, k := range v[1].([]any) {
					out = append(out, k.(string))
				}
				if cur = v[0].(string); cur == "0" {
					break
				}
			}
			slices.Sort(out)
			return slices.Compact(out)
		}
		pttl := func(k string) int64 {
			t.Helper()
			n, _ := lkMust(t, c.Do("PTTL", k)).(int64)
			return n
		}
		chunks := func(path string, want int, ttl bool) {
			t.Helper()
			ks := keys(pre + path + ":v*")
			if len(ks) != want {
				t.Fatalf("%s: %d chunk keys, want %d: %q", path, len(ks), want, ks)
			}
			gens := map[string]bool{}
			for _, k := range ks {
				if !strings.Contains(k, ":chunk:") {
					t.Fatalf("unexpected key %q", k)
				}
				gens[k[:strings.Index(k, ":chunk:")]] = true
				if p := pttl(k); (p > 0) != ttl || (!ttl && p != -1) {
					t.Fatalf("%s: PTTL %d (want a TTL: %v)", k, p, ttl)
				}
			}
			if len(gens) > 1 {
				t.Fatalf("%s: chunks of %d generations: %q", path, len(gens), ks)
			}
		}
		ok := func(args ...string) []byte {
			t.Helper()
			got := c.Do(args...)
			if got[0] == '-' {
				t.Fatalf("%.80q: %q", args, got)
			}
			return got
		}
		txt := flText(1000, 1)
		ok(flW("/st/a.txt", txt)...)
		chunks("/st/a.txt", 16, false)
		if got := pttl(pre + "/st/a.txt"); got != -1 {
			t.Fatalf("metadata hash PTTL %d", got)
		}
		meta := lkFields(t, c.Do("HGETALL", pre+"/st/a.txt"))
		for f, want := range map[string]int64{"version": 1, "size": 1000, "chunks": 16, "chunk_size": flChunk} {
			if n, _ := flInt(meta[f]); n != want {
				t.Errorf("metadata %s = %v, want %d (%v)", f, meta[f], want, meta)
			}
		}
		ok(flW("/st/a.txt", "short")...)
		chunks("/st/a.txt", 1, false)
		ok("FILE.APPEND", "/st/a.txt", txt[:200])
		chunks("/st/a.txt", 4, false)
		ok("FILE.EDIT", "/st/a.txt", "short", "")
		chunks("/st/a.txt", 4, false) // 200 bytes
		if got := c.DoS("ZSCORE", pre+"#index", "/st/a.txt"); got != "$1\r\n0\r\n" {
			t.Errorf("ZSCORE #index /st/a.txt: %q", got)
		}

		// Staged upload chunks expire; committed ones do not.
		id, _ := lkMust(t, ok("FILE.BEGIN", "/st/up.txt")).(string)
		ok("FILE.CHUNK", id, "0", txt[:200])
		staged := keys(pre + "/st/up.txt:v*")
		if len(staged) < 3 {
			t.Errorf("%d staged chunk keys for 200 bytes: %q", len(staged), staged)
		}
		for _, k := range staged {
			if p := pttl(k); p <= 0 {
				t.Errorf("staged chunk %s: PTTL %d, want a TTL", k, p)
			}
		}
		ok("FILE.COMMIT", id)
		chunks("/st/up.txt", 4, false)
		id, _ = lkMust(t, ok("FILE.BEGIN", "/st/ab.txt")).(string)
		ok("FILE.CHUNK", id, "0", txt[:200])
		ok("FILE.ABORT", id)
		for _, k := range keys(pre + "/st/ab.txt*") {
			if p := pttl(k); p <= 0 {
				t.Errorf("aborted upload left %s without a TTL (PTTL %d)", k, p)
			}
		}
		t.Logf("%s: keys left by an aborted upload: %q", b.name, keys(pre+"/st/ab.txt*"))

		// Escapes: ':' and '%' of a path.
		ok(flW("/st/x:y%z", "e")...)
		if got := c.DoS("EXISTS", pre+"/st/x%3Ay%25z"); got != ":1\r\n" {
			t.Errorf("metadata key of /st/x:y%%z: EXISTS %q; keys %q", got, keys(pre+"/st/x*"))
		}

		// Delete: nothing left, not even in the index.
		ok("FILE.DEL", "/st/a.txt")
		if ks := keys(pre + "/st/a.txt*"); len(ks) != 0 {
			t.Errorf("keys left after FILE.DEL: %q", ks)
		}
		if got := c.DoS("ZSCORE", pre+"#index", "/st/a.txt"); got != "$-1\r\n" {
			t.Errorf("ZSCORE #index after delete: %q", got)
		}
		ok("FILE.DEL", "/st", "RECURSIVE")
		if ks := keys(pre + "/st*"); len(ks) != 0 {
			t.Errorf("keys left after FILE.DEL RECURSIVE: %q", ks)
		}
	})
}
