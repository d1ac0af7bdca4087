package ratelimit

import (
	"testing"
	"time"
)

func TestTake(t *testing.T) {
	var l Limiter
	now := time.Unix(1000, 0)
	// 10/s with a burst of 1 s: 10 at once, then one per 100 ms.
	for i := 0; i < 10; i++ {
		if w := l.Take("u", 1, 10, time.Second, now); w != 0 {
			t.Fatalf("take %d: wait %v", i, w)
		}
	}
	if w := l.Take("u", 1, 10, time.Second, now); w < 99*time.Millisecond || w > 101*time.Millisecond {
		t.Fatalf("11th: wait %v, want 100ms", w)
	}
	if w := l.Take("u", 1, 10, time.Second, now.Add(100*time.Millisecond)); w != 0 {
		t.Fatalf("after 100ms: wait %v", w)
	}
	if w := l.Take("other", 1, 10, time.Second, now); w != 0 {
		t.Fatal("buckets are not separate")
	}
	if w := l.Take("u", 1, 0, time.Second, now); w != 0 {
		t.Fatal("rate 0 limits")
	}
	l.Give("u", 5)
	for i := 0; i < 5; i++ {
		if w := l.Take("u", 1, 10, time.Second, now.Add(100*time.Millisecond)); w != 0 {
			t.Fatalf("given back %d: %v", i, w)
		}
	}
}

func TestTake2BothBuckets(t *testing.T) {
	var l Limiter
	now := time.Unix(1000, 0)
	// 100 commands/s and 1000 bytes/s, burst 1 s: the bytes run out first.
	for i := 0; i < 10; i++ {
		if w := l.Take2("u", 1, 100, 100, 1000, time.Second, now); w.Wait != 0 {
			t.Fatalf("take %d: %+v", i, w)
		}
	}
	w := l.Take2("u", 1, 100, 100, 1000, time.Second, now)
	if w.Wait < 99*time.Millisecond || w.Wait > 101*time.Millisecond || w.First {
		t.Fatalf("bytes short: %+v, want 100ms on the second bucket", w)
	}
	// Nothing was taken from the commands bucket by the refused take.
	for i := 0; i < 90; i++ {
		if w := l.Take2("u", 1, 100, 0, 1000, time.Second, now); w.Wait != 0 {
			t.Fatalf("command %d: %+v", i, w)
		}
	}
	if w := l.Take2("u", 1, 100, 0, 1000, time.Second, now); !w.First {
		t.Fatalf("commands short: %+v", w)
	}
	// A batch larger than the burst passes once the bucket is full.
	if w := l.Take2("big", 500, 100, 0, 0, time.Second, now); w.Wait != 0 {
		t.Fatalf("big batch: %+v", w)
	}
}

func TestManyNamesBounded(t *testing.T) {
	var l Limiter
	now := time.Unix(1000, 0)
	for i := 0; i < 200000; i++ {
		l.Take(string(rune(i))+"x", 1, 10, time.Second, now.Add(time.Duration(i)*time.Millisecond))
	}
	n := 0
	for i := range l.shards {
		n += len(l.shards[i].buckets)
	}
	if n > len(l.shards)*maxBuckets {
		t.Fatalf("%d buckets kept", n)
	}
}
