package membudget

import (
	"sync"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	b := New(1000)
	if !b.TryTake(600) || b.TryTake(500) || !b.TryTake(400) || b.Used() != 1000 {
		t.Fatalf("used %d", b.Used())
	}
	b.Give(1000)
	if b.Used() != 0 || b.Peak() != 1000 {
		t.Fatalf("used %d peak %d", b.Used(), b.Peak())
	}
	// A large holder is cut at once; a small one waits for room.
	b.TryTake(950)
	start := time.Now()
	if b.Take(200, 100, time.Second) {
		t.Fatal("large holder not cut")
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Fatal("large holder waited")
	}
	go func() { time.Sleep(50 * time.Millisecond); b.Give(950) }()
	if !b.Take(0, 100, 2*time.Second) {
		t.Fatal("small holder did not get room")
	}
	if b.Cuts.Load() != 1 || b.Waits.Load() != 1 {
		t.Fatalf("cuts %d waits %d", b.Cuts.Load(), b.Waits.Load())
	}
	var nilB *Budget
	if !nilB.TryTake(1<<40) || !nilB.Take(0, 1<<40, 0) {
		t.Fatal("nil budget refuses")
	}
	if d := Default(); d < 64<<20 || d > 4<<30 {
		t.Fatalf("Default %d", d)
	}
}

func TestBudgetConcurrent(t *testing.T) {
	b := New(1 << 20)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10000; j++ {
				if b.TryTake(1000) {
					b.Give(1000)
				}
			}
		}()
	}
	wg.Wait()
	if b.Used() != 0 || b.Peak() > 1<<20 {
		t.Fatalf("used %d peak %d", b.Used(), b.Peak())
	}
}
