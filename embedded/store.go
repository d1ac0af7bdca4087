// Package embedded runs the in-process Redis-compatible store (miniredis)
// that agentproxy uses when no upstream is configured, and keeps it across
// restarts with snapshots: written atomically (temp file, fsync, rename) on
// shutdown and periodically, checksummed, and loaded at start.
//
// Goroutines: the miniredis server's own; one snapshot ticker, owned by the
// Store and stopped by Close.
package embedded

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// dbs is how many databases are snapshotted (Redis's default count).
const dbs = 16

// magic starts every snapshot file; the version follows it.
var magic = []byte("AGENTPROXY-SNAPSHOT\x00v1\n")

// entry is one key in a snapshot.
type entry struct {
	DB     int
	Key    string
	Type   string
	Expire int64 // unix nanoseconds; 0: no expiry
	Str    string
	List   []string
	Set    []string
	Hash   map[string]string
	ZSet   []zmember
	Stream []miniredis.StreamEntry
}

type zmember struct {
	Member string
	Score  float64
}

// Store is a running embedded store.
type Store struct {
	m    *miniredis.Miniredis
	path string
	log  *zap.Logger

	mu     sync.Mutex // serialises snapshots
	stop   chan struct{}
	wg     sync.WaitGroup
	closed bool
}

// Start loads the snapshot at path (if any), starts miniredis on a free
// loopback port and snapshots every interval (0: only on Close). An empty
// path keeps nothing on disk.
func Start(path string, interval time.Duration, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	m := miniredis.NewMiniRedis()
	s := &Store{m: m, path: path, log: log, stop: make(chan struct{})}
	if path != "" {
		n, err := s.load()
		if err != nil {
			return nil, err
		}
		if n >= 0 {
			log.Info("embedded store loaded", zap.String("file", path), zap.Int("keys", n))
		}
	}
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	if path != "" && interval > 0 {
		s.wg.Add(1)
		go s.ticker(interval)
	}
	s.wg.Add(1)
	go s.clock()
	return s, nil
}

// clock makes keys expire on the wall clock, as in Redis. miniredis's own
// ClockTTL walks and sorts every key before every command (a GET costs
// milliseconds at 20k keys), so instead the clock is advanced in the
// background, at most every 50 ms and never taking more than ~5% of a core:
// a key may outlive its TTL by up to one tick.
func (s *Store) clock() {
	defer s.wg.Done()
	const minTick = 50 * time.Millisecond
	tick := minTick
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(tick):
		}
		now := time.Now()
		s.m.FastForward(now.Sub(last))
		last = now
		tick = max(minTick, 20*time.Since(now))
	}
}

// Addr is the loopback address the store listens on.
func (s *Store) Addr() string { return s.m.Addr() }

// Miniredis exposes the store to tests.
func (s *Store) Miniredis() *miniredis.Miniredis { return s.m }

func (s *Store) ticker(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Snapshot(); err != nil {
				s.log.Error("embedded snapshot failed", zap.String("file", s.path), zap.Error(err))
			}
		}
	}
}

// Close writes a final snapshot and stops the store.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	var err error
	if s.path != "" {
		err = s.snapshot()
	}
	s.m.Close()
	return err
}

// Snapshot writes the store to its file now.
func (s *Store) Snapshot() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || s.path == "" {
		return nil
	}
	return s.snapshot()
}

func (s *Store) snapshot() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	entries, skipped, err := s.collect()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	var body bytes.Buffer
	if err := gob.NewEncoder(&body).Encode(entries); err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	sum := sha256.Sum256(body.Bytes())
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(magic)
	if err == nil {
		_, err = tmp.Write(sum[:])
	}
	if err == nil {
		_, err = tmp.Write(body.Bytes())
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	fields := []zap.Field{zap.String("file", s.path), zap.Int("keys", len(entries)), zap.Duration("took", time.Since(start))}
	if skipped > 0 {
		fields = append(fields, zap.Int("skipped_hyperloglog_keys", skipped))
	}
	s.log.Debug("embedded snapshot written", fields...)
	return nil
}

// collectScript reads the keys it is given in one Lua call, which miniredis
// runs under its lock: every value is read whole and copied. (miniredis's
// direct API hands out its internal maps and slices, which clients modify
// while a snapshot encodes them: a data race, and for sorted sets a fatal
// concurrent map access that kills the process.) Keys deleted since they
// were listed are left out.
const collectScript = `
local out, n = {}, 0
for _, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k)['ok']
  if t ~= 'none' then
    local v = {}
    if t == 'string' then v = {redis.call('GET', k)}
    elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
    elseif t == 'set' then v = redis.call('SMEMBERS', k)
    elseif t == 'hash' then v = redis.call('HGETALL', k)
    elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
    elseif t == 'stream' then v = redis.call('XRANGE', k, '-', '+')
    end
    n = n + 1
    out[n] = {k, t, redis.call('PTTL', k), v}
  end
end
return out
`

// collectChunk bounds how many keys one script reads, and so how long the
// store stops serving clients for a snapshot.
const collectChunk = 2048

// collect reads every key of every database. HyperLogLog keys cannot be
// read back and are skipped (counted).
func (s *Store) collect() ([]entry, int, error) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: s.m.Addr(), Protocol: 2, DisableIdentity: true,
		PoolSize: 1, MaxRetries: -1, ReadTimeout: -1})
	defer c.Close()
	conn := c.Conn()
	defer conn.Close()
	var out []entry
	skipped := 0
	for db := 0; db < dbs; db++ {
		keys := s.m.DB(db).Keys()
		if len(keys) == 0 {
			continue
		}
		if err := conn.Select(ctx, db).Err(); err != nil {
			return nil, 0, fmt.Errorf("read database %d: %w", db, err)
		}
		for len(keys) > 0 {
			chunk := keys[:min(len(keys), collectChunk)]
			keys = keys[len(chunk):]
			// The snapshot's expiry times count from base; the store's
			// clock advances in the background (see clock).
			base := time.Now()
			res, err := conn.Eval(ctx, collectScript, chunk).Slice()
			if err != nil {
				return nil, 0, fmt.Errorf("read database %d: %w", db, err)
			}
			for _, item := range res {
				if e, ok := decodeEntry(db, item, base); ok {
					out = append(out, e)
				} else {
					skipped++
				}
			}
		}
	}
	return out, skipped, nil
}

// decodeEntry turns one {key, type, pttl, values} item of collectScript's
// reply into an entry; ok is false for types the snapshot cannot keep.
func decodeEntry(db int, item any, now time.Time) (e entry, ok bool) {
	f, _ := item.([]any)
	if len(f) != 4 {
		return e, false
	}
	e.DB = db
	e.Key, _ = f[0].(string)
	e.Type, _ = f[1].(string)
	if pttl, _ := f[2].(int64); pttl > 0 {
		e.Expire = now.Add(time.Duration(pttl) * time.Millisecond).UnixNano()
	}
	vals, _ := f[3].([]any)
	strs := func(vs []any) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i], _ = v.(string)
		}
		return out
	}
	switch e.Type {
	case "string":
		if len(vals) != 1 {
			return e, false
		}
		e.Str, _ = vals[0].(string)
	case "list":
		e.List = strs(vals)
	case "set":
		e.Set = strs(vals)
	case "hash":
		kv := strs(vals)
		e.Hash = make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			e.Hash[kv[i]] = kv[i+1]
		}
	case "zset":
		kv := strs(vals)
		for i := 0; i+1 < len(kv); i += 2 {
			score, err := strconv.ParseFloat(kv[i+1], 64)
			if err != nil {
				return e, false
			}
			e.ZSet = append(e.ZSet, zmember{kv[i], score})
		}
	case "stream":
		for _, v := range vals {
			pair, _ := v.([]any)
			if len(pair) != 2 {
				return e, false
			}
			id, _ := pair[0].(string)
			fields, _ := pair[1].([]any)
			e.Stream = append(e.Stream, miniredis.StreamEntry{ID: id, Values: strs(fields)})
		}
	default:
		return e, false
	}
	return e, true
}

// load restores the snapshot file. It returns -1 when there is none.
func (s *Store) load() (int, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("embedded snapshot %s: %w", s.path, err)
	}
	if !bytes.HasPrefix(b, magic) || len(b) < len(magic)+sha256.Size {
		return 0, fmt.Errorf("embedded snapshot %s: not an agentproxy snapshot; move it away to start empty", s.path)
	}
	b = b[len(magic):]
	want, body := b[:sha256.Size], b[sha256.Size:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], want) {
		return 0, fmt.Errorf("embedded snapshot %s: checksum mismatch (file damaged); move it away to start empty", s.path)
	}
	var entries []entry
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(&entries); err != nil {
		return 0, fmt.Errorf("embedded snapshot %s: %w", s.path, err)
	}
	now := time.Now().UnixNano()
	for _, e := range entries {
		if e.DB < 0 || e.DB >= dbs || e.Expire != 0 && e.Expire <= now {
			continue // expired while the proxy was down
		}
		d := s.m.DB(e.DB)
		switch e.Type {
		case "string":
			d.Set(e.Key, e.Str)
		case "list":
			d.Push(e.Key, e.List...)
		case "set":
			d.SetAdd(e.Key, e.Set...)
		case "hash":
			for f, v := range e.Hash {
				d.HSet(e.Key, f, v)
			}
		case "zset":
			for _, z := range e.ZSet {
				d.ZAdd(e.Key, z.Score, z.Member)
			}
		case "stream":
			for _, se := range e.Stream {
				d.XAdd(e.Key, se.ID, se.Values)
			}
		}
		if e.Expire != 0 {
			d.SetTTL(e.Key, time.Duration(e.Expire-now))
		}
	}
	return len(entries), nil
}
