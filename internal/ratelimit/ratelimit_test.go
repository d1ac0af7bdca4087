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
