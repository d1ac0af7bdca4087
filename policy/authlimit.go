package policy

import (
	"net"
	"strconv"
	"sync"
	"time"
)

// AuthLimiter counts failed AUTH attempts per bucket (a user name, a
// connection, an address) in a sliding window; past the limit in any of an
// attempt's buckets, it is refused without checking.
type AuthLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]time.Time
}

// NewAuthLimiter allows max failures per bucket within window (defaults 10,
// one minute).
func NewAuthLimiter(max int, window time.Duration) *AuthLimiter {
	if max <= 0 {
		max = 10
	}
	if window <= 0 {
		window = time.Minute
	}
	return &AuthLimiter{max: max, window: window, fails: map[string][]time.Time{}}
}

func (l *AuthLimiter) recent(host string, now time.Time) []time.Time {
	ts := l.fails[host]
	k := 0
	for _, t := range ts {
		if now.Sub(t) < l.window {
			ts[k] = t
			k++
		}
	}
	ts = ts[:k]
	if k == 0 {
		delete(l.fails, host)
	} else {
		l.fails[host] = ts
	}
	return ts
}

// Allow reports whether an attempt counting against keys may be checked.
func (l *AuthLimiter) Allow(keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, k := range keys {
		if len(l.recent(k, now)) >= l.max {
			return false
		}
	}
	return true
}

// Forget drops a bucket (a closed connection's).
func (l *AuthLimiter) Forget(key string) {
	l.mu.Lock()
	delete(l.fails, key)
	l.mu.Unlock()
}

// Fail records a failed attempt in every one of keys.
func (l *AuthLimiter) Fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if len(l.fails) > 100000 {
		// Bound memory under a spraying attack (many connections or
		// addresses): forget everyone.
		l.fails = map[string][]time.Time{}
	}
	for _, k := range keys {
		ts := l.recent(k, now)
		if len(ts) < l.max {
			l.fails[k] = append(ts, now)
		}
	}
}

// AuthBuckets are the limiter buckets an AUTH attempt for user u (nil: no
// such user) by connection id from remote counts against. Every sidecar
// client is 127.0.0.1, so a bucket per address there would let one
// client's wrong passwords lock out everyone: attempts count against the
// name tried and the connection trying it, and the address only beyond
// loopback. Every unknown name shares one bucket, so memory stays bounded.
func AuthBuckets(u *User, id int64, remote net.Addr) []string {
	name := "user?"
	if u != nil {
		name = "user:" + u.Name
	}
	keys := []string{name, "conn:" + strconv.FormatInt(id, 10)}
	if !IsLoopback(remote) {
		host, _, err := net.SplitHostPort(remote.String())
		if err != nil {
			host = remote.String()
		}
		keys = append(keys, "addr:"+host)
	}
	return keys
}

// IsLoopback reports whether a client at remote connects from loopback
// (or a unix socket).
func IsLoopback(remote net.Addr) bool {
	if a, ok := remote.(*net.TCPAddr); ok {
		return a.IP.IsLoopback()
	}
	return remote.Network() == "unix"
}
