package embedded_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/embedded"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// snapshotMagic is the header of a snapshot file (format v1): the magic,
// then the SHA-256 of the body, then the gob body.
const snapshotMagic = "AGENTPROXY-SNAPSHOT\x00v1\n"

func startStore(t *testing.T, path string, interval time.Duration) *embedded.Store {
	t.Helper()
	st, err := embedded.Start(path, interval, nil)
	if err != nil {
		t.Fatalf("start store %s: %v", path, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// storeScript is data of every type the snapshot keeps, with the reads that
// must answer byte for byte the same after a restart.
var storeScript = struct {
	writes [][]string
	reads  [][]string
}{
	writes: [][]string{
		{"SET", "str", "hello\r\nworld"},
		{"SET", "empty", ""},
		{"SET", "bin", "\x00\xff\x01"},
		{"RPUSH", "list", "a", "b", "c", "a"},
		{"HSET", "hash", "f1", "v1", "f2", "v2", "f3", ""},
		{"SADD", "set", "x", "y", "z"},
		{"ZADD", "zset", "1.5", "a", "-2", "b", "1e10", "c", "0.1", "d"},
		{"XADD", "stream", "1-1", "f", "v"},
		{"XADD", "stream", "2-0", "f1", "v1", "f2", "v2"},
		{"SET", "ttl", "v", "EX", "1000"},
		{"HSET", "ttlhash", "f", "v"},
		{"EXPIRE", "ttlhash", "500"},
		{"SELECT", "3"},
		{"SET", "db3", "in db 3"},
		{"SELECT", "0"},
	},
	reads: [][]string{
		{"GET", "str"}, {"GET", "empty"}, {"GET", "bin"},
		{"LRANGE", "list", "0", "-1"},
		{"HGETALL", "hash"},
		{"SMEMBERS", "set"},
		{"ZRANGE", "zset", "0", "-1", "WITHSCORES"},
		{"XRANGE", "stream", "-", "+"},
		{"TYPE", "str"}, {"TYPE", "list"}, {"TYPE", "hash"}, {"TYPE", "set"}, {"TYPE", "zset"}, {"TYPE", "stream"},
		{"TTL", "str"},
		{"DBSIZE"},
		{"SELECT", "3"}, {"GET", "db3"}, {"DBSIZE"}, {"SELECT", "0"},
	},
}

func pttl(t *testing.T, c *testutil.Conn, key string) int64 {
	t.Helper()
	r := c.DoS("PTTL", key)
	v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r, ":"), "\r\n"), 10, 64)
	if err != nil {
		t.Fatalf("PTTL %s: %q", key, r)
	}
	return v
}

// TestSnapshotRoundTrip: every type, several databases and TTLs survive a
// Close and Start; a TTL keeps running while the store is down.
func TestSnapshotRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "snap")
	st, err := embedded.Start(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.Dial(t, st.Addr())
	for _, w := range storeScript.writes {
		if r := c.DoS(w...); strings.HasPrefix(r, "-") {
			t.Fatalf("%v: %q", w, r)
		}
	}
	var before []string
	for _, r := range storeScript.reads {
		before = append(before, c.DoS(r...))
	}
	ttl0, hashTTL0 := pttl(t, c, "ttl"), pttl(t, c, "ttlhash")
	closed := time.Now()
	c.Close()
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	st2 := startStore(t, path, 0)
	c2 := testutil.Dial(t, st2.Addr())
	for i, r := range storeScript.reads {
		if got := c2.DoS(r...); got != before[i] {
			t.Errorf("%v after restart: %q, want %q", r, got, before[i])
		}
	}
	down := time.Since(closed)
	for key, want := range map[string]int64{"ttl": ttl0, "ttlhash": hashTTL0} {
		got := pttl(t, c2, key)
		// The TTL kept running while the store was down: never extended,
		// never lost.
		// The store's clock moves in ticks (up to 50 ms behind).
		if got <= 0 || got > want-down.Milliseconds()+60 {
			t.Errorf("PTTL %s after a %v restart: %d, want ≤ %d - %d", key, down, got, want, down.Milliseconds())
		}
	}
	// A new stream entry gets an ID after the restored ones.
	if r := c2.DoS("XADD", "stream", "2-0", "f", "v"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("XADD with an old ID after restart: %q, want an error", r)
	}
	if r := c2.DoS("XADD", "stream", "*", "f", "v"); !strings.HasPrefix(r, "$") {
		t.Errorf("XADD * after restart: %q", r)
	}
}

// TestSnapshotExpiredWhileDown: a key whose TTL ends while the store is down
// is gone after the restart.
func TestSnapshotExpiredWhileDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	st, err := embedded.Start(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.Dial(t, st.Addr())
	c.DoS("SET", "short", "v", "PX", "100")
	c.DoS("SET", "long", "v", "PX", "600000")
	set := time.Now()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// The TTL has to run out while nothing is running: that takes time.
	time.Sleep(150*time.Millisecond - time.Since(set))
	st2 := startStore(t, path, 0)
	c2 := testutil.Dial(t, st2.Addr())
	if got := c2.DoS("EXISTS", "short"); got != ":0\r\n" {
		t.Errorf("key expired while down still exists: %q", got)
	}
	if got := c2.DoS("EXISTS", "long"); got != ":1\r\n" {
		t.Errorf("key with a long TTL lost: %q", got)
	}
}

// TestSnapshotMissingFile: no file means an empty store; the directory and
// file are created on Close.
func TestSnapshotMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "snap")
	st, err := embedded.Start(path, 0, nil)
	if err != nil {
		t.Fatalf("missing snapshot must start empty: %v", err)
	}
	c := testutil.Dial(t, st.Addr())
	if got := c.DoS("DBSIZE"); got != ":0\r\n" {
		t.Errorf("DBSIZE: %q", got)
	}
	c.DoS("SET", "k", "v")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("snapshot not written on close: %v", err)
	}
	if !bytes.HasPrefix(b, []byte(snapshotMagic)) {
		t.Errorf("snapshot starts with %q", b[:min(len(b), 32)])
	}
}

// TestSnapshotNoPath keeps nothing on disk.
func TestSnapshotNoPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	st := startStore(t, "", time.Millisecond)
	testutil.Dial(t, st.Addr()).DoS("SET", "k", "v")
	if err := st.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files written without a path: %v", ents)
	}
}

// TestSnapshotCorrupt: a damaged or foreign file stops the start with an
// error that names the file and says what to do; it is not overwritten.
func TestSnapshotCorrupt(t *testing.T) {
	good := func(t *testing.T) []byte {
		path := filepath.Join(t.TempDir(), "snap")
		st, err := embedded.Start(path, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		testutil.Dial(t, st.Addr()).DoS("SET", "k", "v")
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}(t)
	header := len(snapshotMagic) + sha256.Size
	withSum := func(body []byte) []byte {
		sum := sha256.Sum256(body)
		return append(append([]byte(snapshotMagic), sum[:]...), body...)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-3] ^= 0x40
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty file", nil, "not an agentproxy snapshot"},
		{"foreign file", []byte("REDIS0011\xfa\tredis-ver"), "not an agentproxy snapshot"},
		{"truncated header", good[:len(snapshotMagic)+5], "not an agentproxy snapshot"},
		{"truncated body", good[:header+(len(good)-header)/2], "checksum mismatch"},
		{"flipped byte", flipped, "checksum mismatch"},
		{"future version", append([]byte("AGENTPROXY-SNAPSHOT\x00v2\n"), good[len(snapshotMagic):]...), "not an agentproxy snapshot"},
		{"bad body with valid checksum", withSum([]byte("not gob at all")), "embedded snapshot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := embedded.Start(path, 0, nil)
			if err == nil {
				st.Close()
				t.Fatalf("start with a corrupt snapshot succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want it to name %s and say %q", msg, path, tc.want)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, tc.data) {
				t.Errorf("corrupt snapshot was modified")
			}
		})
	}
	t.Run("unreadable path", func(t *testing.T) {
		path := t.TempDir() // a directory
		if st, err := embedded.Start(path, 0, nil); err == nil {
			st.Close()
			t.Fatalf("start with a directory as the snapshot file succeeded")
		} else if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name %s", err, path)
		}
	})
}

// readSnapshot checks that the file at path is one complete snapshot.
func readSnapshot(path string) (ok bool, why string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err.Error()
	}
	if !bytes.HasPrefix(b, []byte(snapshotMagic)) || len(b) < len(snapshotMagic)+sha256.Size {
		return false, "bad header"
	}
	b = b[len(snapshotMagic):]
	if sum := sha256.Sum256(b[sha256.Size:]); !bytes.Equal(sum[:], b[:sha256.Size]) {
		return false, "partial or damaged body"
	}
	return true, ""
}

// tempFiles lists files in dir other than the snapshot itself.
func tempFiles(t *testing.T, dir, snapshot string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != filepath.Base(snapshot) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestSnapshotAtomic: while snapshots are written over and over, a reader
// only ever sees a complete file (temp file + rename), and no temp file is
// left behind, also when the final rename fails.
func TestSnapshotAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snap")
	st := startStore(t, path, 0)
	c := testutil.Dial(t, st.Addr())
	big := strings.Repeat("x", 16<<10)
	for i := 0; i < 16; i++ {
		c.DoS("SET", "k"+strconv.Itoa(i), big)
	}
	if err := st.Snapshot(); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads, bad atomic.Int64
	var why atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if ok, w := readSnapshot(path); !ok {
				bad.Add(1)
				why.Store(w)
			}
			reads.Add(1)
		}
	}()
	for i := 0; i < 30 || reads.Load() < 30 && i < 1000; i++ {
		c.DoS("SET", "counter", strconv.Itoa(i))
		if err := st.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of %d reads saw an incomplete snapshot (%v)", bad.Load(), reads.Load(), why.Load())
	}
	if left := tempFiles(t, dir, path); len(left) > 0 {
		t.Errorf("files left next to the snapshot: %v", left)
	}

	// A failed write (here the rename: the target became a directory)
	// reports the error and leaves no temp file.
	dir2 := t.TempDir()
	path2 := filepath.Join(dir2, "snap")
	st2 := startStore(t, path2, 0)
	if err := os.Mkdir(path2, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path2, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st2.Snapshot(); err == nil {
		t.Errorf("snapshot over a directory succeeded")
	}
	if left := tempFiles(t, dir2, path2); len(left) > 0 {
		t.Errorf("failed snapshot left %v", left)
	}

	// A temp file left by a crashed writer does not disturb loading.
	if err := os.WriteFile(filepath.Join(dir, "snap.tmp123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st3 := startStore(t, path, 0)
	if got := testutil.Dial(t, st3.Addr()).DoS("GET", "k15"); len(got) != len(big)+len("$16384\r\n\r\n") {
		t.Errorf("GET k15 after restart: %d bytes", len(got))
	}
}

// TestSnapshotPeriodic: with an interval the file follows the data without
// a Close.
func TestSnapshotPeriodic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	st := startStore(t, path, 10*time.Millisecond)
	testutil.Dial(t, st.Addr()).DoS("SET", "periodic-key", "periodic-value")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte("periodic-value")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("periodic snapshot never contained the key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ok, why := readSnapshot(path); !ok {
		t.Errorf("periodic snapshot: %s", why)
	}
}

// TestSnapshotDuringWrites takes snapshots while clients modify every type
// in place. The store must neither crash (concurrent map access) nor race
// (run with -race), and the last snapshot must load.
func TestSnapshotDuringWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	st := startStore(t, path, 0)
	setup := testutil.Dial(t, st.Addr())
	setup.DoS("RPUSH", "list", "a", "b", "c", "d")
	setup.DoS("ZADD", "zset", "1", "a", "2", "b")
	setup.DoS("HSET", "hash", "a", "1")
	setup.DoS("SADD", "set", "a")
	for i := 0; i < 8; i++ {
		setup.DoS("XADD", "stream", "*", "i", strconv.Itoa(i))
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	writers := []func(c *testutil.Conn, i int){
		func(c *testutil.Conn, i int) { c.Do("ZADD", "zset", strconv.Itoa(i), "m"+strconv.Itoa(i%50)) },
		func(c *testutil.Conn, i int) { c.Do("ZREM", "zset", "m"+strconv.Itoa((i+25)%50)) },
		func(c *testutil.Conn, i int) { c.Do("LSET", "list", strconv.Itoa(i%4), "v"+strconv.Itoa(i)) },
		func(c *testutil.Conn, i int) { c.Do("HSET", "hash", "f"+strconv.Itoa(i%50), "v") },
		func(c *testutil.Conn, i int) { c.Do("SADD", "set", "m"+strconv.Itoa(i%50)) },
		func(c *testutil.Conn, i int) {
			c.Do("XADD", "stream", "*", "i", strconv.Itoa(i))
			c.Do("XTRIM", "stream", "MAXLEN", "20")
		},
		func(c *testutil.Conn, i int) {
			reply := c.DoS("XRANGE", "stream", "-", "+", "COUNT", "1")
			// Delete the oldest entry: an in-place shift of the entries.
			if parts := strings.Split(reply, "\r\n"); len(parts) > 3 {
				c.Do("XDEL", "stream", parts[3])
			}
		},
	}
	conns := make([]*testutil.Conn, len(writers))
	for i := range writers {
		conns[i] = testutil.Dial(t, st.Addr())
	}
	for k, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				w(conns[k], i)
			}
		}()
	}
	for i := 0; i < 60; i++ {
		if err := st.Snapshot(); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2 := startStore(t, path, 0)
	if got := testutil.Dial(t, st2.Addr()).DoS("TYPE", "zset"); got != "+zset\r\n" {
		t.Errorf("TYPE zset after restart: %q", got)
	}
}
