package tests

// Fencing of plain writes (SPEC §6) against a real redis-server: an
// unmodified client's HSET/SET/DEL on a key a lock guards is written for the
// lock's holder (the proxy injects its token), refused LOCKED for others
// while the lock lives and FENCED for a holder whose lock expired or was
// taken over, also inside MULTI. A porcupine-checked history mixing plain
// writes, domain writes (FILE.WRITE), lock expiries and takeovers shows no
// stale write accepted.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

func lockToken(t *testing.T, c *redis.Conn, res string, ttlMs int) int64 {
	t.Helper()
	v, err := c.Do(context.Background(), "LOCK.ACQUIRE", res, ttlMs).Result()
	if err != nil {
		t.Fatalf("LOCK.ACQUIRE %s: %v", res, err)
	}
	m, ok := v.(map[interface{}]interface{})
	if !ok {
		t.Fatalf("LOCK.ACQUIRE reply %#v", v)
	}
	return m["token"].(int64)
}

func wantPrefix(t *testing.T, what string, err error, prefix string) {
	t.Helper()
	if err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("%s: %v, want %s", what, err, prefix)
	}
}

func TestFencingPlainWritesGoRedis(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL()))
	direct := testutil.Dial(t, r.Addr)
	ctx := context.Background()
	// A lock belongs to the connection that took it: each agent works on
	// one connection of its client (go-redis sends pipelines down a pool of
	// their own otherwise).
	client := func() *redis.Conn {
		rdb := redis.NewClient(&redis.Options{Addr: a.Addr(), MaxRetries: -1})
		c := rdb.Conn()
		t.Cleanup(func() { c.Close(); rdb.Close() })
		return c
	}
	first, other, third := client(), client(), client()
	const key = "deepagents:{default}:kv:doc"

	// Unlocked: everyone writes.
	if err := other.Set(ctx, key+":notes", "n0", 0).Err(); err != nil {
		t.Fatal(err)
	}
	tok := lockToken(t, first, "kv:doc", 500)
	if err := first.HSet(ctx, key, "title", "v1").Err(); err != nil {
		t.Fatalf("holder HSET: %v", err)
	}
	if got := direct.DoS("HGET", key, "title"); got != "$2\r\nv1\r\n" {
		t.Fatalf("holder's HSET not in Redis: %q", got)
	}
	// Others: refused while the lock lives, on the resource's key and the
	// keys under it; nothing reaches Redis.
	wantPrefix(t, "other HSET", other.HSet(ctx, key, "title", "x").Err(), "LOCKED")
	wantPrefix(t, "other SET", other.Set(ctx, key, "x", 0).Err(), "LOCKED")
	wantPrefix(t, "other DEL", other.Del(ctx, key).Err(), "LOCKED")
	wantPrefix(t, "other SET under", other.Set(ctx, key+":notes", "x", 0).Err(), "LOCKED")
	wantPrefix(t, "other MSET", other.MSet(ctx, key+":a", "1", "deepagents:{default}:kv:free", "1").Err(), "LOCKED")
	if err := other.Set(ctx, "deepagents:{default}:kv:docs", "unguarded", 0).Err(); err != nil {
		t.Errorf("a key the lock does not guard: %v", err)
	}
	if got := direct.DoS("HGET", key, "title"); got != "$2\r\nv1\r\n" {
		t.Fatalf("refused writes changed the key: %q", got)
	}
	if got := direct.DoS("EXISTS", key+":a", "deepagents:{default}:kv:free"); got != ":0\r\n" {
		t.Fatalf("refused MSET wrote: %q", got)
	}
	// Others inside MULTI: checked at EXEC, atomically with the
	// transaction; the refused write's slot carries LOCKED.
	cmds, err := other.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "deepagents:{default}:kv:tx-free", "1", 0)
		p.HSet(ctx, key, "title", "tx")
		return nil
	})
	if err == nil || len(cmds) != 2 || cmds[0].Err() != nil || !strings.HasPrefix(fmt.Sprint(cmds[1].Err()), "LOCKED") {
		t.Errorf("other's MULTI: %v %v", cmds, err)
	}
	// The holder inside MULTI: written.
	if _, err := first.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "body", "b1")
		p.Incr(ctx, key+":rev")
		return nil
	}); err != nil {
		t.Fatalf("holder's MULTI: %v", err)
	}
	if got := direct.DoS("HGET", key, "body"); got != "$2\r\nb1\r\n" {
		t.Fatalf("holder's MULTI not in Redis: %q", got)
	}

	// The lock expires; a third client takes it over.
	time.Sleep(600 * time.Millisecond)
	tok3 := lockToken(t, third, "kv:doc", 5000)
	if tok3 != tok+1 {
		t.Fatalf("takeover token %d after %d", tok3, tok)
	}
	wantPrefix(t, "expired holder SET", first.Set(ctx, key, "stale", 0).Err(), "FENCED")
	wantPrefix(t, "expired holder HSET", first.HSet(ctx, key, "title", "stale").Err(), "FENCED")
	wantPrefix(t, "expired holder DEL", first.Del(ctx, key).Err(), "FENCED")
	cmds, err = first.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "title", "stale-tx")
		return nil
	})
	if err == nil || len(cmds) != 1 || !strings.HasPrefix(fmt.Sprint(cmds[0].Err()), "FENCED") {
		t.Errorf("expired holder's MULTI: %v %v", cmds, err)
	}
	wantPrefix(t, "other during takeover", other.HSet(ctx, key, "title", "x").Err(), "LOCKED")
	if err := third.HSet(ctx, key, "title", "v3").Err(); err != nil {
		t.Fatalf("new holder HSET: %v", err)
	}
	if got := direct.DoS("HGET", key, "title"); got != "$2\r\nv3\r\n" {
		t.Fatalf("title %q, want the new holder's v3", got)
	}
	// Released: everyone writes again.
	if err := third.Do(ctx, "LOCK.RELEASE", "kv:doc", tok3).Err(); err != nil {
		t.Fatal(err)
	}
	if err := other.HSet(ctx, key, "title", "free").Err(); err != nil {
		t.Fatalf("after release: %v", err)
	}
	// The expired holder's token is still stale: it must acquire again.
	wantPrefix(t, "stale token after release", first.Set(ctx, key, "late", 0).Err(), "FENCED")
}

// The plain-write fencing model checked by porcupine, one partition per
// resource. Tokens are minted one by one; a write with a token is accepted
// only for the newest token while its lock may still live; a write without
// a token only when no lock can be live (none, released, or possibly
// expired: times are the test's wall clock, expiries Redis's, same host).
type pfState struct {
	maxTok int64
	held   bool
	exp    int64 // unix ms the current lock expires
	value  string
}

type pfIn struct {
	res       string
	op        string // acquire, write, read, release
	token     int64
	value     string
	call, ret int64 // unix ms
}

type pfOut struct {
	ok    bool
	token int64
	exp   int64
	value string
}

const pfMargin = 5 // ms of clock and timer granularity

var pfModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			r := op.Input.(pfIn).res
			if by[r] == nil {
				order = append(order, r)
			}
			by[r] = append(by[r], op)
		}
		var out [][]porcupine.Operation
		for _, r := range order {
			out = append(out, by[r])
		}
		return out
	},
	Init: func() interface{} { return pfState{} },
	Step: func(st, in, out interface{}) (bool, interface{}) {
		s, i, o := st.(pfState), in.(pfIn), out.(pfOut)
		maybeGone := !s.held || i.ret+pfMargin >= s.exp
		switch i.op {
		case "acquire":
			if !o.ok {
				return true, s
			}
			if o.token != s.maxTok+1 || !maybeGone {
				return false, s
			}
			s.maxTok, s.held, s.exp = o.token, true, o.exp
			return true, s
		case "write":
			if !o.ok {
				return true, s
			}
			if i.token > 0 && (i.token != s.maxTok || !s.held || i.call > s.exp+pfMargin) {
				return false, s // a stale or expired holder's write was accepted
			}
			if i.token == 0 && !maybeGone {
				return false, s // a write past a live lock was accepted
			}
			s.value = i.value
			return true, s
		case "read":
			return o.value == s.value, s
		case "release":
			if !o.ok {
				return true, s
			}
			if i.token != s.maxTok || !s.held {
				return false, s
			}
			s.held = false
			return true, s
		}
		return false, s
	},
	DescribeOperation: func(in, out interface{}) string {
		i, o := in.(pfIn), out.(pfOut)
		return fmt.Sprintf("%s %s(%d,%q) -> %v %d %q", i.res, i.op, i.token, i.value, o.ok, o.token, o.value)
	},
}

// TestFencingPlainLinearizable: 8 clients, each with a connection that
// takes locks (30 ms) and one that never does, write two resources — a kv
// key with plain SET, a file with FILE.WRITE — holders sometimes pausing
// past the TTL before writing; the history of at least 10,000 operations is
// checked against pfModel: zero stale writes accepted.
func TestFencingPlainLinearizable(t *testing.T) {
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL()))
	const (
		clients = 8
		target  = 10000
	)
	type resource struct {
		name         string
		write, read  func(c *testutil.Conn, v string) []byte
		writeOK      func([]byte) bool
		readValue    func([]byte) string
		writeCommand string
	}
	kvKey := "deepagents:{default}:kv:doc"
	resources := []resource{
		{name: "kv:doc", write: func(c *testutil.Conn, v string) []byte { return c.Do("SET", kvKey, v) },
			read:    func(c *testutil.Conn, _ string) []byte { return c.Do("GET", kvKey) },
			writeOK: func(b []byte) bool { return string(b) == "+OK\r\n" }, readValue: bulkString},
		{name: "files:/doc.md", write: func(c *testutil.Conn, v string) []byte { return c.Do("FILE.WRITE", "/doc.md", v) },
			read:    func(c *testutil.Conn, _ string) []byte { return c.Do("FILE.GET", "/doc.md") },
			writeOK: func(b []byte) bool { return len(b) > 0 && b[0] == '*' }, readValue: bulkString},
	}
	var mu sync.Mutex
	var history []porcupine.Operation
	var total, accepted, refused, takeovers atomic.Int64
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	record := func(client int, in pfIn, out pfOut, call, ret time.Time) {
		in.call, in.ret = ms(call), ms(ret)
		mu.Lock()
		history = append(history, porcupine.Operation{ClientId: client, Input: in, Output: out,
			Call: call.UnixNano(), Return: ret.UnixNano()})
		mu.Unlock()
		total.Add(1)
	}
	checkWrite := func(res resource, b []byte) (bool, error) {
		switch {
		case res.writeOK(b):
			return true, nil
		case strings.HasPrefix(string(b), "-LOCKED"), strings.HasPrefix(string(b), "-FENCED"):
			return false, nil
		}
		return false, errors.New(string(b))
	}
	deadline := time.Now().Add(50 * time.Second)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			holder, plain := testutil.Dial(t, a.Addr()), testutil.Dial(t, a.Addr())
			rng := rand.New(rand.NewPCG(uint64(id), 11))
			held := map[string]int64{} // what the holder connection holds
			n := 0
			for total.Load() < target && time.Now().Before(deadline) {
				n++
				res := resources[rng.IntN(len(resources))]
				v := fmt.Sprintf("c%d-%d", id, n)
				if rng.IntN(3) == 0 {
					// A client that takes no lock writes plainly.
					t0 := time.Now()
					b := res.write(plain, v)
					t1 := time.Now()
					ok, err := checkWrite(res, b)
					if err != nil {
						t.Errorf("%s write: %v", res.name, err)
						return
					}
					if ok {
						accepted.Add(1)
					} else {
						refused.Add(1)
					}
					record(id, pfIn{res: res.name, op: "write", value: v}, pfOut{ok: ok}, t0, t1)
					continue
				}
				t0 := time.Now()
				reply := holder.Do("LOCK.ACQUIRE", res.name, "30", "WAIT", "100")
				t1 := time.Now()
				tok, exp := tokenOf(reply), expiresOf(reply)
				record(id, pfIn{res: res.name, op: "acquire"}, pfOut{ok: tok > 0, token: tok, exp: exp}, t0, t1)
				if tok == 0 {
					continue
				}
				if tok > 1 {
					takeovers.Add(1)
				}
				held[res.name] = tok
				if rng.IntN(4) == 0 {
					time.Sleep(40 * time.Millisecond) // past the TTL: the token goes stale
				}
				t0 = time.Now()
				b := res.write(holder, v)
				t1 = time.Now()
				ok, err := checkWrite(res, b)
				if err != nil {
					t.Errorf("%s holder write: %v", res.name, err)
					return
				}
				if ok {
					accepted.Add(1)
				} else {
					refused.Add(1)
				}
				record(id, pfIn{res: res.name, op: "write", token: tok, value: v}, pfOut{ok: ok}, t0, t1)
				if rng.IntN(2) == 0 {
					t0 = time.Now()
					g := res.read(plain, "")
					t1 = time.Now()
					record(id, pfIn{res: res.name, op: "read"}, pfOut{ok: true, value: res.readValue(g)}, t0, t1)
				}
				if rng.IntN(3) > 0 {
					t0 = time.Now()
					rel := holder.Do("LOCK.RELEASE", res.name, strconv.FormatInt(tok, 10))
					t1 = time.Now()
					record(id, pfIn{res: res.name, op: "release", token: tok}, pfOut{ok: string(rel) == ":1\r\n"}, t0, t1)
					delete(held, res.name)
				}
				// A lock left held expires; the connection keeps its token,
				// which goes stale: its next write to that resource without
				// acquiring must be FENCED.
				if tk, ok := held[res.name]; ok && rng.IntN(2) == 0 {
					time.Sleep(35 * time.Millisecond)
					v2 := v + "-late"
					t0 = time.Now()
					b := res.write(holder, v2)
					t1 = time.Now()
					ok, err := checkWrite(res, b)
					if err != nil {
						t.Errorf("%s late write: %v", res.name, err)
						return
					}
					if ok {
						accepted.Add(1)
					} else {
						refused.Add(1)
					}
					record(id, pfIn{res: res.name, op: "write", token: tk, value: v2}, pfOut{ok: ok}, t0, t1)
				}
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
	t.Logf("%d operations: %d writes accepted, %d refused (LOCKED/FENCED), %d takeovers", len(history), accepted.Load(), refused.Load(), takeovers.Load())
	if refused.Load() == 0 || accepted.Load() == 0 {
		t.Fatalf("the test did not exercise both outcomes")
	}
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(pfModel, history, 2*time.Minute)
	t.Logf("linearizability check: %v in %s", res, time.Since(start).Round(time.Millisecond))
	if res != porcupine.Ok {
		_ = info
		t.Fatalf("history is not linearizable against the fencing model (%v): a stale write or a write past a live lock was accepted", res)
	}
}

// expiresOf reads expires_at from a LOCK.ACQUIRE reply (RESP2), or 0.
func expiresOf(reply []byte) int64 {
	s := string(reply)
	i := strings.Index(s, "expires_at\r\n:")
	if i < 0 {
		return 0
	}
	s = s[i+len("expires_at\r\n:"):]
	n, _ := strconv.ParseInt(s[:strings.IndexByte(s, '\r')], 10, 64)
	return n
}
