// Package lint scans a live Redis keyspace for keys that break the
// agentproxy key grammar, for CI and migrations. It uses SCAN (never KEYS),
// so it is safe on a production server.
package lint

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentproxy/agentproxy/keyspace"
)

// Finding categories.
const (
	Outside     = "outside_grammar"   // not <prefix>:{<ws>}:<kind>...
	UnknownKind = "unknown_kind"      // grammar shape, kind not configured
	UnknownWS   = "unknown_workspace" // workspace not configured (only with Workspaces set)
	// OrphanChunk is a file chunk (files:<path>:v<gen>:chunk:<n>) that no
	// version uses and that will not expire: left by an interrupted
	// delete or a bug. Staged upload chunks carry a TTL and are not
	// findings.
	OrphanChunk   = "orphaned_file_chunk"
	examplesLimit = 20
)

// Options configure a scan.
type Options struct {
	Grammar *keyspace.Grammar
	// Workspaces, when non-empty, are the known workspaces; keys of others
	// are findings.
	Workspaces []string
	// Count is the SCAN COUNT hint.
	Count int64
	// Match narrows the scan (default: everything).
	Match string
	// Progress receives a line every ProgressEvery keys (nil: none).
	Progress      io.Writer
	ProgressEvery int
}

// Report is the result of a scan.
type Report struct {
	Scanned    int
	Findings   map[string]int
	Examples   map[string][]string
	Workspaces map[string]int // keys per workspace (well-formed keys only)
	Took       time.Duration
}

// chunkOf splits a chunk key into its file's metadata key and generation.
func chunkOf(k string) (meta, gen string, ok bool) {
	i := strings.LastIndex(k, ":chunk:")
	if i < 0 {
		return "", "", false
	}
	j := strings.LastIndex(k[:i], ":v")
	if j < 0 {
		return "", "", false
	}
	return k[:j], k[j+2 : i], true
}

// orphans checks chunk keys against their file's current generation, in
// one pipelined round trip: a chunk of another generation without a TTL is
// a finding.
func (r *Report) orphans(ctx context.Context, c *redis.Client, chunks []string) error {
	if len(chunks) == 0 {
		return nil
	}
	pipe := c.Pipeline()
	gens := make([]*redis.StringCmd, len(chunks))
	ttls := make([]*redis.DurationCmd, len(chunks))
	for i, k := range chunks {
		meta, _, _ := chunkOf(k)
		gens[i] = pipe.HGet(ctx, meta, "gen")
		ttls[i] = pipe.PTTL(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return err
	}
	for i, k := range chunks {
		_, gen, _ := chunkOf(k)
		cur, _ := gens[i].Result()
		ttl, err := ttls[i].Result()
		if err == nil && ttl < 0 && cur != gen {
			r.add(OrphanChunk, k)
		}
	}
	return nil
}

// Total is the number of findings.
func (r *Report) Total() int {
	n := 0
	for _, v := range r.Findings {
		n += v
	}
	return n
}

// Run scans the keyspace of rdb.
func Run(ctx context.Context, rdb redis.UniversalClient, o Options) (*Report, error) {
	if o.Count <= 0 {
		o.Count = 1000
	}
	if o.Match == "" {
		o.Match = "*"
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 100000
	}
	known := map[string]bool{}
	for _, w := range o.Workspaces {
		known[w] = true
	}
	r := &Report{Findings: map[string]int{}, Examples: map[string][]string{}, Workspaces: map[string]int{}}
	start := time.Now()
	next := o.ProgressEvery
	scan := func(ctx context.Context, c *redis.Client) error {
		var cursor uint64
		for {
			keys, cur, err := c.Scan(ctx, cursor, o.Match, o.Count).Result()
			if err != nil {
				return err
			}
			var chunks []string
			for _, k := range keys {
				r.Scanned++
				ws, kind, ok := o.Grammar.ParseKey(k)
				if ok && kind == "files" {
					if _, _, isChunk := chunkOf(k); isChunk {
						chunks = append(chunks, k)
					}
				}
				switch {
				case ws == "":
					r.add(Outside, k)
				case !ok:
					r.add(UnknownKind, k+" (kind "+quote(kind)+")")
				case len(known) > 0 && !known[ws]:
					r.add(UnknownWS, k)
				default:
					r.Workspaces[ws]++
				}
			}
			if err := r.orphans(ctx, c, chunks); err != nil {
				return err
			}
			if o.Progress != nil && r.Scanned >= next {
				fmt.Fprintf(o.Progress, "lint: %d keys scanned, %d findings, %s\n", r.Scanned, r.Total(), time.Since(start).Round(time.Millisecond))
				next += o.ProgressEvery
			}
			if cur == 0 {
				return nil
			}
			cursor = cur
		}
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, scan)
	} else if c, ok := rdb.(*redis.Client); ok {
		err = scan(ctx, c)
	} else {
		err = fmt.Errorf("lint: unsupported client %T", rdb)
	}
	r.Took = time.Since(start)
	return r, err
}

func (r *Report) add(cat, example string) {
	r.Findings[cat]++
	if len(r.Examples[cat]) < examplesLimit {
		r.Examples[cat] = append(r.Examples[cat], example)
	}
}

func quote(s string) string {
	if s == "" {
		return "missing"
	}
	return "'" + s + "'"
}

// Write prints the report for people (and CI logs).
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "scanned %d keys in %s\n", r.Scanned, r.Took.Round(time.Millisecond))
	wss := make([]string, 0, len(r.Workspaces))
	for ws := range r.Workspaces {
		wss = append(wss, ws)
	}
	sort.Strings(wss)
	for _, ws := range wss {
		fmt.Fprintf(w, "  workspace %-20s %d keys\n", ws, r.Workspaces[ws])
	}
	if r.Total() == 0 {
		fmt.Fprintln(w, "no findings")
		return
	}
	cats := make([]string, 0, len(r.Findings))
	for c := range r.Findings {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	fmt.Fprintf(w, "%d findings:\n", r.Total())
	for _, c := range cats {
		fmt.Fprintf(w, "  %s: %d\n", c, r.Findings[c])
		for _, ex := range r.Examples[c] {
			fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(ex, "\n", "\\n"))
		}
		if extra := r.Findings[c] - len(r.Examples[c]); extra > 0 {
			fmt.Fprintf(w, "    ... and %d more\n", extra)
		}
	}
}
