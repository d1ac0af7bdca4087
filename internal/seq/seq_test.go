package seq

import (
	"sync"
	"testing"
	"time"
)

// TestOrder: writes happen in ticket order whatever order the holders get
// ready in.
func TestOrder(t *testing.T) {
	var q Sequencer
	var mu sync.Mutex
	var order []uint64
	var wg sync.WaitGroup
	tickets := make([]uint64, 8)
	for i := range tickets {
		tickets[i] = q.Take()
	}
	for i := len(tickets) - 1; i >= 0; i-- { // the last ticket gets ready first
		wg.Add(1)
		go func(tk uint64) {
			defer wg.Done()
			q.Wait(tk, 5*time.Second)
			mu.Lock()
			order = append(order, tk)
			mu.Unlock()
			q.Finish(tk)
		}(tickets[i])
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	for i, tk := range order {
		if tk != uint64(i) {
			t.Fatalf("written in order %v", order)
		}
	}
}

// TestBound: a ticket whose holder never finishes holds the next one only
// for the bound; finishing twice or out of order is harmless.
func TestBound(t *testing.T) {
	var q Sequencer
	a, b, c := q.Take(), q.Take(), q.Take()
	start := time.Now()
	q.Wait(b, 20*time.Millisecond)
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Errorf("Wait returned after %v without its predecessor", d)
	}
	q.Finish(c)
	q.Finish(c)
	q.Finish(a)
	q.Finish(b)
	start = time.Now()
	q.Wait(q.Take(), time.Second)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Wait after every ticket finished took %v", d)
	}
	if len(q.finished) != 0 {
		t.Errorf("finished set not drained: %v", q.finished)
	}
}
