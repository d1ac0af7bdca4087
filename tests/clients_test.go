package tests

// Real clients through the proxy: go-redis v9 (which says HELLO 3 and
// CLIENT SETINFO on connect, and pools, pipelines, pins for transactions
// and pub/sub) in RESP3 and RESP2, and redis-cli in its command-line,
// --pipe, -3 and stdin modes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

// cliKey is a key in the default workspace, inside the key grammar.
func cliKey(name string) string { return "deepagents:{default}:kv:clients:" + name }

// cliChannel is a channel in the default workspace.
func cliChannel(name string) string { return "deepagents:{default}:events:clients:" + name }

// cliStart starts Redis and a proxy in front of it with the production
// access control (clients are agents of workspace "default", keys must
// follow the grammar), scripts allowed.
func cliStart(t *testing.T) (*testutil.Redis, *app.App) {
	t.Helper()
	r := testutil.StartRedis(t)
	cfg := testutil.EnforcingConfig(t, r.URL())
	cfg.Keyspace.AllowScripts = true
	return r, testutil.StartProxy(t, cfg)
}

// cliClient is a go-redis client of the proxy speaking protocol proto.
func cliClient(t *testing.T, addr string, proto int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, PoolSize: 8,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// cliAwaitBlocked waits until Redis reports n clients blocked.
func cliAwaitBlocked(t *testing.T, direct *redis.Client, n int) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	want := "blocked_clients:" + strconv.Itoa(n) + "\r"
	for {
		info, err := direct.Info(ctx, "clients").Result()
		if err == nil && strings.Contains(info, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis never had %d blocked clients: %v %s", n, err, info)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGoRedis runs go-redis through the proxy in both protocols.
func TestGoRedis(t *testing.T) {
	r, a := cliStart(t)
	direct := redis.NewClient(&redis.Options{Addr: r.Addr, Protocol: 2})
	t.Cleanup(func() { direct.Close() })
	for _, proto := range []int{3, 2} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			goRedisSuite(t, a.Addr(), direct, proto)
		})
	}
}

func goRedisSuite(t *testing.T, addr string, direct *redis.Client, proto int) {
	ctx := context.Background()
	c := cliClient(t, addr, proto)
	p := "p" + strconv.Itoa(proto) + ":"
	key := func(name string) string { return cliKey(p + name) }

	t.Run("hello", func(t *testing.T) {
		conn := c.Conn()
		defer conn.Close()
		// The connection said HELLO and CLIENT SETINFO; what it negotiated
		// is what the proxy answers.
		hello, err := conn.Do(ctx, "HELLO").Result()
		if err != nil {
			t.Fatalf("HELLO: %v", err)
		}
		s := fmt.Sprint(hello)
		if !strings.Contains(s, "proto "+strconv.Itoa(proto)) && !strings.Contains(s, "proto:"+strconv.Itoa(proto)) {
			t.Errorf("HELLO on a go-redis connection: %v, want proto %d", s, proto)
		}
		if got, err := conn.Ping(ctx).Result(); err != nil || got != "PONG" {
			t.Errorf("PING: %q %v", got, err)
		}
		if err := conn.ClientSetName(ctx, "agent-1").Err(); err != nil {
			t.Errorf("CLIENT SETNAME: %v", err)
		}
		if got, err := conn.ClientGetName(ctx).Result(); err != nil || got != "agent-1" {
			t.Errorf("CLIENT GETNAME: %q %v", got, err)
		}
	})

	t.Run("set get", func(t *testing.T) {
		if err := c.Set(ctx, key("s"), "value", 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		if got, err := c.Get(ctx, key("s")).Result(); err != nil || got != "value" {
			t.Errorf("GET: %q %v", got, err)
		}
		if _, err := c.Get(ctx, key("missing")).Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("GET missing: %v, want redis.Nil", err)
		}
		big := strings.Repeat("0123456789", 100_000)
		if err := c.Set(ctx, key("big"), big, time.Minute).Err(); err != nil {
			t.Fatalf("SET 1 MB: %v", err)
		}
		if got, err := c.Get(ctx, key("big")).Result(); err != nil || got != big {
			t.Errorf("GET 1 MB: %d bytes, %v", len(got), err)
		}
		if ttl, err := c.TTL(ctx, key("big")).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
			t.Errorf("TTL: %v %v", ttl, err)
		}
		if err := c.HSet(ctx, key("h"), "a", "1", "b", "2").Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := c.HGetAll(ctx, key("h")).Result(); err != nil || len(got) != 2 || got["a"] != "1" || got["b"] != "2" {
			t.Errorf("HGETALL: %v %v", got, err)
		}
		c.ZAdd(ctx, key("z"), redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: -3, Member: "b"})
		zs, err := c.ZRangeWithScores(ctx, key("z"), 0, -1).Result()
		if err != nil || len(zs) != 2 || zs[0].Member != "b" || zs[0].Score != -3 || zs[1].Score != 1.5 {
			t.Errorf("ZRANGE WITHSCORES: %v %v", zs, err)
		}
		if _, err := c.LPush(ctx, key("s"), "x").Result(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
			t.Errorf("LPUSH on a string: %v, want WRONGTYPE", err)
		}
	})

	t.Run("pipeline", func(t *testing.T) {
		cmds, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i := 0; i < 100; i++ {
				pipe.Incr(ctx, key("ctr"))
			}
			pipe.Get(ctx, key("ctr"))
			pipe.Get(ctx, key("nothing"))
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("pipeline: %v", err)
		}
		for i := 0; i < 100; i++ {
			if v, err := cmds[i].(*redis.IntCmd).Result(); err != nil || v != int64(i+1) {
				t.Fatalf("INCR %d in the pipeline: %d %v", i, v, err)
			}
		}
		if v, err := cmds[100].(*redis.StringCmd).Result(); err != nil || v != "100" {
			t.Errorf("GET at the end of the pipeline: %q %v", v, err)
		}
		if _, err := cmds[101].(*redis.StringCmd).Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("GET missing in the pipeline: %v", err)
		}
	})

	t.Run("concurrent pool", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := key("pool:" + strconv.Itoa(g))
				for i := 0; i < 50; i++ {
					v := strconv.Itoa(g*1000 + i)
					if err := c.Set(ctx, k, v, 0).Err(); err != nil {
						errs <- err
						return
					}
					if got, err := c.Get(ctx, k).Result(); err != nil || got != v {
						errs <- fmt.Errorf("goroutine %d: GET %q %v, want %q", g, got, err, v)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("TxPipelined", func(t *testing.T) {
		cmds, err := c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, key("tx"), "1", 0)
			pipe.Incr(ctx, key("tx"))
			pipe.Get(ctx, key("tx"))
			return nil
		})
		if err != nil {
			t.Fatalf("MULTI/EXEC: %v", err)
		}
		if v := cmds[2].(*redis.StringCmd).Val(); v != "2" {
			t.Errorf("GET inside the transaction: %q", v)
		}
		// An error inside EXEC is reported per command; the rest ran.
		cmds, err = c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.LPush(ctx, key("tx"), "x")
			pipe.Incr(ctx, key("tx"))
			return nil
		})
		if err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
			t.Errorf("EXEC with a failing command: %v", err)
		}
		if len(cmds) == 2 && cmds[1].(*redis.IntCmd).Val() != 3 {
			t.Errorf("INCR after a failed command in EXEC: %v", cmds[1])
		}
	})

	t.Run("WATCH", func(t *testing.T) {
		k := key("watched")
		c.Set(ctx, k, "0", 0)
		// Optimistic increments from many goroutines: each retries on
		// conflict, none is lost.
		const workers, each = 8, 10
		var wg sync.WaitGroup
		var mu sync.Mutex
		var conflicts int
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					for attempt := 0; ; attempt++ {
						err := c.Watch(ctx, func(tx *redis.Tx) error {
							n, err := tx.Get(ctx, k).Int()
							if err != nil {
								return err
							}
							_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
								pipe.Set(ctx, k, strconv.Itoa(n+1), 0)
								return nil
							})
							return err
						}, k)
						if err == nil {
							break
						}
						if !errors.Is(err, redis.TxFailedErr) || attempt > 1000 {
							errs <- err
							return
						}
						mu.Lock()
						conflicts++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got, _ := c.Get(ctx, k).Int(); got != workers*each {
			t.Errorf("after %d optimistic increments (%d conflicts): %d", workers*each, conflicts, got)
		}
		t.Logf("WATCH: %d increments, %d conflicts retried", workers*each, conflicts)

		// A write by another client between WATCH and EXEC aborts EXEC.
		err := c.Watch(ctx, func(tx *redis.Tx) error {
			if err := direct.Set(ctx, k, "changed", 0).Err(); err != nil {
				return err
			}
			_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Set(ctx, k, "mine", 0)
				return nil
			})
			return err
		}, k)
		if !errors.Is(err, redis.TxFailedErr) {
			t.Errorf("EXEC after a concurrent write: %v, want redis.TxFailedErr", err)
		}
		if got := c.Get(ctx, k).Val(); got != "changed" {
			t.Errorf("value after the aborted transaction: %q", got)
		}
	})

	t.Run("pubsub", func(t *testing.T) {
		ch := cliChannel(p + "chat")
		sub := c.Subscribe(ctx, ch)
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
			t.Fatalf("SUBSCRIBE: %v", err)
		}
		psub := c.PSubscribe(ctx, cliChannel(p+"*"))
		defer psub.Close()
		if _, err := psub.Receive(ctx); err != nil {
			t.Fatalf("PSUBSCRIBE: %v", err)
		}
		for i := 0; i < 3; i++ {
			n, err := c.Publish(ctx, ch, "hello "+strconv.Itoa(i)).Result()
			if err != nil || n != 2 {
				t.Fatalf("PUBLISH: %d receivers, %v; want 2", n, err)
			}
		}
		for i := 0; i < 3; i++ {
			m, err := sub.ReceiveTimeout(ctx, 5*time.Second)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			msg, ok := m.(*redis.Message)
			if !ok || msg.Channel != ch || msg.Payload != "hello "+strconv.Itoa(i) {
				t.Errorf("message %d: %#v", i, m)
			}
			m, err = psub.ReceiveTimeout(ctx, 5*time.Second)
			if err != nil {
				t.Fatalf("pattern message %d: %v", i, err)
			}
			if msg, ok := m.(*redis.Message); !ok || msg.Pattern != cliChannel(p+"*") || msg.Payload != "hello "+strconv.Itoa(i) {
				t.Errorf("pattern message %d: %#v", i, m)
			}
		}
		// PING inside subscriber mode, then leave.
		if err := sub.Ping(ctx, "x"); err != nil {
			t.Errorf("PING while subscribed: %v", err)
		}
		if m, err := sub.ReceiveTimeout(ctx, 5*time.Second); err != nil {
			t.Errorf("PING reply while subscribed: %v", err)
		} else if pong, ok := m.(*redis.Pong); !ok || pong.Payload != "x" {
			t.Errorf("PING reply while subscribed: %#v", m)
		}
		if err := sub.Unsubscribe(ctx, ch); err != nil {
			t.Errorf("UNSUBSCRIBE: %v", err)
		}
		// Go channel API.
		msgs := psub.Channel()
		c.Publish(ctx, cliChannel(p+"other"), "via channel")
		select {
		case m := <-msgs:
			if m.Payload != "via channel" {
				t.Errorf("Channel(): %#v", m)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("no message on Channel()")
		}
	})

	t.Run("BLPOP", func(t *testing.T) {
		k := key("queue")
		type res struct {
			v   []string
			err error
		}
		done := make(chan res, 1)
		go func() {
			v, err := c.BLPop(ctx, 5*time.Second, k).Result()
			done <- res{v, err}
		}()
		cliAwaitBlocked(t, direct, 1)
		// A blocked client stalls nobody: the pool keeps serving.
		if err := c.Set(ctx, key("during-blpop"), "x", 0).Err(); err != nil {
			t.Errorf("SET while another connection blocks: %v", err)
		}
		if err := c.RPush(ctx, k, "job-1").Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-done:
			if r.err != nil || len(r.v) != 2 || r.v[0] != k || r.v[1] != "job-1" {
				t.Errorf("BLPOP: %v %v", r.v, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("BLPOP not woken by RPUSH")
		}
		// go-redis rounds blocking timeouts up to whole seconds.
		start := time.Now()
		if _, err := c.BLPop(ctx, time.Second, key("empty")).Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("BLPOP timeout: %v, want redis.Nil", err)
		}
		if d := time.Since(start); d < 900*time.Millisecond || d > 4*time.Second {
			t.Errorf("BLPOP with 1 s timeout returned after %v", d)
		}
	})

	t.Run("scripts", func(t *testing.T) {
		k := key("script")
		got, err := c.Eval(ctx, "return redis.call('INCRBY', KEYS[1], ARGV[1])", []string{k}, 5).Int()
		if err != nil || got != 5 {
			t.Fatalf("EVAL: %d %v", got, err)
		}
		// redis.Script uses EVALSHA and falls back to EVAL on NOSCRIPT.
		s := redis.NewScript("return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1])}")
		if err := direct.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		v, err := s.Run(ctx, c, []string{k}, "arg").StringSlice()
		if err != nil || len(v) != 3 || v[0] != k || v[1] != "arg" || v[2] != "5" {
			t.Errorf("Script.Run after SCRIPT FLUSH: %v %v", v, err)
		}
		if _, err := c.EvalSha(ctx, s.Hash(), []string{k}, "arg").Result(); err != nil {
			t.Errorf("EVALSHA of a loaded script: %v", err)
		}
		if _, err := c.Eval(ctx, "return redis.error_reply('MY failure')", nil).Result(); err == nil || err.Error() != "MY failure" {
			t.Errorf("script error: %v", err)
		}
	})
}

// TestGoRedisEmbedded: the same client against the embedded store, as a
// developer trying the proxy would.
func TestGoRedisEmbedded(t *testing.T) {
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, "embedded"))
	for _, proto := range []int{3, 2} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			ctx := context.Background()
			c := cliClient(t, a.Addr(), proto)
			k := cliKey("emb" + strconv.Itoa(proto))
			if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if got, err := c.Get(ctx, k).Result(); err != nil || got != "v" {
				t.Errorf("GET: %q %v", got, err)
			}
			cmds, err := c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Incr(ctx, k+":n")
				pipe.Incr(ctx, k+":n")
				return nil
			})
			if err != nil || cmds[1].(*redis.IntCmd).Val() != 2 {
				t.Errorf("MULTI/EXEC: %v %v", cmds, err)
			}
			if got, err := c.HSet(ctx, k+":h", "f", "v").Result(); err != nil || got != 1 {
				t.Errorf("HSET: %d %v", got, err)
			}
			if got, err := c.HGetAll(ctx, k+":h").Result(); err != nil || got["f"] != "v" {
				t.Errorf("HGETALL: %v %v", got, err)
			}
		})
	}
}

// cliRun runs redis-cli with args (and stdin) and returns its output; it
// must exit 0.
func cliRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, code := cliRunStatus(t, stdin, args...)
	if code != 0 {
		t.Fatalf("redis-cli %v: exit status %d\n%s", args, code, out)
	}
	return out
}

// cliRunStatus runs redis-cli and returns its output (stdout then stderr)
// and exit status.
func cliRunStatus(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	path := testutil.NeedBinary(t, "redis-cli", "redis-tools")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String() + stderr.String(), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return out.String() + stderr.String(), ee.ExitCode()
	default:
		t.Fatalf("redis-cli %v: %v\nstdout: %s\nstderr: %s", args, err, out.String(), stderr.String())
		return "", -1
	}
}

// TestRedisCLI drives redis-cli through the proxy.
func TestRedisCLI(t *testing.T) {
	r, a := cliStart(t)
	port := a.Addr()[strings.LastIndex(a.Addr(), ":")+1:]
	k := cliKey("cli")

	if got := cliRun(t, "", "-p", port, "PING"); got != "PONG\n" {
		t.Errorf("PING: %q", got)
	}
	if got := cliRun(t, "", "-p", port, "SET", k, "hello world"); got != "OK\n" {
		t.Errorf("SET: %q", got)
	}
	if got := cliRun(t, "", "-p", port, "GET", k); got != "hello world\n" {
		t.Errorf("GET: %q", got)
	}
	if got := cliRun(t, "", "-p", port, "-r", "3", "INCR", k+":n"); got != "1\n2\n3\n" {
		t.Errorf("-r 3 INCR: %q", got)
	}
	// Errors are printed, with their code; the exit status stays 0.
	if got := cliRun(t, "", "-p", port, "LPUSH", k, "x"); !strings.HasPrefix(got, "WRONGTYPE") && !strings.HasPrefix(got, "(error) WRONGTYPE") {
		t.Errorf("LPUSH on a string: %q", got)
	}

	t.Run("stdin", func(t *testing.T) {
		// Not a terminal: redis-cli reads commands from standard input.
		if got := cliRun(t, "GET "+k+"\n", "-p", port); got != "hello world\n" {
			t.Errorf("echo GET | redis-cli: %q", got)
		}
		got := cliRun(t, "SET "+k+":a 1\nINCR "+k+":a\nGET "+k+":a\n", "-p", port)
		if got != "OK\n2\n2\n" {
			t.Errorf("three commands on stdin: %q", got)
		}
		// -x: the last argument from stdin.
		if got := cliRun(t, "from stdin", "-p", port, "-x", "SET", k+":x"); got != "OK\n" {
			t.Errorf("-x SET: %q", got)
		}
		if got := cliRun(t, "", "-p", port, "GET", k+":x"); got != "from stdin\n" {
			t.Errorf("GET after -x SET: %q", got)
		}
	})

	t.Run("pipe", func(t *testing.T) {
		// --pipe sends raw RESP as fast as it can and ends with an ECHO of
		// a random marker to know when the last reply has arrived.
		const n = 5000
		var in []byte
		for i := 0; i < n; i++ {
			in = upstream.AppendCommand(in, "SET", k+":pipe:"+strconv.Itoa(i), strconv.Itoa(i))
		}
		got := cliRun(t, string(in), "-p", port, "--pipe")
		if !strings.Contains(got, "errors: 0, replies: "+strconv.Itoa(n)) {
			t.Errorf("--pipe of %d commands:\n%s", n, got)
		}
		if v := cliRun(t, "", "-p", port, "GET", k+":pipe:4999"); v != "4999\n" {
			t.Errorf("GET after --pipe: %q", v)
		}
		// An error reply is counted and printed; redis-cli exits 1.
		in = upstream.AppendCommand(nil, "SET", k+":pipe:x", "1")
		in = upstream.AppendCommand(in, "INCR", k)
		got, code := cliRunStatus(t, string(in), "-p", port, "--pipe")
		if code != 1 || !strings.Contains(got, "errors: 1, replies: 2") || !strings.Contains(got, "ERR value is not an integer") {
			t.Errorf("--pipe with an error: exit %d\n%s", code, got)
		}
	})

	t.Run("RESP3", func(t *testing.T) {
		// redis-cli -3 prints RESP3 types its own way (maps as k => v, sets,
		// doubles); through the proxy it must print exactly what it prints
		// against Redis.
		cliRun(t, "", "-p", port, "HSET", k+":h", "f1", "v1", "f2", "v2")
		cliRun(t, "", "-p", port, "SADD", k+":s", "a")
		cliRun(t, "", "-p", port, "ZADD", k+":z", "1.5", "a", "2", "b")
		for _, cmd := range [][]string{
			{"HGETALL", k + ":h"},
			{"SMEMBERS", k + ":s"},
			{"ZRANGE", k + ":z", "0", "-1", "WITHSCORES"},
			{"ZSCORE", k + ":z", "a"},
			{"GET", k + ":nope"},
			{"GET", k},
		} {
			args := append([]string{"-3", "--no-raw"}, cmd...)
			proxied := cliRun(t, "", append([]string{"-p", port}, args...)...)
			direct := cliRun(t, "", append([]string{"-p", strconv.Itoa(r.Port)}, args...)...)
			if proxied != direct {
				t.Errorf("redis-cli -3 %v through the proxy:\n%s\ndirect:\n%s", cmd, proxied, direct)
			}
		}
		if got := cliRun(t, "", "-3", "--no-raw", "-p", port, "HGETALL", k+":h"); !strings.Contains(got, `1# "f1" => "v1"`) {
			t.Errorf("-3 HGETALL: %q, want a map", got)
		}
		got := cliRun(t, "", "-3", "--no-raw", "-p", port, "HELLO")
		if !strings.Contains(got, `"proto" => (integer) 3`) {
			t.Errorf("-3 HELLO: %q", got)
		}
	})
}
