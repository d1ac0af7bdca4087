package upstream

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// scanResult is what a Framer makes of a byte stream: the end offset of each
// complete frame, whether each was a push, how many bytes it consumed, and
// the error that stopped it.
type scanResult struct {
	ends     []int
	pushes   []bool
	consumed int
	err      error
}

// scanChunks drives f the way a connection reader does: bytes arrive in
// chunks, consumed bytes are dropped, and the unconsumed tail of a partial
// line is offered again in front of the next chunk. It returns the frame
// boundaries as offsets in the concatenated input.
func scanChunks(f *Framer, chunks ...[]byte) scanResult {
	var res scanResult
	var buf []byte // unconsumed bytes, starting at offset res.consumed
	for _, c := range chunks {
		buf = append(buf, c...)
		for len(buf) > 0 {
			// Offer exactly len(buf) bytes with junk in the spare capacity:
			// the framer must never look past len.
			in := append(make([]byte, 0, len(buf)+8), buf...)
			in = append(in, "!!!!!!!!"...)[:len(buf)]
			n, done, err := f.Scan(in)
			if n < 0 || n > len(buf) {
				panic("Scan consumed " + strconv.Itoa(n) + " of " + strconv.Itoa(len(buf)) + " bytes")
			}
			res.consumed += n
			buf = buf[n:]
			if err != nil {
				res.err = err
				return res
			}
			if done {
				if n == 0 {
					panic("Scan completed a frame without consuming a byte")
				}
				res.ends = append(res.ends, res.consumed)
				res.pushes = append(res.pushes, f.Push())
				continue
			}
			break // the framer needs more bytes
		}
	}
	return res
}

// splitSizes returns b cut into pieces of the given sizes (the last piece
// takes the rest).
func splitSizes(b []byte, sizes func() int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := sizes()
		if n > len(b) {
			n = len(b)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func sameResult(a, b scanResult) bool {
	if (a.err == nil) != (b.err == nil) {
		return false
	}
	if len(a.ends) != len(b.ends) {
		return false
	}
	for i := range a.ends {
		if a.ends[i] != b.ends[i] || a.pushes[i] != b.pushes[i] {
			return false
		}
	}
	// After an error the consumed count may differ (a split run may have
	// consumed part of the bad frame); without one it must not.
	return a.err != nil || a.consumed == b.consumed
}

// validFrames are complete replies as Redis 7 sends them, one per entry.
var validFrames = []struct {
	name  string
	frame string
	push  bool
}{
	// RESP2
	{"simple string", "+OK\r\n", false},
	{"empty simple string", "+\r\n", false},
	{"error", "-ERR unknown command 'foo', with args beginning with: \r\n", false},
	{"error code only", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", false},
	{"integer", ":1000\r\n", false},
	{"negative integer", ":-42\r\n", false},
	{"bulk", "$5\r\nhello\r\n", false},
	{"empty bulk", "$0\r\n\r\n", false},
	{"bulk holding CRLF", "$6\r\n\r\n\r\n\r\n\r\n", false},
	{"bulk holding a frame", "$5\r\n+OK\r\n\r\n", false},
	{"binary bulk", "$4\r\n\x00\xff\r\x01\r\n", false},
	{"null bulk", "$-1\r\n", false},
	{"empty array", "*0\r\n", false},
	{"null array", "*-1\r\n", false},
	{"array", "*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n", false},
	{"mixed array", "*5\r\n:1\r\n:2\r\n+three\r\n$-1\r\n-ERR four\r\n", false},
	{"nested array", "*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n", false},
	{"array of empties", "*3\r\n*0\r\n*-1\r\n$0\r\n\r\n", false},
	{"deep nesting", strings.Repeat("*1\r\n", 100) + ":1\r\n", false},
	// RESP3
	{"null", "_\r\n", false},
	{"double", ",3.14159\r\n", false},
	{"double inf", ",-inf\r\n", false},
	{"boolean true", "#t\r\n", false},
	{"boolean false", "#f\r\n", false},
	{"big number", "(3492890328409238509324850943850943825024385\r\n", false},
	{"blob error", "!21\r\nSYNTAX invalid syntax\r\n", false},
	{"verbatim", "=15\r\ntxt:Some string\r\n", false},
	{"map", "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", false},
	{"empty map", "%0\r\n", false},
	{"nested map", "%2\r\n$1\r\na\r\n*2\r\n:1\r\n%1\r\n+x\r\n~1\r\n#t\r\n$1\r\nb\r\n_\r\n", false},
	{"set", "~3\r\n+orange\r\n+apple\r\n#f\r\n", false},
	{"push", ">3\r\n$7\r\nmessage\r\n$7\r\nchannel\r\n$5\r\nhello\r\n", true},
	{"push with nested", ">4\r\n+invalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n:1\r\n_\r\n", true},
	{"attribute before array", "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n", false},
	{"attribute inside array", "*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n", false},
	{"attribute before simple", "|2\r\n+a\r\n:1\r\n+b\r\n:2\r\n+OK\r\n", false},
	{"streamed string", "$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n", false},
	{"streamed string empty", "$?\r\n;0\r\n", false},
	{"streamed string holding CRLF", "$?\r\n;2\r\n\r\n\r\n;3\r\n;0\r\r\n;0\r\n", false},
	{"streamed array", "*?\r\n:1\r\n:2\r\n:3\r\n.\r\n", false},
	{"streamed array empty", "*?\r\n.\r\n", false},
	{"streamed map", "%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n", false},
	{"streamed set", "~?\r\n+a\r\n$1\r\nb\r\n.\r\n", false},
	{"streamed nested", "*?\r\n*?\r\n:1\r\n.\r\n*2\r\n:1\r\n$?\r\n;1\r\nx\r\n;0\r\n%?\r\n.\r\n.\r\n", false},
	{"streamed inside array", "*3\r\n*?\r\n:1\r\n.\r\n$?\r\n;2\r\nab\r\n;0\r\n:2\r\n", false},
	{"streamed with attribute", "*?\r\n|1\r\n+a\r\n+b\r\n:1\r\n.\r\n", false},
}

// invalidFrames are byte strings no Redis sends; the framer must refuse them.
var invalidFrames = []struct {
	name  string
	input string
}{
	{"unknown type", "?\r\n"},
	{"lf without cr", "+OK\n"},
	{"bare crlf", "\r\n"},
	{"bare lf", "\n"},
	{"bulk length not a number", "$abc\r\n"},
	{"bulk length empty", "$\r\n"},
	{"bulk length minus", "$-\r\n"},
	{"bulk length below -1", "$-2\r\n"},
	{"bulk length plus sign", "$+5\r\nhello\r\n"},
	{"bulk length too long", "$1234567890123\r\n"},
	{"bulk missing crlf", "$3\r\nfooXY"},
	{"bulk cr wrong", "$3\r\nfooX\n"},
	{"bulk lf wrong", "$3\r\nfoo\rX"},
	{"bulk followed by lf only", "$3\r\nfoo\n\n"},
	{"array length not a number", "*x\r\n"},
	{"array length below -1", "*-2\r\n"},
	{"bad element", "*2\r\n:1\r\n?\r\n"},
	{"bad nested element", "*1\r\n*1\r\n%1\r\n+a\r\n@\r\n"},
	{"map length bad", "%1x\r\n"},
	{"verbatim length bad", "=x\r\n"},
	{"blob error length bad", "!-5\r\n"},
	{"streamed attribute", "|?\r\n"},
	{"end outside stream", ".\r\n"},
	{"end with content", "*?\r\n.x\r\n"},
	{"end inside array", "*1\r\n.\r\n"},
	{"chunk without semicolon", "$?\r\n+OK\r\n"},
	{"chunk length negative", "$?\r\n;-1\r\n"},
	{"chunk length bad", "$?\r\n;x\r\n"},
	{"chunk data crlf wrong", "$?\r\n;1\r\nxyz"},
	{"streams too deep", strings.Repeat("*?\r\n", maxStreamDepth+1)},
	{"header too long", "*" + strings.Repeat("1", maxLine+1)},
	{"bulk header too long", "*1\r\n$" + strings.Repeat("1", maxLine+1)},
	{"long line without cr", "+" + strings.Repeat("a", maxLine+1) + "\n"},
}

func TestFramerValidFrames(t *testing.T) {
	for _, tc := range validFrames {
		t.Run(tc.name, func(t *testing.T) {
			var f Framer
			n, done, err := f.Scan([]byte(tc.frame))
			if err != nil || !done || n != len(tc.frame) {
				t.Fatalf("Scan(%q) = %d, %v, %v; want %d, true, nil", tc.frame, n, done, err, len(tc.frame))
			}
			if f.Push() != tc.push {
				t.Fatalf("Push() = %v, want %v", f.Push(), tc.push)
			}
			// Followed by another frame, the framer stops exactly at the
			// boundary and then scans the next one.
			next := "+NEXT\r\n"
			in := []byte(tc.frame + next)
			var g Framer
			n, done, err = g.Scan(in)
			if err != nil || !done || n != len(tc.frame) {
				t.Fatalf("Scan with a frame behind = %d, %v, %v; want %d, true, nil", n, done, err, len(tc.frame))
			}
			n, done, err = g.Scan(in[n:])
			if err != nil || !done || n != len(next) || g.Push() {
				t.Fatalf("next frame: %d, %v, %v, push=%v", n, done, err, g.Push())
			}
		})
	}
}

func TestFramerIncompleteFrames(t *testing.T) {
	// Every strict prefix of a valid frame is incomplete, never an error
	// and never a frame.
	for _, tc := range validFrames {
		t.Run(tc.name, func(t *testing.T) {
			for i := 1; i < len(tc.frame); i++ {
				var f Framer
				res := scanChunks(&f, []byte(tc.frame[:i]))
				if res.err != nil || len(res.ends) != 0 {
					t.Fatalf("prefix %q: ends=%v err=%v; want incomplete", tc.frame[:i], res.ends, res.err)
				}
			}
		})
	}
}

func TestFramerInvalid(t *testing.T) {
	for _, tc := range invalidFrames {
		t.Run(tc.name, func(t *testing.T) {
			var f Framer
			res := scanChunks(&f, []byte(tc.input))
			if !errors.Is(res.err, ErrProtocol) {
				t.Fatalf("Scan(%.40q...) = ends %v, err %v; want ErrProtocol", tc.input, res.ends, res.err)
			}
			if len(res.ends) != 0 {
				t.Fatalf("frames reported before the error: %v", res.ends)
			}
		})
	}
}

// TestFramerSplitEverywhere feeds every frame, valid or not, cut at every
// byte position and byte by byte: the framer must reach the same verdict
// and the same boundaries as when it sees the frame whole.
func TestFramerSplitEverywhere(t *testing.T) {
	type input struct{ name, data string }
	var inputs []input
	for _, tc := range validFrames {
		inputs = append(inputs, input{"valid/" + tc.name, tc.frame})
	}
	for _, tc := range invalidFrames {
		if len(tc.input) > 1024 {
			continue // covered below with coarser cuts
		}
		inputs = append(inputs, input{"invalid/" + tc.name, tc.input})
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			data := []byte(in.data)
			var whole Framer
			want := scanChunks(&whole, data)
			for i := 0; i <= len(data); i++ {
				var f Framer
				got := scanChunks(&f, data[:i], data[i:])
				if !sameResult(want, got) {
					t.Fatalf("split at %d: got %+v, whole gave %+v", i, got, want)
				}
			}
			var f Framer
			got := scanChunks(&f, splitSizes(data, func() int { return 1 })...)
			if !sameResult(want, got) {
				t.Fatalf("byte by byte: got %+v, whole gave %+v", got, want)
			}
		})
	}
}

// TestFramerLongLines checks simple lines of any length are accepted however
// they arrive: Redis sends them when a Lua script returns a big status or
// error, and refusing one would break a shared connection for every client.
// They are consumed as they arrive, not buffered.
func TestFramerLongLines(t *testing.T) {
	for _, typ := range []string{"+", "-", "("} {
		for _, n := range []int{maxLine - 3, maxLine - 1, maxLine, maxLine + 1, maxLine + 2, 2 * maxLine, 1 << 20} {
			data := []byte(typ + strings.Repeat("a", n) + "\r\n:1\r\n")
			want := scanResult{ends: []int{len(data) - 4, len(data)}, pushes: []bool{false, false}, consumed: len(data)}
			var whole Framer
			if got := scanChunks(&whole, data); !sameResult(want, got) {
				t.Fatalf("%s line of %d bytes: got ends=%v err=%v", typ, n, got.ends, got.err)
			}
			for _, cut := range []int{1, 2, 1000, maxLine - 1, maxLine, maxLine + 1, maxLine + 2, len(data) - 6, len(data) - 5, len(data) - 4} {
				var f Framer
				if got := scanChunks(&f, data[:cut], data[cut:]); !sameResult(want, got) {
					t.Fatalf("%s line of %d bytes cut at %d: got ends=%v err=%v", typ, n, cut, got.ends, got.err)
				}
			}
			var f Framer
			if got := scanChunks(&f, splitSizes(data, func() int { return 4096 })...); !sameResult(want, got) {
				t.Fatalf("%s line of %d bytes in 4 KB reads: got ends=%v err=%v", typ, n, got.ends, got.err)
			}
		}
	}
	// Consumed as it arrives: each 4 KB piece is taken whole.
	var f Framer
	piece := bytes.Repeat([]byte("x"), 4096)
	piece[0] = '+'
	for i := 0; i < 100; i++ {
		n, done, err := f.Scan(piece)
		if n != len(piece) || done || err != nil {
			t.Fatalf("piece %d: Scan = %d, %v, %v; want the whole piece consumed", i, n, done, err)
		}
		piece[0] = 'x'
	}
	if n, done, err := f.Scan([]byte("\r\n")); n != 2 || !done || err != nil {
		t.Fatalf("line end: Scan = %d, %v, %v", n, done, err)
	}
}

// TestFramerBackToBack scans all valid frames concatenated, whole, cut at
// every position, byte by byte and in random chunks.
func TestFramerBackToBack(t *testing.T) {
	var all []byte
	var wantEnds []int
	var wantPush []bool
	for _, tc := range validFrames {
		all = append(all, tc.frame...)
		wantEnds = append(wantEnds, len(all))
		wantPush = append(wantPush, tc.push)
	}
	want := scanResult{ends: wantEnds, pushes: wantPush, consumed: len(all)}
	check := func(t *testing.T, how string, got scanResult) {
		t.Helper()
		if !sameResult(want, got) {
			t.Fatalf("%s: got ends %v err %v, want %v", how, got.ends, got.err, want.ends)
		}
	}
	var f Framer
	check(t, "whole", scanChunks(&f, all))
	for i := 0; i <= len(all); i++ {
		var f Framer
		check(t, "split at "+strconv.Itoa(i), scanChunks(&f, all[:i], all[i:]))
	}
	f = Framer{}
	check(t, "byte by byte", scanChunks(&f, splitSizes(all, func() int { return 1 })...))
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var f Framer
		check(t, "random chunks", scanChunks(&f, splitSizes(all, func() int { return 1 + rng.IntN(64) })...))
	}
}

// TestFramerStreamsLargeBulk checks a large bulk is handed over in pieces
// as it arrives, with only the header ever offered twice.
func TestFramerStreamsLargeBulk(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 1<<20)
	frame := append([]byte("$"+strconv.Itoa(len(payload))+"\r\n"), payload...)
	frame = append(frame, "\r\n"...)
	var f Framer
	pos := 0
	reads := 0
	for pos < len(frame) {
		end := pos + 32<<10
		if end > len(frame) {
			end = len(frame)
		}
		n, done, err := f.Scan(frame[pos:end])
		if err != nil {
			t.Fatal(err)
		}
		if n != end-pos {
			t.Fatalf("read %d: consumed %d of %d bytes; a bulk payload must be consumed as it arrives", reads, n, end-pos)
		}
		pos += n
		reads++
		if done != (pos == len(frame)) {
			t.Fatalf("done=%v at %d of %d", done, pos, len(frame))
		}
	}
}

func TestFramerPartialLineNotConsumed(t *testing.T) {
	// A header cut before its CRLF is not consumed: the caller offers it
	// again with more bytes behind it.
	var f Framer
	n, done, err := f.Scan([]byte("*2\r\n$1"))
	if err != nil || done || n != 4 {
		t.Fatalf("Scan = %d, %v, %v; want 4, false, nil", n, done, err)
	}
	n, done, err = f.Scan([]byte("$10\r\n0123456789\r\n:1\r\n"))
	if err != nil || !done || n != len("$10\r\n0123456789\r\n:1\r\n") {
		t.Fatalf("resumed Scan = %d, %v, %v", n, done, err)
	}
}

func TestFramerEmptyInput(t *testing.T) {
	var f Framer
	if n, done, err := f.Scan(nil); n != 0 || done || err != nil {
		t.Fatalf("Scan(nil) = %d, %v, %v", n, done, err)
	}
	// Mid-frame, an empty buffer is just "need more".
	f.Scan([]byte("*2\r\n"))
	if n, done, err := f.Scan(nil); n != 0 || done || err != nil {
		t.Fatalf("Scan(nil) mid-frame = %d, %v, %v", n, done, err)
	}
	if n, done, err := f.Scan([]byte(":1\r\n:2\r\n")); n != 8 || !done || err != nil {
		t.Fatalf("Scan after empty = %d, %v, %v", n, done, err)
	}
}

func TestFramerReset(t *testing.T) {
	for _, partial := range []string{"*3\r\n:1\r\n", "$10\r\nabc", "$?\r\n;3\r\nab", "*?\r\n*?\r\n:1\r\n", ">2\r\n+a\r\n"} {
		var f Framer
		if _, done, err := f.Scan([]byte(partial)); done || err != nil {
			t.Fatalf("%q: done=%v err=%v", partial, done, err)
		}
		f.Reset()
		n, done, err := f.Scan([]byte("+OK\r\n"))
		if err != nil || !done || n != 5 || f.Push() {
			t.Fatalf("after Reset from %q: Scan = %d, %v, %v push=%v", partial, n, done, err, f.Push())
		}
	}
}

func TestParseLen(t *testing.T) {
	for _, tc := range []struct {
		in string
		n  int
		ok bool
	}{
		{"0", 0, true}, {"5", 5, true}, {"-1", -1, true}, {"123456789012", 123456789012, true},
		{"", 0, false}, {"-", 0, false}, {"1234567890123", 0, false}, {"1a", 0, false},
		{"+1", 0, false}, {" 1", 0, false}, {"?", 0, false},
	} {
		n, ok := parseLen([]byte(tc.in))
		if n != tc.n || ok != tc.ok {
			t.Errorf("parseLen(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.ok)
		}
	}
}

func BenchmarkFramerArray(b *testing.B) {
	var frame []byte
	frame = append(frame, "*100\r\n"...)
	for i := 0; i < 100; i++ {
		frame = append(frame, "$10\r\n0123456789\r\n"...)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	var f Framer
	for b.Loop() {
		if _, done, err := f.Scan(frame); !done || err != nil {
			b.Fatal(done, err)
		}
	}
}
