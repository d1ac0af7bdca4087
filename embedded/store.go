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
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
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
	m.ClockTTL(true) // keys expire on the wall clock, as in Redis
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
	return s, nil
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
	entries, skipped := s.collect()
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

// collect reads every key of every database. HyperLogLog keys cannot be
// read through miniredis's API and are skipped (counted).
func (s *Store) collect() ([]entry, int) {
	var out []entry
	skipped := 0
	for db := 0; db < dbs; db++ {
		d := s.m.DB(db)
		keys := d.Keys()
		sort.Strings(keys)
		for _, k := range keys {
			e := entry{DB: db, Key: k, Type: d.Type(k)}
			if ttl := d.TTL(k); ttl > 0 {
				e.Expire = time.Now().Add(ttl).UnixNano()
			}
			var err error
			switch e.Type {
			case "string":
				e.Str, err = d.Get(k)
			case "list":
				e.List, err = d.List(k)
			case "set":
				e.Set, err = d.Members(k)
			case "hash":
				var fields []string
				fields, err = d.HKeys(k)
				e.Hash = make(map[string]string, len(fields))
				for _, f := range fields {
					e.Hash[f] = d.HGet(k, f)
				}
			case "zset":
				var m map[string]float64
				m, err = d.SortedSet(k)
				for member, score := range m {
					e.ZSet = append(e.ZSet, zmember{member, score})
				}
				sort.Slice(e.ZSet, func(i, j int) bool { return e.ZSet[i].Member < e.ZSet[j].Member })
			case "stream":
				e.Stream, err = d.Stream(k)
			default:
				skipped++
				continue
			}
			if err != nil {
				continue // deleted or changed type while we read
			}
			out = append(out, e)
		}
	}
	return out, skipped
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
