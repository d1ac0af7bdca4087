package testutil

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// isTimeout reports whether err is a read or write deadline error.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func TestSentinelSetupFailover(t *testing.T) {
	start := time.Now()
	s := StartSentinelSetup(t, "mymaster")
	t.Logf("sentinel setup up in %v", time.Since(start))
	if got := s.MasterAddr(t); got != s.Master.Addr {
		t.Fatalf("MasterAddr = %s, want %s", got, s.Master.Addr)
	}
	if want := "redis-sentinel://" + strings.Join(s.Sentinels, ",") + "/mymaster"; s.URL() != want || len(s.Sentinels) != 3 {
		t.Fatalf("URL = %s, want %s", s.URL(), want)
	}
	c := Dial(t, s.Master.Addr)
	if got := c.DoS("SET", "k", "before-failover"); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := c.DoS("WAIT", "1", "5000"); got != ":1\r\n" {
		t.Fatalf("WAIT: %q", got)
	}

	start = time.Now()
	m := s.Failover(t)
	t.Logf("failover took %v", time.Since(start))
	if m != s.Replica.Addr || s.RedisAt(m) != s.Replica {
		t.Fatalf("new master %s, want the replica %s", m, s.Replica.Addr)
	}
	if got := s.MasterAddr(t); got != m {
		t.Fatalf("MasterAddr after failover = %s, want %s", got, m)
	}
	nc := Dial(t, m)
	if got := nc.DoS("GET", "k"); got != "$15\r\nbefore-failover\r\n" {
		t.Fatalf("GET on new master: %q", got)
	}
	if got := nc.DoS("SET", "k2", "after"); got != "+OK\r\n" {
		t.Fatalf("SET on new master: %q", got)
	}
}

func TestClusterSlotHash(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	for _, tc := range []struct {
		key, hashed string
	}{
		{"{user1000}.following", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"},
		{"foo{{bar}}zap", "{bar"},
		{"foo{bar}{zap}", "bar"},
		{"{", "{"},
		{"}{", "}{"},
		{"", ""},
	} {
		if got, want := Slot(tc.key), int(crc16([]byte(tc.hashed))&16383); got != want {
			t.Errorf("Slot(%q) = %d, want %d (hash of %q)", tc.key, got, want, tc.hashed)
		}
	}
}

func TestCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3, 1)
	t.Logf("cluster up in %v", time.Since(start))
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes", len(c.Nodes))
	}
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("%d masters", len(masters))
	}
	if !strings.HasPrefix(c.URL(), "redis-cluster://") || len(strings.Split(strings.TrimPrefix(c.URL(), "redis-cluster://"), ",")) != 3 {
		t.Fatalf("URL = %s", c.URL())
	}

	t.Run("Keyslot", func(t *testing.T) {
		rng := rand.New(rand.NewSource(1))
		conn := Dial(t, c.Nodes[0].Addr)
		for i := 0; i < 200; i++ {
			var key string
			switch i % 4 {
			case 0:
				key = "key:" + strconv.Itoa(i)
			case 1:
				key = "{ws:" + strconv.Itoa(i) + "}:data"
			case 2:
				key = fmt.Sprintf("a{%d}b{c}", i)
			default: // random bytes, braces likely
				b := make([]byte, rng.Intn(12))
				for j := range b {
					b[j] = "{}ab\x00\xff"[rng.Intn(6)]
				}
				key = string(b)
			}
			want := conn.DoS("CLUSTER", "KEYSLOT", key)
			if got := ":" + strconv.Itoa(Slot(key)) + "\r\n"; got != want {
				t.Fatalf("Slot(%q) = %q, CLUSTER KEYSLOT says %q", key, got, want)
			}
		}
	})

	t.Run("MoveSlot", func(t *testing.T) {
		slot := Slot("{ws:42}")
		from := c.SlotOwner(t, slot)
		var to *Redis
		for _, m := range c.Masters(t) {
			if m != from {
				to = m
				break
			}
		}
		fc := Dial(t, from.Addr)
		for i := 0; i < 100; i++ {
			if got := fc.DoS("SET", "{ws:42}:"+strconv.Itoa(i), "v"+strconv.Itoa(i)); got != "+OK\r\n" {
				t.Fatalf("SET: %q", got)
			}
		}
		c.MoveSlot(t, slot, to)
		if got := c.SlotOwner(t, slot); got != to {
			t.Fatalf("slot %d owned by %s, want %s", slot, got.Addr, to.Addr)
		}
		tc := Dial(t, to.Addr)
		for i := 0; i < 100; i++ {
			want := "v" + strconv.Itoa(i)
			if got := tc.DoS("GET", "{ws:42}:"+strconv.Itoa(i)); got != "$"+strconv.Itoa(len(want))+"\r\n"+want+"\r\n" {
				t.Fatalf("GET on new owner: %q", got)
			}
		}
		if got := fc.DoS("CLUSTER", "COUNTKEYSINSLOT", strconv.Itoa(slot)); got != ":0\r\n" {
			t.Fatalf("old owner still has keys: %s", got)
		}
		if got := fc.DoS("GET", "{ws:42}:0"); !strings.HasPrefix(got, "-MOVED "+strconv.Itoa(slot)+" "+to.Addr) {
			t.Fatalf("old owner answers %q, want MOVED", got)
		}
	})

	t.Run("MoveSlotUnderLoad", func(t *testing.T) {
		// A cluster client keeps incrementing keys of one slot while the
		// slot moves away and back: no increment is lost.
		rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{c.Nodes[0].Addr}, Protocol: 2})
		defer rc.Close()
		ctx := context.Background()
		slot := Slot("{ws:7}")
		home := c.SlotOwner(t, slot)
		var away *Redis
		for _, m := range c.Masters(t) {
			if m != home {
				away = m
			}
		}
		stop := make(chan struct{})
		done := make(chan error, 1)
		var sent int
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				if err := rc.Incr(ctx, "{ws:7}:"+strconv.Itoa(i%50)).Err(); err != nil {
					done <- err
					return
				}
				sent++
			}
		}()
		time.Sleep(50 * time.Millisecond)
		c.MoveSlot(t, slot, away)
		c.MoveSlot(t, slot, home)
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("INCR during MoveSlot: %v", err)
		}
		total := 0
		for i := 0; i < 50; i++ {
			if v, err := ctl(home.Addr, "GET", "{ws:7}:"+strconv.Itoa(i)); err == nil && v != nil {
				k, _ := strconv.Atoi(str(v))
				total += k
			}
		}
		if total != sent || sent == 0 {
			t.Fatalf("keys sum to %d, %d increments were sent", total, sent)
		}
		t.Logf("%d increments while moving slot %d twice", sent, slot)
	})

	t.Run("Reshard", func(t *testing.T) {
		ms := c.Masters(t)
		count := func(r *Redis) int {
			ranges, err := clusterSlots(r.Addr)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, sr := range ranges {
				if sr.master == r.Addr {
					n += sr.end - sr.start + 1
				}
			}
			return n
		}
		before := count(ms[1])
		c.Reshard(t, ms[0], ms[1], 10)
		if after := count(ms[1]); after != before+10 {
			t.Fatalf("%s serves %d slots, want %d", ms[1].Addr, after, before+10)
		}
	})

	t.Run("Failover", func(t *testing.T) {
		var replica *Redis
		for _, r := range c.Nodes {
			if role(r.Addr) == "slave" {
				replica = r
				break
			}
		}
		v, _ := mustCtl(t, replica.Addr, "ROLE").([]any)
		oldMaster := c.node(net.JoinHostPort(str(v[1]), fmt.Sprint(v[2])))
		c.Failover(t, replica)
		if role(replica.Addr) != "master" {
			t.Fatal("replica is not master")
		}
		if got := len(c.Masters(t)); got != 3 {
			t.Fatalf("%d masters after failover", got)
		}
		if oldMaster == nil || role(oldMaster.Addr) != "slave" {
			t.Fatalf("old master %v is not a replica", oldMaster)
		}
	})

	t.Run("Restart", func(t *testing.T) {
		// A restarted node comes back as the same node with its data.
		m := c.SlotOwner(t, Slot("{ws:42}"))
		id := c.NodeID(t, m)
		m.Stop()
		m.Start()
		c.WaitOK(t)
		if got := c.NodeID(t, m); got != id {
			t.Fatalf("node ID %s after restart, was %s", got, id)
		}
		rc := Dial(t, m.Addr)
		rc.DoS("READONLY") // in case it lost its slots to its replica meanwhile
		if got := rc.DoS("GET", "{ws:42}:7"); got != "$2\r\nv7\r\n" {
			t.Fatalf("GET after restart: %q", got)
		}
	})
}

// shimGoroutines counts the goroutines running code of Shim.
func shimGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "testutil.(*Shim)")
}

func TestShim(t *testing.T) {
	r := StartRedis(t)

	t.Run("Forward", func(t *testing.T) {
		s := StartShim(t, r.Addr)
		c := Dial(t, s.Addr)
		if got := c.DoS("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
		if s.Conns() != 1 {
			t.Fatalf("Conns = %d", s.Conns())
		}
		big := strings.Repeat("x", 1<<20)
		c.DoS("SET", "big", big)
		if got := c.Do("GET", "big"); len(got) != len(big)+len("$1048576\r\n\r\n") {
			t.Fatalf("GET big: %d bytes", len(got))
		}
	})

	t.Run("Latency", func(t *testing.T) {
		s := StartShim(t, r.Addr)
		c := Dial(t, s.Addr)
		c.DoS("DEL", "n")
		const d = 100 * time.Millisecond
		s.SetLatency(d)
		start := time.Now()
		if got := c.DoS("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
		if rtt := time.Since(start); rtt < 2*d {
			t.Fatalf("round trip %v with latency %v each way", rtt, d)
		}
		// A pipeline keeps its order and pays the delay about once.
		start = time.Now()
		for i := 0; i < 50; i++ {
			c.Send("INCR", "n")
		}
		for i := 1; i <= 50; i++ {
			if got, want := string(c.Read()), ":"+strconv.Itoa(i)+"\r\n"; got != want {
				t.Fatalf("reply %d: %q", i, got)
			}
		}
		if el := time.Since(start); el < 2*d || el > 20*d {
			t.Fatalf("pipeline took %v", el)
		}
		s.SetLatency(0)
		start = time.Now()
		c.DoS("PING")
		if rtt := time.Since(start); rtt > d {
			t.Fatalf("round trip %v without latency", rtt)
		}
	})

	t.Run("Blackhole", func(t *testing.T) {
		s := StartShim(t, r.Addr)
		c := Dial(t, s.Addr)
		c.DoS("PING")
		s.Blackhole(true)
		c.Send("PING")
		if _, err := c.ReadTimeout(300 * time.Millisecond); !isTimeout(err) {
			t.Fatalf("read in blackhole: %v, want a timeout", err)
		}
		c2 := Dial(t, s.Addr) // new connections hang too
		c2.Send("PING")
		if _, err := c2.ReadTimeout(200 * time.Millisecond); !isTimeout(err) {
			t.Fatalf("new connection read in blackhole: %v, want a timeout", err)
		}
		s.Blackhole(false)
		for _, cc := range []*Conn{c, c2} {
			if got, err := cc.ReadTimeout(2 * time.Second); err != nil || string(got) != "+PONG\r\n" {
				t.Fatalf("held reply: %q %v", got, err)
			}
		}
	})

	t.Run("Cut", func(t *testing.T) {
		s := StartShim(t, r.Addr)
		a, b := Dial(t, s.Addr), Dial(t, s.Addr)
		a.DoS("PING")
		b.DoS("PING")
		s.Cut()
		if s.Conns() != 0 {
			t.Fatalf("Conns after Cut = %d", s.Conns())
		}
		for _, cc := range []*Conn{a, b} {
			if _, err := cc.ReadTimeout(2 * time.Second); err == nil || isTimeout(err) {
				t.Fatalf("read after Cut: %v, want connection closed", err)
			}
		}
		if got := Dial(t, s.Addr).DoS("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING after Cut: %q", got)
		}
	})

	t.Run("Refuse", func(t *testing.T) {
		s := StartShim(t, r.Addr)
		old := Dial(t, s.Addr)
		old.DoS("PING")
		s.Refuse(true)
		// The reset arrives so fast that the dial itself may fail.
		if nc, err := net.DialTimeout("tcp", s.Addr, 2*time.Second); err == nil {
			nc.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := nc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("read on refused connection: %v, want reset", err)
			}
			nc.Close()
		}
		if got := old.DoS("PING"); got != "+PONG\r\n" {
			t.Fatalf("existing connection: %q", got)
		}
		s.Refuse(false)
		if got := Dial(t, s.Addr).DoS("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING after Refuse(false): %q", got)
		}
	})

	t.Run("SetTarget", func(t *testing.T) {
		r2 := StartRedis(t)
		Dial(t, r2.Addr).DoS("SET", "where", "r2")
		s := StartShim(t, r.Addr)
		old := Dial(t, s.Addr)
		old.DoS("SET", "where", "r1")
		s.SetTarget(r2.Addr)
		if got := Dial(t, s.Addr).DoS("GET", "where"); got != "$2\r\nr2\r\n" {
			t.Fatalf("new connection reads %q", got)
		}
		if got := old.DoS("GET", "where"); got != "$2\r\nr1\r\n" {
			t.Fatalf("old connection reads %q", got)
		}
	})

	t.Run("ServerGone", func(t *testing.T) {
		r3 := StartRedis(t)
		s := StartShim(t, r3.Addr)
		c := Dial(t, s.Addr)
		c.DoS("PING")
		r3.Stop()
		if _, err := c.ReadTimeout(2 * time.Second); err == nil || isTimeout(err) {
			t.Fatalf("read after server died: %v, want closed", err)
		}
		c.Close()
		waitUntil(t, 2*time.Second, "shim to drop the connection", func() (bool, string) {
			return s.Conns() == 0, strconv.Itoa(s.Conns())
		})
	})

	// Every subtest's shim is closed by now: none of its goroutines is left.
	if n := shimGoroutines(); n != 0 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d shim goroutines left:\n%s", n, buf[:runtime.Stack(buf, true)])
	}
}
