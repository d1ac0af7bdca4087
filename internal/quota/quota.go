// Package quota counts what each owner (a workspace) holds of a shared
// resource (dedicated upstream connections) against a maximum, so that one
// owner cannot take all of it.
package quota

import "sync"

// Quota is safe for concurrent use. A zero or negative Max is no limit.
type Quota struct {
	Max int
	mu  sync.Mutex
	n   map[string]int
}

// Take counts one more for key; false when key already holds Max.
func (q *Quota) Take(key string) bool {
	if q.Max <= 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == nil {
		q.n = map[string]int{}
	}
	if q.n[key] >= q.Max {
		return false
	}
	q.n[key]++
	return true
}

// Give ends what Take counted.
func (q *Quota) Give(key string) {
	if q.Max <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n[key]--; q.n[key] <= 0 {
		delete(q.n, key)
	}
}
