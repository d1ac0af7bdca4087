// Package files holds the path, glob and line helpers behind agentproxy's
// FILE.* commands (docs/FILES.md). It has no dependencies outside the
// standard library and does no I/O.
package files

import (
	"bytes"
	"fmt"
	"strings"
)

// MaxPath is the longest path, in bytes, that Clean and CleanDir accept.
const MaxPath = 1024

// Clean validates and normalises a file path. The path must be absolute,
// at most MaxPath bytes long once cleaned, free of NUL, CR
// and LF, and have no ".." segment. Repeated "/" and "." segments are
// removed ("//a/./b" is "/a/b"). A path whose last segment is empty or "."
// ("/a/", "/a/.") names a directory and is an error, as is the root "/".
//
// Errors start with "path " and name the rule that was broken.
func Clean(p string) (string, error) {
	out, err := clean(p)
	if err != nil {
		return "", err
	}
	if last := p[strings.LastIndexByte(p, '/')+1:]; last == "" || last == "." {
		if out == "/" {
			return "", fmt.Errorf("path %s is the root directory, not a file", quote(p))
		}
		return "", fmt.Errorf("path %s names a directory (remove the trailing /)", quote(p))
	}
	return out, nil
}

// CleanDir is Clean for directory arguments: the trailing "/" is optional
// and the result always ends in exactly one "/" ("/" for the root).
func CleanDir(p string) (string, error) {
	out, err := clean(p)
	if err != nil {
		return "", err
	}
	if out == "/" {
		return out, nil
	}
	return out + "/", nil
}

// clean checks the rules shared by Clean and CleanDir and returns p
// without empty, "." and trailing segments ("/" when nothing is left).
// It returns p itself, without allocating, when p is already clean.
func clean(p string) (string, error) {
	out, err := cleanRaw(p)
	if err == nil && len(out) > MaxPath {
		return "", fmt.Errorf("path %s is too long (%d bytes, at most %d)", quote(p), len(out), MaxPath)
	}
	return out, err
}

// cleanRaw is clean without the final length check; the input is bounded
// at a few times MaxPath so that cleaning stays cheap.
func cleanRaw(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf(`path "" is empty`)
	case len(p) > 4*MaxPath:
		return "", fmt.Errorf("path %s is too long (%d bytes, at most %d)", quote(p), len(p), MaxPath)
	case strings.IndexByte(p, 0) >= 0:
		return "", fmt.Errorf("path %s contains a NUL byte", quote(p))
	case strings.IndexByte(p, '\r') >= 0:
		return "", fmt.Errorf("path %s contains a carriage return (CR)", quote(p))
	case strings.IndexByte(p, '\n') >= 0:
		return "", fmt.Errorf("path %s contains a line feed (LF)", quote(p))
	case p[0] != '/':
		return "", fmt.Errorf("path %s is not absolute (start it with /)", quote(p))
	}
	dirty := false
	for seg := range strings.SplitSeq(p[1:], "/") {
		switch seg {
		case "..":
			return "", fmt.Errorf(`path %s has a ".." segment`, quote(p))
		case "", ".":
			dirty = true
		}
	}
	if !dirty {
		return p, nil
	}
	var b strings.Builder
	b.Grow(len(p))
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg != "" && seg != "." {
			b.WriteByte('/')
			b.WriteString(seg)
		}
	}
	if b.Len() == 0 {
		return "/", nil
	}
	return b.String(), nil
}

// quote formats p for an error message: Go-quoted, cut to 64 bytes.
func quote(p string) string {
	if len(p) > 64 {
		return fmt.Sprintf("%q...", p[:64])
	}
	return fmt.Sprintf("%q", p)
}

// KeyPath escapes a cleaned path for use inside a Redis key name: '%'
// becomes "%25" and ':' becomes "%3A", so a path can never spell another
// file's chunk key. It returns p itself when nothing needs escaping.
func KeyPath(p string) string {
	if !strings.ContainsAny(p, "%:") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p) + 8)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%':
			b.WriteString("%25")
		case ':':
			b.WriteString("%3A")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// CountLines counts the lines of b as FILE.READ does: a line ends at '\n'
// (so CRLF is one break), a last line without '\n' is still a line, and
// empty content has no lines.
func CountLines(b []byte) int {
	n := bytes.Count(b, []byte{'\n'})
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	return n
}
