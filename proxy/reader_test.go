package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unsafe"
)

// Exact protocol error texts, as Redis words them (checked against
// redis-server 7.0) or as the proxy documents its own limit.
const (
	wantInvalidBulk      = "ERR Protocol error: invalid bulk length"
	wantInvalidMultibulk = "ERR Protocol error: invalid multibulk length"
	wantTooBigInline     = "ERR Protocol error: too big inline request"
	wantUnbalanced       = "ERR Protocol error: unbalanced quotes in request"
	wantTooBigRequest    = "ERR Protocol error: request exceeds the proxy's max_request_bytes (listen.max_request_bytes)"
	wantTooBigMbulk      = "ERR Protocol error: too big mbulk count string"
	wantTooBigBulkCount  = "ERR Protocol error: too big bulk count string"
)

// respOf encodes args as a RESP command, the form every command is
// forwarded in.
func respOf(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

// readResult is everything a reader produced from one stream.
type readResult struct {
	cmds    [][]string // Args of each command, copied
	raws    []string   // Raw of each command, copied
	batches []int      // commands per readBatch call that returned any
	err     error      // the error that ended the stream (io.EOF at a clean end)
	maxBuf  int        // the largest read buffer seen
}

// readAll drains rd through a reader with the given limits, at most max
// commands per batch.
func readAll(t testing.TB, rd io.Reader, max, maxRequest, maxArgs int) readResult {
	t.Helper()
	r := newReader(rd, 16, maxRequest, maxArgs)
	var res readResult
	for calls := 0; ; calls++ {
		if calls > 1<<22 {
			t.Fatalf("reader made no progress after %d calls", calls)
		}
		cmds, err := r.readBatch(max)
		if len(r.buf) > res.maxBuf {
			res.maxBuf = len(r.buf)
		}
		if len(cmds) > max {
			t.Fatalf("batch of %d commands, max %d", len(cmds), max)
		}
		if len(cmds) > 0 {
			res.batches = append(res.batches, len(cmds))
		}
		for _, c := range cmds {
			args := make([]string, len(c.Args))
			for i, a := range c.Args {
				args[i] = string(a)
			}
			res.cmds = append(res.cmds, args)
			res.raws = append(res.raws, string(c.Raw))
		}
		if err != nil {
			res.err = err
			return res
		}
	}
}

// chunkReader returns its data in reads of random sizes from 1 to max.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + c.rng.IntN(c.max)
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// deliveries returns ways to deliver data: whole, a byte at a time, in
// random chunks, and (for short inputs) cut in two at every position.
func deliveries(data []byte) map[string]func() io.Reader {
	d := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(data) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
	}
	for seed := uint64(1); seed <= 5; seed++ {
		d["random chunks "+strconv.FormatUint(seed, 10)] = func() io.Reader {
			return &chunkReader{data: data, rng: rand.New(rand.NewPCG(seed, 99)), max: 1 + int(seed*seed*7)}
		}
	}
	if len(data) <= 2048 {
		for i := 1; i < len(data); i++ {
			d["cut at "+strconv.Itoa(i)] = func() io.Reader {
				return io.MultiReader(bytes.NewReader(data[:i]), bytes.NewReader(data[i:]))
			}
		}
	}
	return d
}

func equalCmds(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

func TestReaderCommands(t *testing.T) {
	big := strings.Repeat("v", 200<<10)
	for _, tc := range []struct {
		name  string
		input string
		want  [][]string
	}{
		{"multibulk", "*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}}},
		{"multibulk args", "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n", [][]string{{"SET", "key", "value"}}},
		{"empty argument", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", [][]string{{"SET", "k", ""}}},
		{"binary argument", "*2\r\n$4\r\nECHO\r\n$6\r\n\r\n\x00\xff\r\n\r\n", [][]string{{"ECHO", "\r\n\x00\xff\r\n"}}},
		{"large argument", respOf("SET", "k", big), [][]string{{"SET", "k", big}}},
		{"inline", "PING\r\n", [][]string{{"PING"}}},
		{"inline lf only", "PING\n", [][]string{{"PING"}}},
		{"inline at the size limit", "ECHO " + strings.Repeat("a", maxInline-6) + "\r\n", [][]string{{"ECHO", strings.Repeat("a", maxInline-6)}}},
		{"inline args and blanks", "  GET\t\tkey   \r\n", [][]string{{"GET", "key"}}},
		{"inline quotes", `set "a b" 'c\'d' "\x41\n"` + "\r\n", [][]string{{"set", "a b", "c'd", "A\n"}}},
		{"inline escapes", `ECHO "\t\r\b\a\\\"\z\x4\x4a\x4B"` + "\r\n", [][]string{{"ECHO", "\t\r\b\a\\\"zx4JK"}}},
		{"inline single quotes keep escapes", `ECHO 'a\nb\\"'` + "\r\n", [][]string{{"ECHO", `a\nb\\"`}}},
		{"inline empty quoted", `ECHO ""` + "\r\n", [][]string{{"ECHO", ""}}},
		{"inline empty single quoted", `ECHO '' x` + "\r\n", [][]string{{"ECHO", "", "x"}}},
		// Redis opens a quote anywhere in a word, not only at its start.
		{"inline quote mid-word", `ECHO a'b c'` + "\r\n", [][]string{{"ECHO", "ab c"}}},
		{"inline double quote mid-word", `SET k ab"cd"` + "\r\n", [][]string{{"SET", "k", "abcd"}}},
		{"inline quote ends word", `ECHO a""` + "\r\n", [][]string{{"ECHO", "a"}}},
		// A word ends at space, tab, CR or LF; \v and \f only separate
		// words where blanks are skipped (sdssplitargs uses isspace there).
		{"inline vertical tab in word", "ECHO a\vb\r\n", [][]string{{"ECHO", "a\vb"}}},
		{"inline form feed in word", "ECHO a\fb\r\n", [][]string{{"ECHO", "a\fb"}}},
		{"inline leading form feed", "\f ECHO \v a\r\n", [][]string{{"ECHO", "a"}}},
		{"inline vertical tab ending word", "ECHO\v a\r\n", [][]string{{"ECHO\v", "a"}}},
		{"inline vertical tab after quote", "ECHO \"a\"\vb\r\n", [][]string{{"ECHO", "a", "b"}}},
		{"inline bare cr", "ECHO a\rb\r\n", [][]string{{"ECHO", "a", "b"}}},
		{"empty lines", "\r\n\n   \r\n\t\nPING\r\n", [][]string{{"PING"}}},
		{"empty multibulks", "*0\r\n*-1\r\n*-5\r\nPING\r\n*0\r\n", [][]string{{"PING"}}},
		{"nothing", "", nil},
		{"pipelined mix", "*1\r\n$4\r\nPING\r\nECHO hi\r\n\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*0\r\nQUIT\n" + respOf("MSET", "a", "1", "b", "2"),
			[][]string{{"PING"}, {"ECHO", "hi"}, {"GET", "k"}, {"QUIT"}, {"MSET", "a", "1", "b", "2"}}},
		{"many inline", strings.Repeat("INCR counter\r\n", 300), func() [][]string {
			var w [][]string
			for i := 0; i < 300; i++ {
				w = append(w, []string{"INCR", "counter"})
			}
			return w
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for how, rd := range deliveries([]byte(tc.input)) {
				res := readAll(t, rd(), 1024, 64<<20, 1<<20)
				if !errors.Is(res.err, io.EOF) {
					t.Fatalf("%s: ended with %v, want EOF", how, res.err)
				}
				if !equalCmds(res.cmds, tc.want) {
					t.Fatalf("%s: got %q, want %q", how, res.cmds, tc.want)
				}
				for i, raw := range res.raws {
					if want := respOf(tc.want[i]...); raw != want {
						t.Fatalf("%s: Raw of command %d = %q, want %q", how, i, raw, want)
					}
				}
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		input      string
		maxRequest int
		maxArgs    int
		before     [][]string // commands answered before the error
		want       string
	}{
		{"bulk length above limit", "*2\r\n$3\r\nSET\r\n$999999999\r\n", 1 << 20, 0, nil, wantInvalidBulk},
		{"bulk length just above limit", "*2\r\n$3\r\nSET\r\n$1048577\r\n", 1 << 20, 0, nil, wantInvalidBulk},
		{"bulk length negative", "*2\r\n$3\r\nGET\r\n$-1\r\n", 0, 0, nil, wantInvalidBulk},
		{"bulk length not a number", "*1\r\n$abc\r\n", 0, 0, nil, wantInvalidBulk},
		{"bulk length empty", "*1\r\n$\r\n", 0, 0, nil, wantInvalidBulk},
		{"bulk length plus sign", "*1\r\n$+4\r\nPING\r\n", 0, 0, nil, wantInvalidBulk},
		{"bulk length leading zero", "*1\r\n$04\r\nPING\r\n", 0, 0, nil, wantInvalidBulk},
		{"bulk length lf only", "*1\r\n$4\nPING\r\n", 0, 0, nil, wantInvalidBulk},
		{"bulk header endless", "*1\r\n$" + strings.Repeat("1", 40), 0, 0, nil, wantTooBigBulkCount},
		{"bulk header too long", "*1\r\n$" + strings.Repeat("1", 40) + "\r\n", 0, 0, nil, wantTooBigBulkCount},
		{"bulk length too many digits", "*1\r\n$" + strings.Repeat("1", 20) + "\r\n", 0, 0, nil, wantInvalidBulk},
		{"bulk without crlf", "*1\r\n$4\r\nPINGxx", 0, 0, nil, wantInvalidBulk},
		{"request above limit", "*3\r\n$3\r\nSET\r\n$80\r\n" + strings.Repeat("k", 80) + "\r\n$80\r\n", 100, 0, nil, wantTooBigRequest},
		{"too many args", "*9\r\n", 0, 8, nil, wantInvalidMultibulk},
		{"multibulk length not a number", "*abc\r\n", 0, 0, nil, wantInvalidMultibulk},
		{"multibulk length empty", "*\r\n", 0, 0, nil, wantInvalidMultibulk},
		{"multibulk length leading zero", "*01\r\n$4\r\nPING\r\n", 0, 0, nil, wantInvalidMultibulk},
		{"multibulk length minus zero", "*-0\r\n", 0, 0, nil, wantInvalidMultibulk},
		{"multibulk lf only", "*1\n$4\r\nPING\r\n", 0, 0, nil, wantInvalidMultibulk},
		{"multibulk header endless", "*" + strings.Repeat("1", maxInline+1), 0, 0, nil, wantTooBigMbulk},
		{"multibulk header too long", "*" + strings.Repeat("1", maxInline+1) + "\r\n", 0, 0, nil, wantTooBigMbulk},
		{"multibulk length too many digits", "*" + strings.Repeat("1", 30) + "\r\n", 0, 0, nil, wantInvalidMultibulk},
		{"inline endless", strings.Repeat("a", maxInline+1), 0, 0, nil, wantTooBigInline},
		{"inline too long", "ECHO " + strings.Repeat("a", maxInline) + "\r\n", 0, 0, nil, wantTooBigInline},
		{"expected dollar", "*1\r\nx", 0, 0, nil, "ERR Protocol error: expected '$', got 'x'"},
		{"expected dollar high byte", "*1\r\n\xff", 0, 0, nil, "ERR Protocol error: expected '$', got '\xff'"},
		{"expected dollar second arg", "*2\r\n$3\r\nGET\r\n:1\r\n", 0, 0, nil, "ERR Protocol error: expected '$', got ':'"},
		{"unbalanced double quote", "ECHO \"abc\r\n", 0, 0, nil, wantUnbalanced},
		{"unbalanced single quote", "ECHO 'abc\r\n", 0, 0, nil, wantUnbalanced},
		{"quote not followed by space", "ECHO \"a\"b\r\n", 0, 0, nil, wantUnbalanced},
		{"single quote not followed by space", "ECHO 'a'b\r\n", 0, 0, nil, wantUnbalanced},
		{"trailing backslash in quotes", "ECHO \"a\\\r\n", 0, 0, nil, wantUnbalanced},
		{"mid-word quote unbalanced", "ECHO a\"b\r\n", 0, 0, nil, wantUnbalanced},
		{"commands before the error", "PING\r\n*1\r\n$4\r\nPING\r\nECHO x\r\n*1\r\nx", 0, 0,
			[][]string{{"PING"}, {"PING"}, {"ECHO", "x"}}, "ERR Protocol error: expected '$', got 'x'"},
		{"commands before a limit", "PING\r\n*2\r\n$3\r\nSET\r\n$999\r\n", 100, 0,
			[][]string{{"PING"}}, wantInvalidBulk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maxRequest, maxArgs := tc.maxRequest, tc.maxArgs
			if maxRequest == 0 {
				maxRequest = 64 << 20
			}
			if maxArgs == 0 {
				maxArgs = 1 << 20
			}
			for how, rd := range deliveries([]byte(tc.input)) {
				res := readAll(t, rd(), 1024, maxRequest, maxArgs)
				if res.err == nil || res.err.Error() != tc.want {
					t.Fatalf("%s: error %v, want %q", how, res.err, tc.want)
				}
				if !equalCmds(res.cmds, tc.before) {
					t.Fatalf("%s: commands before the error %q, want %q", how, res.cmds, tc.before)
				}
			}
		})
	}
}

// TestReaderErrorAfterCommands checks the commands ahead of a protocol error
// in the same read come back as a batch of their own, and the error on the
// next call: they get their replies before the connection is closed.
func TestReaderErrorAfterCommands(t *testing.T) {
	r := newReader(bytes.NewReader([]byte("PING\r\n*1\r\n$4\r\nPING\r\n*1\r\nx\r\n")), 1024, 1<<20, 1024)
	cmds, err := r.readBatch(1024)
	if err != nil || len(cmds) != 2 {
		t.Fatalf("first batch: %d commands, %v; want 2, nil", len(cmds), err)
	}
	cmds, err = r.readBatch(1024)
	if len(cmds) != 0 || err == nil || err.Error() != "ERR Protocol error: expected '$', got 'x'" {
		t.Fatalf("second batch: %d commands, %v", len(cmds), err)
	}
	// The error sticks.
	if _, err = r.readBatch(1024); err == nil {
		t.Fatal("error not repeated")
	}
}

// countingReader counts Read calls.
type countingReader struct {
	io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.Reader.Read(p)
}

// TestReaderBatchLimit checks at most max commands come back per call and
// the rest are served from the buffer without reading again.
func TestReaderBatchLimit(t *testing.T) {
	rd := &countingReader{Reader: bytes.NewReader([]byte(strings.Repeat("*1\r\n$4\r\nPING\r\n", 5)))}
	r := newReader(rd, 1024, 1<<20, 1024)
	for i, want := range []int{2, 2, 1} {
		cmds, err := r.readBatch(2)
		if err != nil || len(cmds) != want {
			t.Fatalf("batch %d: %d commands, %v; want %d", i, len(cmds), err, want)
		}
		if rd.reads != 1 {
			t.Fatalf("batch %d: %d reads, want 1", i, rd.reads)
		}
	}
	if _, err := r.readBatch(2); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v, want EOF", err)
	}
}

// TestReaderZeroCopy checks a multibulk command's Args point into its Raw
// bytes, which point into the read buffer: nothing is copied.
func TestReaderZeroCopy(t *testing.T) {
	r := newReader(bytes.NewReader([]byte(respOf("SET", "key", "value"))), 1024, 1<<20, 1024)
	cmds, err := r.readBatch(16)
	if err != nil || len(cmds) != 1 {
		t.Fatalf("%d commands, %v", len(cmds), err)
	}
	c := cmds[0]
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(c.Raw)))
	hi := lo + uintptr(len(c.Raw))
	for i, a := range c.Args {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(a)))
		if p < lo || p+uintptr(len(a)) > hi {
			t.Fatalf("Args[%d] is not inside Raw", i)
		}
		if cap(a) != len(a) {
			t.Fatalf("Args[%d] has spare capacity %d: an append would overwrite the buffer", i, cap(a)-len(a))
		}
	}
	if c.off < 0 || !bytes.Equal(r.buf[c.off:c.off+len(c.Raw)], c.Raw) {
		t.Fatalf("off %d does not locate Raw in the buffer", c.off)
	}
}

// TestReaderBufferBounded checks a request just under max_request_bytes,
// arriving in small reads, never grows the buffer beyond the limit plus a
// small constant (no doubling past it), and that the buffer shrinks back
// once the big request is gone.
func TestReaderBufferBounded(t *testing.T) {
	const maxRequest = 1 << 20
	bound := maxRequest + 96 + readChunk
	value := strings.Repeat("x", maxRequest-64)
	for _, size := range []int{1000, 4096, 64 << 10} {
		data := []byte(respOf("SET", "k", value) + respOf("GET", "k"))
		rd := &chunkReader{data: data, rng: rand.New(rand.NewPCG(uint64(size), 1)), max: size}
		r := newReader(rd, 1024, maxRequest, 1024)
		cmds, err := r.readBatch(16)
		if err != nil || len(cmds) < 1 || len(cmds[0].Args[2]) != len(value) {
			t.Fatalf("reads of up to %d: big command not read: %d commands, %v", size, len(cmds), err)
		}
		if len(r.buf) > bound {
			t.Fatalf("reads of up to %d: buffer grew to %d bytes for a %d-byte limit (bound %d)", size, len(r.buf), maxRequest, bound)
		}
		for len(cmds) < 2 || string(cmds[len(cmds)-1].Args[0]) != "GET" {
			if cmds, err = r.readBatch(16); err != nil {
				t.Fatal(err)
			}
		}
		if _, err = r.readBatch(16); !errors.Is(err, io.EOF) {
			t.Fatalf("end: %v", err)
		}
		if len(r.buf) > readChunk {
			t.Fatalf("idle buffer is %d bytes, want it shrunk back to at most %d", len(r.buf), readChunk)
		}
	}
}

// TestReaderRefusesBeforeBuffering checks an oversized bulk is refused from
// its header alone: the reader never asks for the payload.
func TestReaderRefusesBeforeBuffering(t *testing.T) {
	// Any read past the header fails the test's way.
	hdr := []byte("*2\r\n$3\r\nSET\r\n$999999999\r\n")
	rd := io.MultiReader(bytes.NewReader(hdr), iotest.ErrReader(errors.New("read past the header")))
	r := newReader(rd, 1024, 1<<20, 1024)
	_, err := r.readBatch(16)
	if err == nil || err.Error() != wantInvalidBulk {
		t.Fatalf("error %v, want %q", err, wantInvalidBulk)
	}
	if len(r.buf) > 4096+1024 {
		t.Fatalf("buffer grew to %d bytes", len(r.buf))
	}
}

// TestReaderInject checks bytes read by a watcher are parsed after the
// buffered ones, and commands already returned stay intact.
func TestReaderInject(t *testing.T) {
	r := newReader(bytes.NewReader([]byte("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET")), 16, 1<<20, 1024)
	cmds, err := r.readBatch(16)
	if err != nil || len(cmds) != 1 {
		t.Fatalf("%d commands, %v", len(cmds), err)
	}
	first := cmds[0].Args[0]
	r.inject([]byte("\r\n$1\r\nk\r\n" + strings.Repeat("ECHO x\r\n", 100)))
	if string(first) != "PING" {
		t.Fatalf("returned command changed to %q", first)
	}
	cmds, err = r.readBatch(1024)
	if err != nil || len(cmds) != 101 || string(cmds[0].Args[0]) != "GET" || string(cmds[0].Args[1]) != "k" {
		t.Fatalf("after inject: %d commands, %v", len(cmds), err)
	}
}

// repeatReader returns the same bytes on every read, like a client that
// keeps sending the same pipeline.
type repeatReader struct{ data []byte }

func (r *repeatReader) Read(p []byte) (int, error) { return copy(p, r.data), nil }

// TestReaderAllocs checks the steady state of a pipelined batch allocates
// nothing: commands, arguments and raw bytes all live in reused buffers.
func TestReaderAllocs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch string
	}{
		{"multibulk GET", strings.Repeat(respOf("GET", "key:1234"), 50)},
		{"multibulk SET", strings.Repeat(respOf("SET", "key:1234", strings.Repeat("v", 100)), 20)},
		{"inline GET", strings.Repeat("GET key:1234\r\n", 50)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := strings.Count(tc.batch, "key:1234")
			r := newReader(&repeatReader{data: []byte(tc.batch)}, 1024, 64<<20, 1<<20)
			allocs := testing.AllocsPerRun(200, func() {
				cmds, err := r.readBatch(1024)
				if err != nil || len(cmds) != want {
					t.Fatalf("%d commands, %v; want %d", len(cmds), err, want)
				}
			})
			if allocs != 0 {
				t.Fatalf("%.1f allocations per batch, want 0", allocs)
			}
		})
	}
}

func BenchmarkReaderPipeline(b *testing.B) {
	batch := []byte(strings.Repeat(respOf("GET", "key:1234"), 100))
	r := newReader(&repeatReader{data: batch}, 1024, 64<<20, 1<<20)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		if cmds, err := r.readBatch(1024); err != nil || len(cmds) != 100 {
			b.Fatal(len(cmds), err)
		}
	}
}
