package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

// The lock-with-fencing model checked by porcupine. Tokens are minted one
// by one; only the newest token may write (a token older than the newest is
// stale, whether or not its holder thinks it still holds the lock); reads
// see the last accepted write. Refusals are always allowed: they may come
// from expiry, which the model does not time.
type fenceState struct {
	maxTok int64
	value  string
}

type fenceIn struct {
	op    string // acquire, write, read, release
	token int64
	value string
}

type fenceOut struct {
	ok    bool
	token int64  // acquire
	value string // read
}

var fenceModel = porcupine.Model{
	Init: func() interface{} { return fenceState{} },
	Step: func(st, in, out interface{}) (bool, interface{}) {
		s, i, o := st.(fenceState), in.(fenceIn), out.(fenceOut)
		switch i.op {
		case "acquire":
			if !o.ok {
				return true, s
			}
			if o.token != s.maxTok+1 {
				return false, s
			}
			s.maxTok = o.token
			return true, s
		case "write":
			if !o.ok {
				return true, s
			}
			if i.token != s.maxTok {
				return false, s // a stale token's write was accepted
			}
			s.value = i.value
			return true, s
		case "read":
			return o.value == s.value, s
		case "release":
			return !o.ok || i.token == s.maxTok, s
		}
		return false, s
	},
	DescribeOperation: func(in, out interface{}) string {
		i, o := in.(fenceIn), out.(fenceOut)
		return fmt.Sprintf("%s(%d,%q) -> %v %d %q", i.op, i.token, i.value, o.ok, o.token, o.value)
	},
}

// TestLockFencingLinearizable runs 8 clients that acquire, extend, write
// with their token and release a lock with a short TTL, some pausing past
// the TTL before writing with their old token, and checks the history of
// at least 10,000 operations against the model: zero stale writes accepted.
func TestLockFencingLinearizable(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL()))

	const (
		clients = 8
		target  = 10000
		res     = "cache:safety:k"
	)
	start := time.Now()
	var mu sync.Mutex
	var history []porcupine.Operation
	var total, staleRefused, writesOK atomic.Int64
	record := func(client int, in fenceIn, out fenceOut, call, ret time.Time) {
		mu.Lock()
		history = append(history, porcupine.Operation{ClientId: client, Input: in, Output: out,
			Call: call.Sub(start).Nanoseconds(), Return: ret.Sub(start).Nanoseconds()})
		mu.Unlock()
		total.Add(1)
	}
	deadline := time.Now().Add(40 * time.Second)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			conn := testutil.Dial(t, a.Addr())
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			n := 0
			for total.Load() < target && time.Now().Before(deadline) {
				n++
				t0 := time.Now()
				reply := conn.Do("LOCK.ACQUIRE", res, "30", "WAIT", "100")
				t1 := time.Now()
				tok := tokenOf(reply)
				record(id, fenceIn{op: "acquire"}, fenceOut{ok: tok > 0, token: tok}, t0, t1)
				if tok == 0 {
					continue
				}
				if rng.IntN(4) == 0 {
					time.Sleep(40 * time.Millisecond) // past the TTL: the token goes stale
				} else if rng.IntN(3) == 0 {
					conn.Do("LOCK.EXTEND", res, strconv.FormatInt(tok, 10), "30")
				}
				v := fmt.Sprintf("c%d-%d", id, n)
				t0 = time.Now()
				w := conn.Do("CACHE.SET", "safety", "k", v, "FENCE", strconv.FormatInt(tok, 10))
				t1 = time.Now()
				ok := bytes.Equal(w, []byte("+OK\r\n"))
				if !ok && !bytes.HasPrefix(w, []byte("-FENCED")) && !bytes.HasPrefix(w, []byte("-LOCKED")) {
					t.Errorf("write: unexpected reply %q", w)
					return
				}
				if ok {
					writesOK.Add(1)
				} else {
					staleRefused.Add(1)
				}
				record(id, fenceIn{op: "write", token: tok, value: v}, fenceOut{ok: ok}, t0, t1)
				if rng.IntN(2) == 0 {
					t0 = time.Now()
					g := conn.Do("CACHE.GET", "safety", "k")
					t1 = time.Now()
					record(id, fenceIn{op: "read"}, fenceOut{ok: true, value: bulkString(g)}, t0, t1)
				}
				t0 = time.Now()
				rel := conn.Do("LOCK.RELEASE", res, strconv.FormatInt(tok, 10))
				t1 = time.Now()
				record(id, fenceIn{op: "release", token: tok}, fenceOut{ok: bytes.Equal(rel, []byte(":1\r\n"))}, t0, t1)
			}
		}(c)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(history) < target {
		t.Fatalf("only %d operations recorded in time (want >= %d)", len(history), target)
	}
	t.Logf("%d operations, %d writes accepted, %d refused (FENCED/LOCKED), recorded in %s",
		len(history), writesOK.Load(), staleRefused.Load(), time.Since(start).Round(time.Millisecond))
	if staleRefused.Load() == 0 {
		t.Fatalf("no write was refused: the test did not exercise stale tokens")
	}
	checkStart := time.Now()
	res2 := porcupine.CheckOperationsTimeout(fenceModel, history, 2*time.Minute)
	t.Logf("linearizability check: %v in %s", res2, time.Since(checkStart).Round(time.Millisecond))
	if res2 != porcupine.Ok {
		t.Fatalf("history is not linearizable against the fencing model (%v): a stale write was accepted or a read saw a lost write", res2)
	}
}

// tokenOf reads the token from a LOCK.ACQUIRE reply (RESP2 flat array), or 0.
func tokenOf(reply []byte) int64 {
	const head = "*6\r\n$5\r\ntoken\r\n:"
	if !bytes.HasPrefix(reply, []byte(head)) {
		return 0
	}
	rest := reply[len(head):]
	end := bytes.IndexByte(rest, '\r')
	n, _ := strconv.ParseInt(string(rest[:end]), 10, 64)
	return n
}

// bulkString decodes a bulk string reply ("" for nil).
func bulkString(reply []byte) string {
	if len(reply) < 4 || reply[0] != '$' || reply[1] == '-' {
		return ""
	}
	i := bytes.IndexByte(reply, '\n')
	n, _ := strconv.Atoi(string(reply[1 : i-1]))
	return string(reply[i+1 : i+1+n])
}
