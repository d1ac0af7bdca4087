package upstream

import (
	"strings"
	"testing"
)

// FuzzFramer feeds the framer arbitrary bytes, whole and cut at the points
// the fuzzer picks, in the manner of nats-server's parser fuzzing: it must
// never panic, never consume more than it was given, and reach the same
// frames and the same verdict however the bytes arrive.
func FuzzFramer(f *testing.F) {
	for _, tc := range validFrames {
		f.Add([]byte(tc.frame), uint16(len(tc.frame)/2), uint16(1))
	}
	for _, tc := range invalidFrames {
		if len(tc.input) < 4096 {
			f.Add([]byte(tc.input), uint16(len(tc.input)/2), uint16(3))
		}
	}
	var all strings.Builder
	for _, tc := range validFrames {
		all.WriteString(tc.frame)
	}
	f.Add([]byte(all.String()), uint16(17), uint16(5))
	f.Add([]byte("*3\r\n$3\r\nfoo\r\n*?\r\n:1\r\n.\r\n$?\r\n;1\r\na\r\n;0\r\n+OK\r\n"), uint16(9), uint16(2))
	f.Add([]byte("+OK\r\n-ERR\r\n:1\r\n$-1\r\n*-1\r\n"), uint16(6), uint16(7))

	f.Fuzz(func(t *testing.T, data []byte, cut uint16, step uint16) {
		var whole Framer
		want := scanChunks(&whole, data)
		if want.consumed > len(data) {
			t.Fatalf("consumed %d of %d bytes", want.consumed, len(data))
		}
		prev := 0
		for _, e := range want.ends {
			if e <= prev || e > len(data) {
				t.Fatalf("frame ends %v out of order or past the input (%d bytes)", want.ends, len(data))
			}
			prev = e
		}
		if want.err == nil && len(want.ends) > 0 && want.consumed < want.ends[len(want.ends)-1] {
			t.Fatalf("consumed %d < last frame end %d", want.consumed, want.ends[len(want.ends)-1])
		}

		// Cut once where the fuzzer says.
		p := int(cut) % (len(data) + 1)
		var split Framer
		if got := scanChunks(&split, data[:p], data[p:]); !sameResult(want, got) {
			t.Fatalf("cut at %d: got ends=%v err=%v consumed=%d; whole: ends=%v err=%v consumed=%d",
				p, got.ends, got.err, got.consumed, want.ends, want.err, want.consumed)
		}

		// Cut into pieces of a fuzzer-chosen size (1 = byte by byte).
		size := 1 + int(step)%64
		var pieces Framer
		if got := scanChunks(&pieces, splitSizes(data, func() int { return size })...); !sameResult(want, got) {
			t.Fatalf("pieces of %d: got ends=%v err=%v; whole: ends=%v err=%v", size, got.ends, got.err, want.ends, want.err)
		}

		// Each frame found scans alone, from a fresh framer, to exactly
		// its own length.
		start := 0
		for _, e := range want.ends {
			var one Framer
			n, done, err := one.Scan(data[start:e])
			if err != nil || !done || n != e-start {
				t.Fatalf("frame %q alone: Scan = %d, %v, %v", data[start:e], n, done, err)
			}
			start = e
		}
	})
}
