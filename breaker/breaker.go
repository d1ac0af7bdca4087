// Package breaker holds one circuit breaker per upstream Redis node.
//
// Transport failures (a connection lost or timed out, a dial or handshake
// that failed) count against the node; error replies such as WRONGTYPE are
// answers and do not. After Settings.Failures consecutive failures the
// breaker opens: the node's requests are refused at once with TRYAGAIN and
// the breaker's state, instead of each waiting for a timeout. After
// Settings.OpenTimeout it is half-open and one probe (a fresh connection
// and PING, made by the breaker itself, never a client's request) decides:
// success closes it, failure opens it again.
//
// The state machine is github.com/sony/gobreaker's. The data path reads a
// single atomic flag: a closed breaker costs no lock per request.
package breaker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// Settings configure a breaker ([breaker] in the configuration).
type Settings struct {
	// Failures is the number of consecutive transport failures that open
	// the breaker; 0 disables it (it never opens).
	Failures int
	// OpenTimeout is how long the breaker stays open before it probes
	// (sooner when Wake says the node answered).
	OpenTimeout time.Duration
}

// State is a breaker's state, as exported in metrics: 0 closed, 1
// half-open, 2 open.
type State int

// The states.
const (
	Closed State = iota
	HalfOpen
	Open
)

func (s State) String() string {
	switch s {
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return "closed"
}

// Probe checks the node once (dial, handshake, PING).
type Probe func() error

// Breaker guards one node.
type Breaker struct {
	node  string
	set   Settings
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	probe Probe
	log   *zap.Logger

	openMsg, halfOpenMsg string // Refusal's
	// OnOpen, when set (before use), runs each time the breaker opens.
	OnOpen func()

	refused atomic.Bool  // not closed: requests are refused
	dirty   atomic.Bool  // a failure counted since the last success
	state   atomic.Int32 // State
	opened  atomic.Int64 // unix nanoseconds of the last opening
	trips   atomic.Int64 // times it opened
	changes [3]atomic.Int64

	mu      sync.Mutex
	probing bool
	closed  bool
	done    chan struct{}
	wake    chan struct{} // probe now: the node answered another dial
}

// New returns a closed breaker for node. probe is run while it is open.
func New(node string, set Settings, probe Probe, log *zap.Logger) *Breaker {
	if log == nil {
		log = zap.NewNop()
	}
	if set.OpenTimeout <= 0 {
		set.OpenTimeout = 2 * time.Second
	}
	b := &Breaker{node: node, set: set, probe: probe, log: log, done: make(chan struct{}), wake: make(chan struct{}, 1),
		openMsg: fmt.Sprintf("TRYAGAIN upstream %s is failing: circuit breaker open after %d consecutive transport failures (timeouts, lost connections), probed every %s; the command was not sent, retry shortly",
			node, set.Failures, set.OpenTimeout),
		halfOpenMsg: "TRYAGAIN upstream " + node + " is failing: circuit breaker half-open, a probe is checking it; the command was not sent, retry shortly"}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        node,
		MaxRequests: 1,
		// Only the probe loop asks while the breaker is open, and it
		// waits OpenTimeout (or for Wake) itself.
		Timeout: time.Millisecond,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return set.Failures > 0 && c.ConsecutiveFailures >= uint32(set.Failures)
		},
		OnStateChange: b.changed,
	})
	return b
}

// changed runs under gobreaker's lock on every transition.
func (b *Breaker) changed(_ string, from, to gobreaker.State) {
	s := Closed
	switch to {
	case gobreaker.StateOpen:
		s = Open
		b.opened.Store(time.Now().UnixNano())
		b.trips.Add(1)
	case gobreaker.StateHalfOpen:
		s = HalfOpen
	}
	b.state.Store(int32(s))
	b.refused.Store(s != Closed)
	b.changes[s].Add(1)
	if s == Open {
		b.log.Warn("circuit breaker open: requests to this node are refused until a probe succeeds",
			zap.String("node", b.node), zap.String("from", from.String()), zap.Duration("probe_in", b.set.OpenTimeout))
		go b.startProbing()
		if b.OnOpen != nil {
			go b.OnOpen()
		}
	} else {
		b.log.Info("circuit breaker "+s.String(), zap.String("node", b.node), zap.String("from", from.String()))
	}
}

// Allow reports whether a request may go to the node: a closed breaker.
func (b *Breaker) Allow() bool { return !b.refused.Load() }

// State is the current state.
func (b *Breaker) State() State { return State(b.state.Load()) }

// Trips counts the times the breaker opened.
func (b *Breaker) Trips() int64 { return b.trips.Load() }

// Transitions counts the changes into state s.
func (b *Breaker) Transitions(s State) int64 { return b.changes[s].Load() }

// Node is the node the breaker guards.
func (b *Breaker) Node() string { return b.node }

// Failure counts one transport failure (a timeout or a lost connection,
// however many requests it cost; a failed dial). Counted only while
// closed: an open breaker already knows.
func (b *Breaker) Failure() {
	if b.set.Failures <= 0 || b.refused.Load() {
		return
	}
	b.dirty.Store(true)
	if done, err := b.cb.Allow(); err == nil {
		done(errFailed)
	}
}

// Success records a reply or a good dial. It takes gobreaker's lock only
// when a failure was counted since the last success, so the hot path is one
// atomic load.
func (b *Breaker) Success() {
	if !b.dirty.Load() || b.refused.Load() {
		return
	}
	b.dirty.Store(false)
	if done, err := b.cb.Allow(); err == nil {
		done(nil)
	}
}

var errFailed = fmt.Errorf("transport failure")

// Refusal is the TRYAGAIN error text for a request refused while the
// breaker is not closed. Both texts are made once: it is said to every
// request of an outage.
func (b *Breaker) Refusal() string {
	if b.State() == HalfOpen {
		return b.halfOpenMsg
	}
	return b.openMsg
}

// startProbing runs probes until the breaker closes (one loop at a time).
func (b *Breaker) startProbing() {
	b.mu.Lock()
	if b.probing || b.closed {
		b.mu.Unlock()
		return
	}
	b.probing = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.probing = false
		b.mu.Unlock()
	}()
	for b.refused.Load() {
		wait := b.set.OpenTimeout - time.Since(time.Unix(0, b.opened.Load()))
		if wait < time.Millisecond {
			wait = time.Millisecond
		}
		select {
		case <-b.done:
			return
		case <-time.After(wait):
		case <-b.wake:
		}
		done, err := b.cb.Allow() // half-open now: this probe is the one request
		if err != nil {
			continue
		}
		perr := b.probe()
		if perr != nil {
			b.log.Info("circuit breaker probe failed", zap.String("node", b.node), zap.Error(perr))
		}
		done(perr)
		if perr == nil {
			b.dirty.Store(false)
		}
	}
}

// Wake makes an open breaker probe now instead of at the end of
// OpenTimeout: something else (a reconnect) just reached the node.
func (b *Breaker) Wake() {
	if !b.refused.Load() {
		return
	}
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Close stops probing.
func (b *Breaker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
}
