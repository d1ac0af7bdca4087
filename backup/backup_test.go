package backup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

func fill(t *testing.T, ctx context.Context, rdb *redis.Client, p string) {
	t.Helper()
	must := func(c redis.Cmder) {
		if err := c.Err(); err != nil {
			t.Fatalf("%v: %v", c.Args(), err)
		}
	}
	must(rdb.Set(ctx, p+"kv:s", "hello", time.Hour))
	must(rdb.Set(ctx, p+"kv:forever", "x", 0))
	must(rdb.HSet(ctx, p+"kv:h", "a", "1", "b", "2"))
	must(rdb.Expire(ctx, p+"kv:h", 30*time.Minute))
	must(rdb.RPush(ctx, p+"kv:l", "1", "2", "3"))
	must(rdb.SAdd(ctx, p+"kv:set", "x", "y"))
	for i := 0; i < 200; i++ { // a hash table: each server orders it its own way
		must(rdb.SAdd(ctx, p+"kv:set", fmt.Sprint("m", i)))
		must(rdb.HSet(ctx, p+"kv:bighash", fmt.Sprint("f", i), i))
	}
	must(rdb.ZAdd(ctx, p+"kv:z", redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2.5, Member: "b"}))
	must(rdb.PFAdd(ctx, p+"kv:hll", "a", "b", "c"))
	must(rdb.XAdd(ctx, &redis.XAddArgs{Stream: p + "events:log", ID: "1-1", Values: []string{"f", "v"}}))
	must(rdb.XGroupCreate(ctx, p+"events:log", "g", "0"))
	must(rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c1", Streams: []string{p + "events:log", ">"}}))
	must(rdb.Set(ctx, "deepagents:{other}:kv:s", "not exported", 0))
}

// canonical is key's type and value, elements sorted where Redis keeps no
// order.
func canonical(t *testing.T, ctx context.Context, rdb *redis.Client, key string) string {
	t.Helper()
	typ := rdb.Type(ctx, key).Val()
	var v []string
	switch typ {
	case "string":
		v = []string{rdb.Get(ctx, key).Val()}
	case "hash":
		for f, x := range rdb.HGetAll(ctx, key).Val() {
			v = append(v, f+"="+x)
		}
	case "list":
		v = rdb.LRange(ctx, key, 0, -1).Val()
	case "set":
		v = rdb.SMembers(ctx, key).Val()
	case "zset":
		for _, z := range rdb.ZRangeWithScores(ctx, key, 0, -1).Val() {
			v = append(v, fmt.Sprint(z.Member, z.Score))
		}
	case "stream":
		for _, m := range rdb.XRange(ctx, key, "-", "+").Val() {
			v = append(v, fmt.Sprint(m.ID, m.Values))
		}
	default:
		t.Fatalf("%s: type %q", key, typ)
	}
	if typ == "hash" || typ == "set" {
		sort.Strings(v)
	}
	return typ + ":" + strings.Join(v, ",")
}

// TestExportImport: a workspace holding every data type, with TTLs, goes
// to a file and into an empty real Redis; every key, value and TTL comes
// back, --verify passes, and a tampered file is refused whole.
func TestExportImport(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartRedis(t)
	dst := testutil.StartRedis(t)
	s := redis.NewClient(&redis.Options{Addr: src.Addr})
	d := redis.NewClient(&redis.Options{Addr: dst.Addr})
	defer s.Close()
	defer d.Close()
	p := "deepagents:{acme}:"
	fill(t, ctx, s, p)

	file := filepath.Join(t.TempDir(), "acme.export")
	f, _ := os.Create(file)
	n, err := Export(ctx, s, "deepagents", "acme", f, nil)
	f.Close()
	if err != nil || n != 9 {
		t.Fatalf("export: %d keys, %v", n, err)
	}
	open := func() (io.ReadCloser, error) { return os.Open(file) }
	h, got, err := Import(ctx, d, open, Options{Verify: true})
	if err != nil || got != 9 || h.Workspace != "acme" {
		t.Fatalf("import: %d keys, %v (%+v)", got, err, h)
	}
	keys, _ := s.Keys(ctx, p+"*").Result()
	for _, k := range keys {
		if a, b := canonical(t, ctx, s, k), canonical(t, ctx, d, k); a != b {
			t.Errorf("%s differs after the import: %q, was %q", k, b, a)
		}
		ta, _ := s.PTTL(ctx, k).Result()
		tb, _ := d.PTTL(ctx, k).Result()
		if diff := ta - tb; diff < -time.Second || diff > time.Second {
			t.Errorf("%s: TTL %v in the source, %v after the import", k, ta, tb)
		}
	}
	if info, _ := d.XInfoGroups(ctx, p+"events:log").Result(); len(info) != 1 || info[0].Pending != 1 {
		t.Errorf("stream groups after the import: %+v", info)
	}
	if c, _ := d.PFCount(ctx, p+"kv:hll").Result(); c != 3 {
		t.Errorf("PFCOUNT after the import: %d", c)
	}
	if ex, _ := d.Exists(ctx, "deepagents:{other}:kv:s").Result(); ex != 0 {
		t.Error("a key of another workspace was exported")
	}

	// Importing again would overwrite: refused unless told.
	if _, _, err := Import(ctx, d, open, Options{}); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Errorf("import over existing keys: %v", err)
	}
	if _, n, err := Import(ctx, d, open, Options{Replace: true, Verify: true}); err != nil || n != 9 {
		t.Errorf("import --replace: %d, %v", n, err)
	}

	// A tampered file restores nothing.
	b, _ := os.ReadFile(file)
	i := bytes.Index(b, []byte("hello"))
	b[i] = 'j'
	bad := filepath.Join(t.TempDir(), "bad.export")
	os.WriteFile(bad, b, 0o600)
	empty := testutil.StartRedis(t)
	e := redis.NewClient(&redis.Options{Addr: empty.Addr})
	defer e.Close()
	_, _, err = Import(ctx, e, func() (io.ReadCloser, error) { return os.Open(bad) }, Options{Verify: true})
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("tampered file: %v", err)
	}
	if n, _ := e.DBSize(ctx).Result(); n != 0 {
		t.Errorf("a tampered file restored %d keys", n)
	}
	// A truncated one too.
	os.WriteFile(bad, b[:len(b)/2], 0o600)
	if _, _, err = Import(ctx, e, func() (io.ReadCloser, error) { return os.Open(bad) }, Options{}); err == nil {
		t.Error("a truncated file imported")
	}
}
