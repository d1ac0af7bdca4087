package files

import (
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	long := "/" + strings.Repeat("a", MaxPath-1) // exactly MaxPath bytes
	tests := []struct {
		in, want string
		err      string // substring of the error; "" means success
	}{
		{"/a", "/a", ""},
		{"/notes.md", "/notes.md", ""},
		{"/a/b/c.txt", "/a/b/c.txt", ""},
		{"/文档/笔记.md", "/文档/笔记.md", ""},
		{"/my docs/a file.txt", "/my docs/a file.txt", ""},
		{"/ leading and trailing ", "/ leading and trailing ", ""},
		{"/.hidden", "/.hidden", ""},
		{"/a/.b/..c/c..", "/a/.b/..c/c..", ""},
		{"/...", "/...", ""},
		{"/a.b.c", "/a.b.c", ""},
		{"//a/./b", "/a/b", ""},
		{"/a//b", "/a/b", ""},
		{"///a", "/a", ""},
		{"/./a", "/a", ""},
		{"/a/././b", "/a/b", ""},
		{"/a%b:c", "/a%b:c", ""},
		{"/tab\there", "/tab\there", ""},
		{"/\xff", "/\xff", ""}, // bytes are not checked for UTF-8
		{long, long, ""},
		{"/" + strings.Repeat("a", MaxPath), "", "too long"},
		{"//" + strings.Repeat("a", MaxPath-1), "/" + strings.Repeat("a", MaxPath-1), ""}, // measured after cleaning
		{"/" + strings.Repeat("a/", MaxPath), "", "too long"},
		{"", "", "empty"},
		{"a.txt", "", `path "a.txt" is not absolute (start it with /)`},
		{"./a", "", "not absolute"},
		{"文档/a", "", "not absolute"},
		{"/a/../b", "", `".." segment`},
		{"/..", "", `".." segment`},
		{"/a/..", "", `".." segment`},
		{"/../a", "", `".." segment`},
		{"/a/", "", "names a directory"},
		{"/a/b//", "", "names a directory"},
		{"/a/.", "", "names a directory"},
		{"/", "", "root"},
		{"//", "", "root"},
		{"/.", "", "root"},
		{"/./", "", "root"},
		{"/a\x00b", "", "NUL"},
		{"/a\rb", "", "carriage return"},
		{"/a\nb", "", "line feed"},
		{"/a\r\n", "", "carriage return"},
	}
	for _, tt := range tests {
		got, err := Clean(tt.in)
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("Clean(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "path ") {
			t.Errorf("Clean(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.err)
		}
	}
}

func TestCleanErrorQuote(t *testing.T) {
	_, err := Clean("/" + strings.Repeat("x", 1999))
	if err == nil {
		t.Fatal("no error")
	}
	want := `path "/` + strings.Repeat("x", 63) + `"... is too long (2000 bytes, at most 1024)`
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestCleanNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = Clean("/a/b/文档.md") }); n != 0 {
		t.Errorf("Clean of a clean path allocates %v times", n)
	}
}

func TestCleanDir(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"/", "/", ""},
		{"//", "/", ""},
		{"/.", "/", ""},
		{"/a", "/a/", ""},
		{"/a/", "/a/", ""},
		{"/a//", "/a/", ""},
		{"/a/./b/.", "/a/b/", ""},
		{"//a/./b", "/a/b/", ""},
		{"/文档", "/文档/", ""},
		{"/my docs/", "/my docs/", ""},
		{"", "", "empty"},
		{"a", "", "not absolute"},
		{"a/", "", "not absolute"},
		{"/a/../", "", `".."`},
		{"/a\n", "", "line feed"},
		{"/" + strings.Repeat("d", MaxPath), "", "too long"},
	}
	for _, tt := range tests {
		got, err := CleanDir(tt.in)
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("CleanDir(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "path ") {
			t.Errorf("CleanDir(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.err)
		}
	}
}

func TestKeyPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/a/b.txt", "/a/b.txt"},
		{"/a:b", "/a%3Ab"},
		{"/100%", "/100%25"},
		{"/%3A", "/%253A"},
		{"/::%%", "/%3A%3A%25%25"},
		{"/x:v1:chunk:0", "/x%3Av1%3Achunk%3A0"},
		{"/文档:笔记", "/文档%3A笔记"},
	}
	for _, tt := range tests {
		if got := KeyPath(tt.in); got != tt.want {
			t.Errorf("KeyPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = KeyPath("/a/b/c.txt") }); n != 0 {
		t.Errorf("KeyPath without escapes allocates %v times", n)
	}
}

func TestCountLines(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"a\n", 1},
		{"a\nb", 2},
		{"a\nb\n", 2},
		{"\n", 1},
		{"\n\n", 2},
		{"\n\nx", 3},
		{"a\r\nb\r\n", 2},
		{"a\r\nb", 2},
		{"\r", 1},
		{"a\rb", 1},
		{"文档\n笔记", 2},
		{"\x00\n\x00", 2},
	}
	for _, tt := range tests {
		if got := CountLines([]byte(tt.in)); got != tt.want {
			t.Errorf("CountLines(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if got := CountLines(nil); got != 0 {
		t.Errorf("CountLines(nil) = %d", got)
	}
}
