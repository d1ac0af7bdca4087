// Package seq keeps blocking commands in the order the proxy read them.
// Redis serves clients blocked on a key in the order they blocked; through
// the proxy each blocking command goes out on a dedicated connection of its
// own, and what precedes the write (taking or dialling that connection,
// asking its id) takes different times for different clients, which would
// reorder clients that blocked a millisecond apart. A Sequencer hands out
// tickets in read order and lets a ticket's command be written only once
// every earlier ticket's was (or a short bound passed, so one slow client
// cannot hold the others).
package seq

import (
	"sync"
	"time"
)

// Sequencer orders writes by ticket. The zero value is ready.
type Sequencer struct {
	mu       sync.Mutex
	next     uint64          // the next ticket to hand out
	low      uint64          // every ticket below it is finished
	finished map[uint64]bool // finished tickets at or above low
	changed  chan struct{}   // closed (and replaced) when low moves
}

// Take returns a new ticket, later than every ticket taken before.
func (q *Sequencer) Take() uint64 {
	q.mu.Lock()
	t := q.next
	q.next++
	q.mu.Unlock()
	return t
}

// Wait returns once every ticket before t is finished, or after max.
func (q *Sequencer) Wait(t uint64, max time.Duration) {
	var timer *time.Timer
	for {
		q.mu.Lock()
		if q.low >= t {
			q.mu.Unlock()
			break
		}
		if q.changed == nil {
			q.changed = make(chan struct{})
		}
		ch := q.changed
		q.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(max)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		}
	}
}

// Finish marks t done (its command was written, or will not be); calling it
// again does nothing.
func (q *Sequencer) Finish(t uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t < q.low || q.finished[t] {
		return
	}
	if t != q.low {
		if q.finished == nil {
			q.finished = map[uint64]bool{}
		}
		q.finished[t] = true
		return
	}
	q.low++
	for q.finished[q.low] {
		delete(q.finished, q.low)
		q.low++
	}
	if q.changed != nil {
		close(q.changed)
		q.changed = nil
	}
}
