package fencing

import (
	"testing"
	"time"
)

func TestRegistryMayBeLocked(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	r := NewRegistry()
	r.now = func() time.Time { return now }
	if !r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("an unsynced registry must assume every key may be locked")
	}
	r.SetSynced(true)
	if r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("no lock: fast path")
	}
	r.Acquired("w", "kv:a", 1, now.Add(time.Second).UnixMilli())
	for key, want := range map[string]bool{"kv:a": true, "kv:a:b": true, "kv:a:b:c": true, "kv:ab": false, "kv": false, "kv:b": false} {
		if got := r.MayBeLocked([]byte("w"), []byte(key)); got != want {
			t.Errorf("%s: %v, want %v", key, got, want)
		}
	}
	if r.MayBeLocked([]byte("other"), []byte("kv:a")) {
		t.Error("locks are per workspace")
	}
	// Past expiry, within the margin: still possible; past it: not.
	now = now.Add(time.Second + Margin - time.Millisecond)
	if !r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Error("within the margin past expiry")
	}
	now = now.Add(2 * time.Millisecond)
	if r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Error("past the margin")
	}
	r.Purge()
	if r.Count() != 0 {
		t.Errorf("purge left %d", r.Count())
	}
	r.Acquired("w", "kv", 1, now.Add(time.Hour).UnixMilli())
	if !r.MayBeLocked([]byte("w"), []byte("kv:anything")) {
		t.Error("a lock on the kind guards all of it")
	}
	r.Released("w", "kv", 1)
	if r.MayBeLocked([]byte("w"), []byte("kv:anything")) || r.Count() != 0 {
		t.Error("released")
	}
}

func TestRegistryInflight(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	r := NewRegistry()
	r.now = func() time.Time { return now }
	r.SetSynced(true)
	// An acquire in flight guards before its reply is seen, and a release
	// meanwhile (of an earlier holder) does not end that.
	r.Acquiring("w", "kv:a")
	if !r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("acquire in flight")
	}
	r.Released("w", "kv:a", 1)
	if !r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("a release must not end another acquire in flight")
	}
	r.Acquired("w", "kv:a", 2, now.Add(time.Second).UnixMilli())
	r.Done("w", "kv:a")
	if !r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("acquired")
	}
	r.Released("w", "kv:a", 2)
	if r.MayBeLocked([]byte("w"), []byte("kv:a")) || r.Count() != 0 {
		t.Fatal("released, nothing in flight")
	}
	// A failed acquire leaves nothing behind.
	r.Acquiring("w", "kv:b")
	r.Done("w", "kv:b")
	if r.Count() != 0 {
		t.Fatal("failed acquire left an entry")
	}
	// An acquire whose end is never reported stops counting after
	// InflightMax; Reset keeps acquires in flight.
	r.Acquiring("w", "kv:c")
	r.Reset()
	if !r.MayBeLocked([]byte("w"), []byte("kv:c")) {
		t.Fatal("reset dropped an acquire in flight")
	}
	now = now.Add(InflightMax + time.Millisecond)
	if r.MayBeLocked([]byte("w"), []byte("kv:c")) {
		t.Fatal("an abandoned acquire guards forever")
	}
	r.Purge()
	if r.Count() != 0 {
		t.Fatal("purge kept an abandoned acquire")
	}
}

func TestMayBeLockedAllocs(t *testing.T) {
	r := NewRegistry()
	r.SetSynced(true)
	r.Acquired("w", "kv:x", 1, time.Now().Add(time.Hour).UnixMilli())
	key, w, none := []byte("kv:some:long:key"), []byte("w"), []byte("none")
	if n := testing.AllocsPerRun(100, func() { r.MayBeLocked(w, key) }); n != 0 {
		t.Errorf("MayBeLocked allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { r.MayBeLocked(none, key) }); n != 0 {
		t.Errorf("MayBeLocked allocates %v", n)
	}
}

func BenchmarkMayBeLockedNoLocks(b *testing.B) {
	r := NewRegistry()
	r.SetSynced(true)
	key, w := []byte("kv:agent:notes:today"), []byte("w")
	for b.Loop() {
		r.MayBeLocked(w, key)
	}
}

func BenchmarkMayBeLockedOtherLocks(b *testing.B) {
	r := NewRegistry()
	r.SetSynced(true)
	for i := 0; i < 100; i++ {
		r.Acquired("w", "kv:res"+string(rune('a'+i%26))+string(rune('a'+i/26)), 1, time.Now().Add(time.Hour).UnixMilli())
	}
	key, w := []byte("kv:agent:notes:today"), []byte("w")
	for b.Loop() {
		r.MayBeLocked(w, key)
	}
}

// The reports of a lock's changes come from the sessions that made them and
// from the lock events, in any order: news of an older token than the
// newest heard of changes nothing.
func TestRegistryOutOfOrder(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	r := NewRegistry()
	r.now = func() time.Time { return now }
	r.SetSynced(true)
	exp := now.Add(time.Second).UnixMilli()
	r.Acquired("w", "kv:a", 5, exp)
	r.Acquired("w", "kv:a", 6, exp) // taken over (session reply)
	r.Released("w", "kv:a", 5)      // the release of 5, heard late (event)
	if !r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("a late release of an older token ended the newer lock")
	}
	r.Acquired("w", "kv:a", 5, now.Add(-time.Hour).UnixMilli()) // the acquire of 5, heard late
	now = now.Add(time.Second + Margin/2)
	if !r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("a late acquire of an older token shortened the newer lock")
	}
	r.Acquired("w", "kv:a", 6, now.Add(time.Minute).UnixMilli()) // extended
	now = now.Add(30 * time.Second)
	if !r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("extension lost")
	}
	r.Released("w", "kv:a", 6)
	if r.MayBeLocked([]byte("w"), []byte("kv:a")) {
		t.Fatal("released")
	}
}

// A blocking write waiting in Redis is kicked by an acquire of a lock that
// guards what it writes (and only by those), and a blocking write is not
// registered while such a lock lives.
func TestRegistryBlocked(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	r := NewRegistry()
	r.now = func() time.Time { return now }
	r.SetSynced(true)
	reg := func(rest string) (*Blocked, *int, string) {
		n := new(int)
		b := &Blocked{r: r, kick: func() { *n++ }}
		res, _ := r.register(b, blockedKey{"w", rest})
		return b, n, res
	}
	q, nq, _ := reg("kv:q")
	other, no, _ := reg("kv:qq")
	r.Acquiring("w", "kv:q")
	if *nq != 1 || q.Kicked() != "kv:q" {
		t.Fatalf("kicks %d, kicked %q", *nq, q.Kicked())
	}
	if *no != 0 || other.Kicked() != "" {
		t.Fatal("kv:qq is not guarded by kv:q")
	}
	r.Acquired("w", "kv:q", 1, now.Add(time.Second).UnixMilli())
	r.Done("w", "kv:q")
	if *nq != 1 {
		t.Fatal("kicked twice")
	}
	if _, _, res := reg("kv:q:part"); res != "kv:q" {
		t.Fatalf("registered under a live lock (%q)", res)
	}
	q.Done()
	other.Done()
	if sh := r.shardOf([]byte("w")); len(sh.waiting) != 0 {
		t.Fatalf("left waiting: %v", sh.waiting)
	}
}

// A lock in one workspace never unblocks another workspace's blocking
// write on the key of the same name.
func TestRegistryBlockedOtherWorkspace(t *testing.T) {
	r := NewRegistry()
	r.SetSynced(true)
	kicks := 0
	b := &Blocked{r: r, kick: func() { kicks++ }}
	if res, locked := r.register(b, blockedKey{"a", "kv:q"}); locked {
		t.Fatalf("registered under %q", res)
	}
	r.Acquiring("b", "kv:q")
	r.Acquired("b", "kv:q", 1, time.Now().Add(time.Minute).UnixMilli())
	if kicks != 0 || b.Kicked() != "" {
		t.Fatalf("workspace b's lock kicked workspace a's blocked write (%d kicks)", kicks)
	}
	r.Acquiring("a", "kv:q")
	if kicks != 1 || b.Kicked() != "kv:q" {
		t.Fatalf("own workspace's lock: %d kicks", kicks)
	}
	b.Done()
}
