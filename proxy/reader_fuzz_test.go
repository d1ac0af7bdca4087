package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// FuzzReader feeds the request reader arbitrary bytes in fuzzer-chosen
// chunk sizes and limits. It must never panic, never hold a buffer beyond
// the request limit plus a read, find the same commands and the same
// verdict however the bytes arrive, and produce a Raw for every command
// that parses back to exactly its Args.
func FuzzReader(f *testing.F) {
	seeds := []string{
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
		"PING\r\nECHO \"a b\" 'c\\'d' \"\\x41\\n\"\r\n",
		"ECHO a'b c' ab\"cd\" a\"\"\r\n\f x\v y\r\n",
		"\r\n\n*0\r\n*-1\r\nPING\n",
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nQUIT\r\n",
		"*2\r\n$3\r\nSET\r\n$999999999\r\n",
		"*9\r\n$1\r\na\r\n",
		"*1\r\nx",
		"*1\r\n$4\r\nPINGxx",
		"*01\r\n$04\r\nPING\r\n",
		"ECHO \"abc\r\n",
		"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n\xff",
		"*2\r\n$4\r\nECHO\r\n$40\r\n0123456789012345678901234567890123456789\r\n",
		"*3\r\n$3\r\nSET\r\n$100\r\n",
		"*1\r\n$" + "123456789012345678901234567890123456789",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i), uint16(256), uint8(8))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, maxRequest uint16, maxArgs uint8) {
		mr := 1 + int(maxRequest)
		ma := 1 + int(maxArgs)%32
		bound := max(mr+96, maxInline) + readChunk

		whole := readAll(t, bytes.NewReader(data), 1024, mr, ma)
		size := 1 + int(chunk)%32
		rd := &chunkReader{data: data, rng: rand.New(rand.NewPCG(uint64(chunk), uint64(len(data)))), max: size}
		split := readAll(t, rd, 1+int(chunk)%5, mr, ma)

		for _, res := range []readResult{whole, split} {
			if res.maxBuf > bound {
				t.Fatalf("buffer grew to %d bytes; max_request_bytes %d allows %d", res.maxBuf, mr, bound)
			}
		}
		if !equalCmds(whole.cmds, split.cmds) {
			t.Fatalf("in chunks of up to %d: commands %q, whole %q", size, split.cmds, whole.cmds)
		}
		if whole.err.Error() != split.err.Error() {
			t.Fatalf("in chunks of up to %d: ended with %v, whole with %v", size, split.err, whole.err)
		}
		for i, raw := range whole.raws {
			again := readAll(t, bytes.NewReader([]byte(raw)), 1024, 1<<30, 1<<20)
			if !errors.Is(again.err, io.EOF) || len(again.cmds) != 1 {
				t.Fatalf("Raw %q parses to %q, %v", raw, again.cmds, again.err)
			}
			if !equalCmds(again.cmds, whole.cmds[i:i+1]) || again.raws[0] != raw {
				t.Fatalf("Raw %q parses to %q, want %q", raw, again.cmds[0], whole.cmds[i])
			}
			if len(whole.cmds[i]) == 0 {
				t.Fatalf("command %d has no arguments", i)
			}
		}
	})
}
