package breaker

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	var healthy atomic.Bool
	var probes atomic.Int32
	b := New("n1", Settings{Failures: 3, OpenTimeout: 20 * time.Millisecond}, func() error {
		probes.Add(1)
		if healthy.Load() {
			return nil
		}
		return errors.New("down")
	}, nil)
	defer b.Close()

	// Failures interrupted by a success do not open it.
	b.Failure()
	b.Failure()
	b.Success()
	b.Failure()
	b.Failure()
	if !b.Allow() || b.State() != Closed {
		t.Fatalf("opened after 2+2 failures with a success between: %s", b.State())
	}
	b.Failure()
	if b.Allow() || b.State() != Open {
		t.Fatalf("state after 3 consecutive failures: %s", b.State())
	}
	if b.Refusal() == "" || b.Trips() != 1 {
		t.Fatalf("refusal %q trips %d", b.Refusal(), b.Trips())
	}
	// Probes fail while the node is down; the breaker stays refused.
	deadline := time.Now().Add(2 * time.Second)
	for probes.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d probes in 2 s", probes.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if b.Allow() {
		t.Fatalf("allowed after failed probes")
	}
	healthy.Store(true)
	for !b.Allow() {
		if time.Now().After(deadline) {
			t.Fatalf("not closed 2 s after the node recovered (%s)", b.State())
		}
		time.Sleep(time.Millisecond)
	}
	if b.Transitions(Closed) != 1 || b.Transitions(HalfOpen) < 2 {
		t.Errorf("transitions: closed %d half-open %d", b.Transitions(Closed), b.Transitions(HalfOpen))
	}
}

func TestBreakerDisabled(t *testing.T) {
	b := New("n1", Settings{}, func() error { return nil }, nil)
	defer b.Close()
	for i := 0; i < 1000; i++ {
		b.Failure()
	}
	if !b.Allow() {
		t.Fatal("a disabled breaker opened")
	}
}

func BenchmarkBreakerClosedPath(b *testing.B) {
	br := New("n1", Settings{Failures: 5, OpenTimeout: time.Second}, func() error { return nil }, nil)
	defer br.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if br.Allow() {
			br.Success()
		}
	}
}
