package tests

// FILE.* semantics (docs/FILES.md, issue acceptance 1): a table of cases run
// against a proxy in front of redis-server and one on the embedded store,
// RESP2, with [files] chunk_size = 64 so that almost every file spans
// several storage chunks; every refused write must change nothing and log
// no event, every successful one logs exactly one. Separate tests cover
// fencing with a file lock, streaming uploads and the RESP3 map replies.

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

const (
	flLog   = "deepagents:{default}:events:log"
	flChunk = 64 // the semantic tests' storage chunk size (the minimum)
)

// flBackends runs f on both backends with [files] chunk_size = chunk, once
// the proxy's RESP2 and RESP3 upstream connections are up.
func flBackends(t *testing.T, chunk int, f func(t *testing.T, b lkBackend)) {
	t.Helper()
	lkBackends(t, func(c *config.Config) { c.Files.ChunkSize = chunk }, func(t *testing.T, b lkBackend) {
		todoReady(t, b.addr)
		f(t, b)
	})
}

// flLines counts lines as FILE.READ does: a last line without a newline
// is still a line.
func flLines(s string) int {
	n := strings.Count(s, "\n")
	if s != "" && !strings.HasSuffix(s, "\n") {
		n++
	}
	return n
}

func flSHA1(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// flText is n bytes of pseudo-random lowercase text with a newline every 37
// bytes: no period that divides a chunk size, so a misplaced chunk shows.
func flText(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		if i%37 == 36 {
			b[i] = '\n'
		} else {
			b[i] = byte('a' + r.IntN(26))
		}
	}
	return string(b)
}

// flInt reads an integer reply value (integer, or a string of digits).
func flInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case string:
		i, err := strconv.ParseInt(n, 10, 64)
		return i, err == nil
	}
	return 0, false
}

// flPred is an expectation on one value of a reply.
type flPred struct {
	what string
	ok   func(any) bool
}

var (
	flAnyV = flPred{"anything", func(any) bool { return true }}
	flPos  = flPred{"a positive integer", func(v any) bool { n, ok := flInt(v); return ok && n > 0 }}
	flStr  = flPred{"a non-empty string", func(v any) bool { s, ok := v.(string); return ok && s != "" }}
)

// flMatch compares a reply value with an expectation: a string, an int, nil
// or a flPred.
func flMatch(v, want any) bool {
	switch w := want.(type) {
	case nil:
		return v == nil
	case string:
		s, ok := v.(string)
		return ok && s == w
	case int:
		n, ok := flInt(v)
		return ok && n == int64(w)
	case flPred:
		return w.ok(v)
	}
	return false
}

func flDesc(want any) string {
	if p, ok := want.(flPred); ok {
		return p.what
	}
	return fmt.Sprintf("%#v", want)
}

// flPairs returns a record (RESP2 flat array or RESP3 map) as its pairs.
func flPairs(v any) ([]any, bool) {
	switch r := v.(type) {
	case []any:
		return r, len(r)%2 == 0
	case lkMap:
		return r, true
	}
	return nil, false
}

// flCheckRec compares a record with want (field, value, ...): the fields of
// the contract, in its order, and no other.
func flCheckRec(v any, want []any) error {
	pairs, ok := flPairs(v)
	if !ok {
		return fmt.Errorf("not a record: %#v", v)
	}
	var keys, wkeys []string
	for i := 0; i < len(pairs); i += 2 {
		keys = append(keys, fmt.Sprint(pairs[i]))
	}
	for i := 0; i < len(want); i += 2 {
		wkeys = append(wkeys, want[i].(string))
	}
	if strings.Join(keys, ",") != strings.Join(wkeys, ",") {
		return fmt.Errorf("fields %v, want %v", keys, wkeys)
	}
	for i := 0; i < len(want); i += 2 {
		if !flMatch(pairs[i+1], want[i+1]) {
			return fmt.Errorf("%s = %#v, want %s", want[i], pairs[i+1], flDesc(want[i+1]))
		}
	}
	return nil
}

// flField returns one field of a record reply.
func flField(t testing.TB, b []byte, field string) any {
	t.Helper()
	pairs, ok := flPairs(lkMust(t, b))
	if !ok {
		t.Fatalf("not a record: %q", b)
	}
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i] == field {
			return pairs[i+1]
		}
	}
	t.Fatalf("no field %q in %q", field, b)
	return nil
}

// flEnv is one backend's clients: c runs the cases, aux observes.
type flEnv struct {
	name   string
	c, aux *testutil.Conn
}

func (e *flEnv) xlen(t *testing.T) int64 {
	t.Helper()
	n, ok := lkMust(t, e.aux.Do("XLEN", flLog)).(int64)
	if !ok {
		t.Fatalf("XLEN is not an integer")
	}
	return n
}

// lastEvent decodes the newest entry of the event log.
func (e *flEnv) lastEvent(t *testing.T) ceEnvelope {
	t.Helper()
	b := e.aux.Do("XREVRANGE", flLog, "+", "-", "COUNT", "1")
	entries, ok := lkMust(t, b).([]any)
	if !ok || len(entries) != 1 {
		t.Fatalf("XREVRANGE: %q", b)
	}
	fields, _ := flPairs(entries[0].([]any)[1])
	if len(fields) != 2 || fields[0] != "event" {
		t.Fatalf("log entry %q", b)
	}
	return ceDecode(t, fields[1].(string))
}

// flCheck is a case's expectation on the raw reply to its command.
type flCheck func(t *testing.T, e *flEnv, got []byte)

func flRaw(want string) flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		if string(got) != want {
			t.Fatalf("got %.300q, want %.300q", got, want)
		}
	}
}

func flBulk(s string) flCheck { return flRaw("$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n") }

func flInteger(n int) flCheck { return flRaw(":" + strconv.Itoa(n) + "\r\n") }

// flErr wants an error reply starting with prefix (without the '-').
func flErr(prefix string) flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		if !strings.HasPrefix(string(got), "-"+prefix) {
			t.Fatalf("got %.300q, want an error starting with %q", got, prefix)
		}
	}
}

// flErrHas wants an error reply that mentions sub.
func flErrHas(sub string) flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		if len(got) == 0 || got[0] != '-' || !strings.Contains(string(got), sub) {
			t.Fatalf("got %.300q, want an error mentioning %q", got, sub)
		}
	}
}

// flNil wants the RESP2 nil: the contract says "nil"; $-1 (nil bulk) and
// *-1 (nil array, for records) are both accepted.
func flNil() flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		if s := string(got); s != "$-1\r\n" && s != "*-1\r\n" {
			t.Fatalf("got %.300q, want nil", got)
		}
	}
}

// flRecord wants a record with exactly these fields and values.
func flRecord(want ...any) flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		if err := flCheckRec(lkMust(t, got), want); err != nil {
			t.Fatalf("%v in %.400q", err, got)
		}
	}
}

// flRecords wants an array of records, in this order.
func flRecords(want ...[]any) flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		arr, ok := lkMust(t, got).([]any)
		if !ok {
			t.Fatalf("not an array: %.400q", got)
		}
		if len(arr) != len(want) {
			t.Fatalf("%d records, want %d: %.600q", len(arr), len(want), got)
		}
		for i := range want {
			if err := flCheckRec(arr[i], want[i]); err != nil {
				t.Fatalf("record %d: %v in %.600q", i, err, got)
			}
		}
	}
}

// flStrings wants an array of exactly these strings (GLOB).
func flStrings(want ...string) flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		arr, ok := lkMust(t, got).([]any)
		if !ok {
			t.Fatalf("not an array: %.400q", got)
		}
		var have []string
		for _, v := range arr {
			s, _ := v.(string)
			have = append(have, s)
		}
		if strings.Join(have, "|") != strings.Join(want, "|") || len(have) != len(want) {
			t.Fatalf("got %q, want %q", have, want)
		}
	}
}

// flEmptyList wants an empty array; nil is accepted too (the contract does
// not say what LS of a missing directory answers).
func flEmptyList() flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		if s := string(got); s != "*0\r\n" && s != "*-1\r\n" && s != "$-1\r\n" {
			t.Fatalf("got %.300q, want an empty array", got)
		}
	}
}

// flErrOrNil accepts an error or nil, nothing else.
func flErrOrNil() flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		if s := string(got); s[0] != '-' && s != "$-1\r\n" && s != "*-1\r\n" {
			t.Fatalf("got %.300q, want an error or nil", got)
		}
	}
}

// flThen runs one more command on the case's connection and checks it.
func flThen(chk flCheck, cmd ...string) flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		chk(t, e, e.c.Do(cmd...))
	}
}

func flAll(chks ...flCheck) flCheck {
	return func(t *testing.T, e *flEnv, got []byte) {
		t.Helper()
		for _, c := range chks {
			c(t, e, got)
		}
	}
}

// flW is a FILE.WRITE command.
func flW(path, content string, opts ...string) []string {
	return append([]string{"FILE.WRITE", path, content}, opts...)
}

type flCase struct {
	name  string
	setup [][]string // each must succeed
	cmd   []string
	want  flCheck
	// ev is the growth of the event log on success; nil: by command (1 for
	// WRITE/APPEND/EDIT and a DEL of one file, 0 for reads, unchecked for
	// a recursive DEL).
	ev *int
}

// flWrites maps a write command to its event type.
var flWrites = map[string]string{
	"FILE.WRITE": "file.write", "FILE.APPEND": "file.append", "FILE.EDIT": "file.edit", "FILE.DEL": "file.delete",
}

// run executes a case: setup, then the command with the event log and the
// target's STAT watched.
func (e *flEnv) run(t *testing.T, tc flCase) {
	t.Helper()
	for _, s := range tc.setup {
		if got := e.c.Do(s...); got[0] == '-' {
			t.Fatalf("setup %.80q: %q", s, got)
		}
	}
	cmd := strings.ToUpper(tc.cmd[0])
	typ, isWrite := flWrites[cmd]
	var statBefore string
	if isWrite {
		statBefore = e.aux.DoS("FILE.STAT", tc.cmd[1])
	}
	before := e.xlen(t)
	got := e.c.Do(tc.cmd...)
	grew := e.xlen(t) - before
	if len(got) > 0 && got[0] == '-' {
		if grew != 0 {
			t.Errorf("refused (%.120q) but the event log grew by %d", got, grew)
		}
		if isWrite {
			if after := e.aux.DoS("FILE.STAT", tc.cmd[1]); after != statBefore {
				t.Errorf("refused (%.120q) but the file changed:\n%q\n%q", got, statBefore, after)
			}
		}
	} else {
		want := int64(0)
		check := true
		if isWrite {
			want = 1
			if cmd == "FILE.DEL" && string(got) != ":1\r\n" {
				check = false // DEL of nothing or of a tree: the contract does not say
				t.Logf("%s: %q logged %d events", e.name, tc.cmd, grew)
			}
		}
		if tc.ev != nil {
			want, check = int64(*tc.ev), true
		}
		if check && grew != want {
			t.Errorf("event log grew by %d, want %d (reply %.120q)", grew, want, got)
		}
		if check && isWrite && want == 1 && grew == 1 {
			ev := e.lastEvent(t)
			if ev.Type != typ || ev.Cmd != cmd {
				t.Errorf("event type %q cmd %q, want %q %q", ev.Type, ev.Cmd, typ, cmd)
			}
			if cmd != "FILE.DEL" {
				if v, ok := flInt(flField(t, got, "version")); ok && (ev.Version == nil || *ev.Version != v) {
					t.Errorf("event version %v, reply version %d", ev.Version, v)
				}
			}
		}
	}
	tc.want(t, e, got)
}

func flN(n int) *int { return &n }
