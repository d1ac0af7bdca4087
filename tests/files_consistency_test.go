package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

// flReader reads path n times (or until stop is set, when n is 0) and
// checks that every read is a single version, never older than the last.
// TRYAGAIN answers are counted apart; more than half of them fails.
type flReader struct {
	kind                                       flReadKind
	reads, mixed, backwards, errored, tryagain int
	seen                                       map[int]bool
	first                                      error
}

func (r *flReader) run(c *flConn, path string, n int, stop *atomic.Bool, which func([]byte) (int, error)) {
	r.seen = map[int]bool{}
	last := -1
	note := func(err error) {
		if r.first == nil {
			r.first = err
		}
	}
	for i := 0; n == 0 && !stop.Load() || n > 0 && i < n; i++ {
		r.reads++
		got, err := r.kind.read(c, path)
		if err != nil && strings.HasPrefix(err.Error(), "TRYAGAIN") {
			// The proxy gave up re-reading a file that kept changing: not
			// in the contract, allowed (the client retries), counted.
			r.tryagain++
			continue
		}
		if err != nil {
			r.errored++
			note(fmt.Errorf("%s read %d: %v", r.kind.name, i, err))
			if !strings.HasPrefix(err.Error(), "ERR") && !strings.HasPrefix(err.Error(), "TRYAGAIN") {
				return // the connection broke
			}
			continue
		}
		k, err := which(got)
		if err != nil {
			r.mixed++
			note(fmt.Errorf("%s read %d: %v", r.kind.name, i, err))
			continue
		}
		if k < last {
			r.backwards++
			note(fmt.Errorf("%s read %d: version v%d after v%d", r.kind.name, i, k, last))
		}
		last = k
		r.seen[k] = true
	}
}

// TestFilesConsistency (acceptance 4, readers): one writer overwrites
// /c.txt with 250+ versions spanning 12 chunks of 256 bytes while a reader
// does 1,000 FILE.GETs (and, alongside, others 1,000 FILE.READs and
// FILE.GETRANGEs): every read is exactly one version, and versions never
// go backwards for a reader.
func TestFilesConsistency(t *testing.T) {
	flBackends(t, 256, func(t *testing.T, b lkBackend) {
		w := flDial(t, b.addr)
		if rep, err := w.send2("FILE.WRITE", "/c.txt", flVersion(0)); err != nil || rep[0] == '-' {
			t.Fatalf("first write: %q %v", rep, err)
		}
		const minWrites, reads = 250, 1000
		var readersDone atomic.Bool
		var writes int
		werr := make(chan error, 1)
		go func() {
			for k := 1; ; k++ {
				if k > minWrites && readersDone.Load() {
					writes = k - 1
					werr <- nil
					return
				}
				rep, err := w.send2("FILE.WRITE", "/c.txt", flVersion(k))
				if err != nil || rep[0] == '-' {
					writes = k - 1
					werr <- fmt.Errorf("write v%d: %q %v", k, rep, err)
					return
				}
			}
		}()
		readers := make([]*flReader, len(flReadKinds))
		var wg sync.WaitGroup
		t0 := time.Now()
		for i, kind := range flReadKinds {
			readers[i] = &flReader{kind: kind}
			c := flDial(t, b.addr)
			wg.Add(1)
			go func(r *flReader) {
				defer wg.Done()
				r.run(c, "/c.txt", reads, nil, flWhichVersion)
			}(readers[i])
		}
		wg.Wait()
		readersDone.Store(true)
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		el := time.Since(t0).Round(time.Millisecond)
		for _, r := range readers {
			t.Logf("%s: %d x %s in %v (%d writes in all): %d distinct versions; mixed %d, backwards %d, errors %d, TRYAGAIN %d",
				b.name, r.reads, r.kind.name, el, writes, len(r.seen), r.mixed, r.backwards, r.errored, r.tryagain)
		}
		for _, r := range readers {
			if r.tryagain*2 > r.reads {
				t.Errorf("%s: %d of %d reads answered TRYAGAIN", r.kind.name, r.tryagain, r.reads)
			}
			if r.first != nil {
				t.Errorf("%s: %v (mixed %d, backwards %d, errors %d of %d reads)", r.kind.name, r.first, r.mixed, r.backwards, r.errored, r.reads)
			}
		}
		if len(readers[0].seen) < 2 {
			t.Errorf("the GET reader saw only %d version(s): reads and writes did not overlap", len(readers[0].seen))
		}
		rep, _ := w.do("FILE.STAT", "/c.txt")
		if v, _ := flInt(flField(t, rep, "version")); v != int64(writes+1) {
			t.Errorf("final version %d after %d writes", v, writes+1)
		}
	})
}

// flBigVersion is version k of a 6 MB file: more than the proxy reads in
// one call (4 MB), so readers go back for a second batch.
func flBigVersion(k int) []byte {
	return append([]byte("v"+strconv.Itoa(k)+"\n"), bytes.Repeat([]byte{byte('a' + k%26)}, 6<<20)...)
}

func flWhichBigVersion(b []byte) (int, error) {
	i := bytes.IndexByte(b, '\n')
	if i < 2 || b[0] != 'v' {
		return 0, fmt.Errorf("no header in %.40q", b)
	}
	k, err := strconv.Atoi(string(b[1:i]))
	if err != nil {
		return 0, fmt.Errorf("bad header %.40q", b)
	}
	body := b[i+1:]
	if len(body) != 6<<20 || bytes.Count(body, []byte{byte('a' + k%26)}) != len(body) {
		return k, fmt.Errorf("header v%d with a %d-byte body that is not all %q", k, len(body), rune('a'+k%26))
	}
	return k, nil
}

// TestFilesConsistencyLarge: acceptance 4 for files larger than one read
// batch (default chunk size, 6 MB): FILE.GET and FILE.GETRANGE while 15
// overwrites run are each one whole version.
func TestFilesConsistencyLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("6 MB versions; skipped with -short")
	}
	flBackends(t, 256<<10, func(t *testing.T, b lkBackend) {
		w := flDial(t, b.addr)
		if rep, err := w.send2("FILE.WRITE", "/big.txt", flBigVersion(0)); err != nil || rep[0] == '-' {
			t.Fatalf("first write: %q %v", rep, err)
		}
		var stop atomic.Bool
		readers := []*flReader{{kind: flReadKinds[0]}, {kind: flReadKinds[2]}}
		var wg sync.WaitGroup
		for _, r := range readers {
			c := flDial(t, b.addr)
			wg.Add(1)
			go func(r *flReader) {
				defer wg.Done()
				r.run(c, "/big.txt", 0, &stop, flWhichBigVersion)
			}(r)
		}
		const writes = 15
		t0 := time.Now()
		for k := 1; k <= writes; k++ {
			if rep, err := w.send2("FILE.WRITE", "/big.txt", flBigVersion(k)); err != nil || rep[0] == '-' {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("write v%d: %q %v", k, rep, err)
			}
		}
		stop.Store(true)
		wg.Wait()
		for _, r := range readers {
			t.Logf("%s: %d x %s of 6 MB during %d writes (%v): %d distinct versions; mixed %d, backwards %d, errors %d, TRYAGAIN %d",
				b.name, r.reads, r.kind.name, writes, time.Since(t0).Round(time.Millisecond), len(r.seen), r.mixed, r.backwards, r.errored, r.tryagain)
			if r.tryagain*2 > r.reads {
				t.Errorf("%s: %d of %d reads answered TRYAGAIN", r.kind.name, r.tryagain, r.reads)
			}
			if r.first != nil {
				t.Errorf("%s: %v (mixed %d, backwards %d, errors %d of %d reads)", r.kind.name, r.first, r.mixed, r.backwards, r.errored, r.reads)
			}
		}
	})
}

// send2 sends a command whose last argument is bytes and reads the reply.
func (c *flConn) send2(cmd, path string, data []byte) ([]byte, error) {
	if err := c.send([]byte(cmd), []byte(path), data); err != nil {
		return nil, err
	}
	return c.reply()
}

// TestFilesConcurrentEdits (acceptance 4, writers): eight agents, each on
// its own connection, make 10 edits each to two shared files with
// FILE.EDIT ... IFVERSION <v read just before>, retrying on CONFLICT: on
// /shared.txt each replaces its own placeholder line, on /log.txt each
// inserts a line before the END marker (every edit touches the same
// bytes). At the end every accepted edit is in the content and each
// version is 1 + the accepted edits.
func TestFilesConcurrentEdits(t *testing.T) {
	flBackends(t, flChunk, func(t *testing.T, b lkBackend) {
		const agents, edits = 8, 10
		setup := flDial(t, b.addr)
		var slots strings.Builder
		for i := 0; i < agents; i++ {
			for j := 0; j < edits; j++ {
				fmt.Fprintf(&slots, "slot-%d-%d\n", i, j)
			}
		}
		for _, w := range [][]string{{"FILE.WRITE", "/shared.txt", slots.String()}, {"FILE.WRITE", "/log.txt", "head\nEND\n"}} {
			if rep, err := setup.do(w...); err != nil || rep[0] == '-' {
				t.Fatalf("%s: %q %v", w[1], rep, err)
			}
		}
		var (
			wg                  sync.WaitGroup
			mu                  sync.Mutex
			accepted, conflicts [2]int
			tryagain            int
			fails               []string
		)
		fail := func(f string, a ...any) {
			mu.Lock()
			fails = append(fails, fmt.Sprintf(f, a...))
			mu.Unlock()
		}
		// edit retries one compare-and-set edit until it is accepted.
		edit := func(c *flConn, file int, path, old, new string, readCmd ...string) bool {
			for try := 0; try < 2000; try++ {
				rep, err := c.do(readCmd...)
				if err != nil {
					fail("%q: %v", readCmd, err)
					return false
				}
				if strings.HasPrefix(string(rep), "-TRYAGAIN") {
					mu.Lock()
					tryagain++
					mu.Unlock()
					continue
				}
				if len(rep) == 0 || rep[0] != '*' {
					// A read refused under concurrent edits: a failure, but
					// retry so the rest of the run still checks for lost edits.
					fail("%q: %q", readCmd, rep)
					continue
				}
				v, ok := flRecVersion(rep)
				if !ok {
					fail("%q: no version in %q", readCmd, rep)
					return false
				}
				rep, err = c.do("FILE.EDIT", path, old, new, "IFVERSION", strconv.FormatInt(v, 10))
				switch {
				case err != nil:
					fail("FILE.EDIT %s: %v", path, err)
					return false
				case strings.HasPrefix(string(rep), "-CONFLICT version is "):
					mu.Lock()
					conflicts[file]++
					mu.Unlock()
					continue
				case rep[0] == '-':
					fail("FILE.EDIT %s %q IFVERSION %d: %q", path, old, v, rep)
					return false
				}
				if nv, ok := flRecVersion(rep); !ok || nv != v+1 {
					fail("FILE.EDIT %s IFVERSION %d answered version %d: %q", path, v, nv, rep)
				}
				mu.Lock()
				accepted[file]++
				mu.Unlock()
				return true
			}
			fail("FILE.EDIT %s %q: still conflicting after 2000 tries", path, old)
			return false
		}
		t0 := time.Now()
		for i := 0; i < agents; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c := flDial(t, b.addr)
				for j := 0; j < edits; j++ {
					s := fmt.Sprintf("%d-%d", i, j)
					edit(c, 0, "/shared.txt", "slot-"+s+"\n", "done-"+s+"\n", "FILE.READ", "/shared.txt")
					edit(c, 1, "/log.txt", "END\n", "line-"+s+"\nEND\n", "FILE.STAT", "/log.txt")
				}
			}(i)
		}
		wg.Wait()
		t.Logf("%s: %d agents x %d edits on 2 files in %v: accepted %v, conflicts retried %v, TRYAGAIN retried %d", b.name, agents, edits,
			time.Since(t0).Round(time.Millisecond), accepted, conflicts, tryagain)
		if len(fails) > 0 {
			kinds := map[string]int{}
			for _, f := range fails {
				kinds[f]++
			}
			t.Errorf("%d failures (%d distinct), first: %s; all: %v", len(fails), len(kinds), fails[0], kinds)
		}
		final := func(path string) (string, int64) {
			rep, err := setup.do("FILE.GET", path)
			if err != nil {
				t.Fatal(err)
			}
			content, _ := lkMust(t, rep).(string)
			rep, _ = setup.do("FILE.STAT", path)
			v, _ := flInt(flField(t, rep, "version"))
			return content, v
		}
		shared, v0 := final("/shared.txt")
		logc, v1 := final("/log.txt")
		for i := 0; i < agents; i++ {
			for j := 0; j < edits; j++ {
				s := fmt.Sprintf("%d-%d", i, j)
				if !strings.Contains(shared, "done-"+s+"\n") {
					t.Errorf("/shared.txt lost the edit done-%s", s)
				}
				if n := strings.Count(logc, "line-"+s+"\n"); n != 1 {
					t.Errorf("/log.txt has line-%s %d times", s, n)
				}
			}
		}
		if strings.Contains(shared, "slot-") || len(shared) != len(slots.String()) {
			t.Errorf("/shared.txt still has placeholders or changed size: %q", shared)
		}
		if !strings.HasPrefix(logc, "head\n") || !strings.HasSuffix(logc, "\nEND\n") || strings.Count(logc, "\n") != agents*edits+2 {
			t.Errorf("/log.txt: %q", logc)
		}
		if v0 != int64(1+accepted[0]) || v1 != int64(1+accepted[1]) || accepted[0] != agents*edits || accepted[1] != agents*edits {
			t.Errorf("versions %d and %d after %v accepted edits (want 1 + accepted, %d each)", v0, v1, accepted, agents*edits)
		}
	})
}

// flRecVersion reads the version field of a raw record reply.
func flRecVersion(rep []byte) (int64, bool) {
	v, rest, err := lkParse(rep)
	if err != nil || len(rest) != 0 {
		return 0, false
	}
	pairs, ok := flPairs(v)
	if !ok {
		return 0, false
	}
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i] == "version" {
			return flInt(pairs[i+1])
		}
	}
	return 0, false
}

// TestFilesGrepLoad (acceptance 5): FILE.GREP over 1,000 files of ~52 KB
// (about 50 MB) must not stall other clients: a GET loop on another
// connection keeps p99 < 10 ms while the grep runs.
func TestFilesGrepLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB of files; skipped with -short")
	}
	r := testutil.StartRedis(t)
	a := testutil.StartProxy(t, testutil.EnforcingConfig(t, r.URL()))
	c := flDial(t, a.Addr())
	c.timeout = 5 * time.Minute
	const files, batch = 1000, 50
	// One ~52 KB body of 80-byte lines; each file adds its own header, and
	// every tenth file a needle line in the middle.
	words := []string{"alpha", "beta", "gamma", "delta", "agent", "proxy", "redis", "chunk", "file", "stream", "lorem", "ipsum"}
	rng := rand.New(rand.NewPCG(7, 7))
	var body strings.Builder
	for body.Len() < 52000 {
		var l strings.Builder
		for l.Len() < 72 {
			l.WriteString(words[rng.IntN(len(words))])
			l.WriteByte(' ')
		}
		body.WriteString(l.String() + "\n")
	}
	half := body.Len() / 2
	half = strings.IndexByte(body.String()[half:], '\n') + half + 1
	total := 0
	t0 := time.Now()
	for f := 0; f < files; f += batch {
		for k := f; k < f+batch; k++ {
			content := fmt.Sprintf("file %d\n", k) + body.String()[:half]
			if k%10 == 0 {
				content += fmt.Sprintf("the NEEDLE-%04d is here\n", k)
			}
			content += body.String()[half:]
			total += len(content)
			if err := c.sendS("FILE.WRITE", fmt.Sprintf("/load/f%04d.txt", k), content); err != nil {
				t.Fatal(err)
			}
		}
		for k := f; k < f+batch; k++ {
			if rep, err := c.reply(); err != nil || rep[0] == '-' {
				t.Fatalf("FILE.WRITE %d: %.200q %v", k, rep, err)
			}
		}
	}
	t.Logf("wrote %d files, %.1f MB, pipelined in batches of %d: %v", files, float64(total)/(1<<20), batch, time.Since(t0).Round(time.Millisecond))

	const probe = "deepagents:{default}:kv:probe"
	g := flDial(t, a.Addr())
	if rep, err := g.do("SET", probe, "x"); err != nil || string(rep) != "+OK\r\n" {
		t.Fatalf("SET: %q %v", rep, err)
	}
	getLoop := func(stop <-chan struct{}, n int) (flDur, error) {
		var d flDur
		for i := 0; n == 0 || i < n; i++ {
			if n == 0 {
				select {
				case <-stop:
					return d, nil
				default:
				}
			}
			t0 := time.Now()
			rep, err := g.do("GET", probe)
			d = append(d, time.Since(t0))
			if err != nil || string(rep) != "$1\r\nx\r\n" {
				return d, fmt.Errorf("GET: %q %v", rep, err)
			}
		}
		return d, nil
	}
	idle, err := getLoop(nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GET without grep: %d samples, p50 %v p99 %v max %v", len(idle), idle.pct(50), idle.pct(99), idle.max())

	stop := make(chan struct{})
	type res struct {
		d   flDur
		err error
	}
	done := make(chan res, 1)
	go func() {
		d, err := getLoop(stop, 0)
		done <- res{d, err}
	}()
	var greps flDur
	for round := 0; round < 3; round++ {
		t0 := time.Now()
		rep, err := c.do("FILE.GREP", "NEEDLE-", "PATH", "/load")
		greps = append(greps, time.Since(t0))
		if err != nil || rep[0] == '-' {
			close(stop)
			<-done
			t.Fatalf("FILE.GREP: %.300q %v", rep, err)
		}
		arr, _ := lkMust(t, rep).([]any)
		if len(arr) != files/10 {
			close(stop)
			<-done
			t.Fatalf("FILE.GREP found %d lines, want %d", len(arr), files/10)
		}
		if err := flCheckRec(arr[1], []any{"path", "/load/f0010.txt", "line", 2 + strings.Count(body.String()[:half], "\n"), "text", "the NEEDLE-0010 is here"}); err != nil {
			t.Errorf("FILE.GREP second match: %v", err)
		}
	}
	close(stop)
	gr := <-done
	if gr.err != nil {
		t.Fatal(gr.err)
	}
	t.Logf("FILE.GREP over %d files (%.1f MB), 3 runs: %v each (%s)", files, float64(total)/(1<<20), greps, flMBs(total, greps.pct(50)))
	t.Logf("GET during grep: %d samples, p50 %v p99 %v max %v (acceptance: p99 < 10 ms)", len(gr.d), gr.d.pct(50), gr.d.pct(99), gr.d.max())
	if p := gr.d.pct(99); p >= 10*time.Millisecond {
		t.Errorf("GET p99 %v during FILE.GREP (acceptance: < 10 ms; race detector on: %v)", p, flRace)
	}
}
