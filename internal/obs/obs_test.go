package obs

import (
	"sync"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	var h Histogram
	for _, c := range []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0}, {50 * time.Microsecond, 0}, {51 * time.Microsecond, 1}, {time.Millisecond, 4},
		{3 * time.Millisecond, 6}, {10 * time.Second, len(Bounds) - 1}, {time.Minute, len(Bounds)},
	} {
		before, _, _ := h.Read()
		h.Observe(int64(c.bucket), c.d)
		after, _, _ := h.Read()
		if after[c.bucket] != before[c.bucket]+1 {
			t.Errorf("%v: not counted in bucket %d (le %v): %v", c.d, c.bucket, bound(c.bucket), after)
		}
	}
	_, n, sum := h.Read()
	if n != 7 || sum < 70 || sum > 71 {
		t.Errorf("count %d sum %v, want 7 and ~70.01", n, sum)
	}
}

func bound(i int) any {
	if i < len(Bounds) {
		return Bounds[i]
	}
	return "+Inf"
}

// TestSharded: concurrent recording from many shards sums exactly.
func TestSharded(t *testing.T) {
	var st Stats
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(id int64) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				st.Families.Add(id, 3, 1)
				st.Client.Observe(id, time.Millisecond)
				st.Refused(id, "NOPERM no")
			}
		}(int64(g))
	}
	wg.Wait()
	if got := st.Families.Read(3); got != 16000 {
		t.Errorf("family counter %d, want 16000", got)
	}
	if _, n, _ := st.Client.Read(); n != 16000 {
		t.Errorf("histogram count %d, want 16000", n)
	}
	if got := st.RefusedTotal(); got != 16000 {
		t.Errorf("refusals %d, want 16000", got)
	}
	st.Families.Add(1, VecLen, 1) // out of range: ignored, no panic
}

func TestCodeOf(t *testing.T) {
	for in, want := range map[string]string{
		"NOPERM key 'x' is outside": "NOPERM", "-FENCED token 3 is stale\r\n": "FENCED", "BADKEY": "BADKEY",
		"ERR syntax error": "ERR", "WRONGTYPE Operation": "other", "": "other", "-LOCKED\r\n": "LOCKED",
		"NOPERMISSION x": "other",
	} {
		if got := Codes[CodeOf(in)]; got != want {
			t.Errorf("CodeOf(%q) = %s, want %s", in, got, want)
		}
	}
	var st Stats
	st.RefusedReply(1, []byte("-ERR no such file\r\n")) // a plain error: not a refusal
	st.RefusedReply(1, []byte("$1\r\nx\r\n"))
	st.RefusedReply(1, []byte("-CONFLICT version is 2\r\n"))
	if st.RefusedTotal() != 1 || st.Refusals.Read(CodeOf("CONFLICT")) != 1 {
		t.Errorf("RefusedReply counted %d", st.RefusedTotal())
	}
}

func BenchmarkObserve(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		id := int64(time.Now().UnixNano())
		for pb.Next() {
			h.Observe(id, 300*time.Microsecond)
		}
	})
}
