// Package backup exports a workspace's keys from Redis to a file and
// imports them back: every data type with its TTL, as Redis's own DUMP and
// RESTORE serialise them, in a checksummed stream. It is the rollback path
// for agent state: export before a risky run, import into an empty Redis
// (or over the workspace, when told) to go back.
//
// The file: the line "AGENTPROXY-EXPORT 1", a JSON header line, then one
// record per key ('K', key, PTTL in ms or -1, DUMP payload; lengths as
// uvarints), then 'E', the key count and the SHA-256 of every byte before
// the 'E'. Import reads the file twice: once to check it whole, once to
// restore, so a damaged file restores nothing.
package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/redis/go-redis/v9"
)

const magic = "AGENTPROXY-EXPORT 1\n"

// Header describes an export.
type Header struct {
	Workspace string    `json:"workspace"`
	Pattern   string    `json:"pattern"`
	Created   time.Time `json:"created"`
	Redis     string    `json:"redis_version,omitempty"`
}

// Progress is called every so many keys with the count and bytes so far.
type Progress func(keys int, bytes int64)

// Export writes every key of workspace ws (keys <prefix>:{ws}:*) to w.
func Export(ctx context.Context, rdb *redis.Client, prefix, ws string, w io.Writer, progress Progress) (int, error) {
	h := Header{Workspace: ws, Pattern: prefix + ":{" + ws + "}:*", Created: time.Now().UTC()}
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		h.Redis = infoField(info, "redis_version")
	}
	out := &writer{w: bufio.NewWriterSize(w, 1<<20), sum: sha256.New()}
	hb, _ := json.Marshal(h)
	out.write([]byte(magic))
	out.write(append(hb, '\n'))
	n := 0
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, globEscape(prefix+":{"+ws+"}:")+"*", 1000).Result()
		if err != nil {
			return n, fmt.Errorf("SCAN: %w", err)
		}
		pipe := rdb.Pipeline()
		ttls := make([]*redis.Cmd, len(keys))
		dumps := make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			ttls[i] = pipe.Do(ctx, "PTTL", k)
			dumps[i] = pipe.Dump(ctx, k)
		}
		if len(keys) > 0 {
			pipe.Exec(ctx) // per-command errors below
		}
		for i, k := range keys {
			payload, err := dumps[i].Result()
			if errors.Is(err, redis.Nil) {
				continue // gone since SCAN
			}
			if err != nil {
				return n, fmt.Errorf("DUMP %s: %w", k, err)
			}
			ttl, err := ttls[i].Int64()
			if err != nil {
				return n, fmt.Errorf("PTTL %s: %w", k, err)
			}
			if ttl == -2 {
				continue
			}
			out.byte('K')
			out.bytes([]byte(k))
			out.varint(ttl)
			out.bytes([]byte(payload))
			n++
			if progress != nil && n%1000 == 0 {
				progress(n, out.n)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	sum := out.sum.Sum(nil)
	out.byte('E')
	out.uvarint(uint64(n))
	out.raw(sum)
	if out.err == nil {
		out.err = out.w.Flush()
	}
	if progress != nil {
		progress(n, out.n)
	}
	return n, out.err
}

// Options for Import.
type Options struct {
	// Replace overwrites keys that exist; without it Import refuses to
	// start when any of the file's keys exists.
	Replace bool
	// Verify reads every key back after the import and compares it with
	// the file (value, and TTL within a second).
	Verify   bool
	Progress Progress
}

// Import restores the export read from open (called twice: checked, then
// restored) into rdb. It returns the number of keys restored.
func Import(ctx context.Context, rdb *redis.Client, open func() (io.ReadCloser, error), o Options) (Header, int, error) {
	// Pass 1: the whole file checks out, and nothing would be overwritten.
	var existing []string
	h, _, err := scanFile(open, func(batch []record) error {
		if o.Replace {
			return nil
		}
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(batch))
		for i, r := range batch {
			cmds[i] = pipe.Exists(ctx, r.key)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("EXISTS: %w", err)
		}
		for i, c := range cmds {
			if c.Val() > 0 && len(existing) < 10 {
				existing = append(existing, batch[i].key)
			}
		}
		return nil
	})
	if err != nil {
		return h, 0, err
	}
	if len(existing) > 0 {
		return h, 0, fmt.Errorf("keys of the export exist in the target (%q ...); import into an empty target, or pass --replace to overwrite them", existing)
	}
	// Pass 2: restore.
	restored := 0
	_, _, err = scanFile(open, func(batch []record) error {
		pipe := rdb.Pipeline()
		for _, r := range batch {
			args := []any{"RESTORE", r.key, max(r.ttl, 0), r.payload}
			if o.Replace {
				args = append(args, "REPLACE")
			}
			if r.ttl == 0 {
				continue // expired while being exported
			}
			pipe.Do(ctx, args...)
		}
		cmds, err := pipe.Exec(ctx)
		for _, c := range cmds {
			if c.Err() != nil {
				return fmt.Errorf("%v: %w", c.Args()[:2], c.Err())
			}
		}
		if err != nil {
			return err
		}
		restored += len(cmds)
		if o.Progress != nil {
			o.Progress(restored, 0)
		}
		if o.Verify {
			return verify(ctx, rdb, batch)
		}
		return nil
	})
	return h, restored, err
}

// verify compares batch with what Redis holds now.
func verify(ctx context.Context, rdb *redis.Client, batch []record) error {
	pipe := rdb.Pipeline()
	dumps := make([]*redis.StringCmd, len(batch))
	ttls := make([]*redis.Cmd, len(batch))
	for i, r := range batch {
		dumps[i] = pipe.Dump(ctx, r.key)
		ttls[i] = pipe.Do(ctx, "PTTL", r.key)
	}
	pipe.Exec(ctx)
	for i, r := range batch {
		if r.ttl == 0 {
			continue
		}
		got, err := dumps[i].Result()
		if err != nil {
			return fmt.Errorf("verify %s: %w", r.key, err)
		}
		if got != string(r.payload) && !sameValue(ctx, rdb, r, got) {
			return fmt.Errorf("verify %s: the value in Redis differs from the export", r.key)
		}
		ttl, _ := ttls[i].Int64()
		if (r.ttl < 0) != (ttl < 0) || (r.ttl > 0 && (ttl > r.ttl || r.ttl-ttl > 1000)) {
			return fmt.Errorf("verify %s: TTL %d ms in Redis, %d ms in the export", r.key, ttl, r.ttl)
		}
	}
	return nil
}

// sameValue reports whether got (DUMP of the key) holds the same value as
// the export's payload. A hash table's DUMP lists its elements in the
// server's own order (each server seeds its hash function at random), so
// the payload is restored under a scratch name on the same server, whose
// DUMP then lists them the same way.
func sameValue(ctx context.Context, rdb *redis.Client, r record, got string) bool {
	scratch := fmt.Sprintf("agentproxy:import-verify:%d", time.Now().UnixNano())
	if err := rdb.Do(ctx, "RESTORE", scratch, 0, r.payload).Err(); err != nil {
		return false
	}
	defer rdb.Del(ctx, scratch)
	again, err := rdb.Dump(ctx, scratch).Result()
	return err == nil && again == got
}

type record struct {
	key     string
	ttl     int64
	payload []byte
}

// scanFile reads the export, hands its records to each in batches of 500
// and checks the trailer: count and checksum.
func scanFile(open func() (io.ReadCloser, error), each func([]record) error) (Header, int, error) {
	var h Header
	f, err := open()
	if err != nil {
		return h, 0, err
	}
	defer f.Close()
	// Records are hashed as they are parsed (bufio reads ahead of them).
	rd := &reader{r: bufio.NewReaderSize(f, 1<<20), sum: sha256.New()}
	line := func() ([]byte, error) {
		b, err := rd.r.ReadBytes('\n')
		rd.sum.Write(b)
		return b, err
	}
	m, err := line()
	if err != nil || string(m) != magic {
		return h, 0, errors.New("not an agentproxy export (bad first line)")
	}
	hl, err := line()
	if err != nil || json.Unmarshal(hl, &h) != nil {
		return h, 0, errors.New("export header is damaged")
	}
	var batch []record
	n := 0
	for {
		t, err := rd.byte()
		if err != nil {
			return h, n, errors.New("export is truncated (no trailer)")
		}
		if t == 'E' {
			want := rd.sum.Sum(nil)
			count, err := binary.ReadUvarint(rd.r)
			if err != nil {
				return h, n, errors.New("export trailer is damaged")
			}
			got := make([]byte, sha256.Size)
			if _, err := io.ReadFull(rd.r, got); err != nil {
				return h, n, errors.New("export trailer is damaged")
			}
			if !bytes.Equal(got, want) || count != uint64(n) {
				return h, n, fmt.Errorf("export checksum mismatch: the file was changed or damaged (%d records read, %d announced)", n, count)
			}
			if len(batch) > 0 {
				if err := each(batch); err != nil {
					return h, n, err
				}
			}
			return h, n, nil
		}
		if t != 'K' {
			return h, n, fmt.Errorf("export is damaged (record type %q)", t)
		}
		key, err := rd.bytes()
		if err != nil {
			return h, n, err
		}
		ttl, err := rd.varint()
		if err != nil {
			return h, n, err
		}
		payload, err := rd.bytes()
		if err != nil {
			return h, n, err
		}
		batch = append(batch, record{key: string(key), ttl: ttl, payload: payload})
		n++
		if len(batch) == 500 {
			if err := each(batch); err != nil {
				return h, n, err
			}
			batch = nil
		}
	}
}

type writer struct {
	w   *bufio.Writer
	sum hash.Hash
	n   int64
	err error
	tmp [binary.MaxVarintLen64]byte
}

func (w *writer) raw(b []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(b)
		w.n += int64(len(b))
	}
}
func (w *writer) write(b []byte) { w.sum.Write(b); w.raw(b) }
func (w *writer) byte(c byte)    { w.write([]byte{c}) }
func (w *writer) uvarint(v uint64) {
	n := binary.PutUvarint(w.tmp[:], v)
	w.write(w.tmp[:n])
}
func (w *writer) varint(v int64) {
	n := binary.PutVarint(w.tmp[:], v)
	w.write(w.tmp[:n])
}
func (w *writer) bytes(b []byte) { w.uvarint(uint64(len(b))); w.write(b) }

type reader struct {
	r   *bufio.Reader
	sum hash.Hash
}

func (r *reader) byte() (byte, error) {
	c, err := r.r.ReadByte()
	if err == nil && c != 'E' {
		r.sum.Write([]byte{c})
	}
	return c, err
}

func (r *reader) uvarint() (uint64, error) {
	v, err := binary.ReadUvarint(r.r)
	var tmp [binary.MaxVarintLen64]byte
	r.sum.Write(tmp[:binary.PutUvarint(tmp[:], v)])
	return v, err
}

func (r *reader) varint() (int64, error) {
	v, err := binary.ReadVarint(r.r)
	var tmp [binary.MaxVarintLen64]byte
	r.sum.Write(tmp[:binary.PutVarint(tmp[:], v)])
	return v, err
}

// maxRecord bounds one key or payload (Redis's own limit on a string is
// 512 MB).
const maxRecord = 1 << 30

func (r *reader) bytes() ([]byte, error) {
	n, err := r.uvarint()
	if err != nil || n > maxRecord {
		return nil, errors.New("export is damaged (bad length)")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return nil, errors.New("export is truncated")
	}
	r.sum.Write(b)
	return b, nil
}

// globEscape escapes the glob characters of s for SCAN MATCH.
func globEscape(s string) string {
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func infoField(info, field string) string {
	for _, l := range bytes.Split([]byte(info), []byte("\r\n")) {
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && string(k) == field {
			return string(v)
		}
	}
	return ""
}
