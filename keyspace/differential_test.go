package keyspace_test

// The differential key-extraction fuzzer. It generates invocations of every
// command that takes keys from Redis's own argument grammar (COMMAND DOCS),
// mutates them (keywords repeated, mixed case, ending in a NUL byte, interleaved and out of order,
// numkeys at and beyond its edges, arguments dropped or added), and asks a
// real redis-server two questions about each: which keys COMMAND GETKEYS
// reports, and which keys the command actually writes when it runs (keyspace
// notifications). The proxy's Extract must agree with both, or refuse the
// form. Every disagreement is a way for an agent to reach a key the proxy
// did not check.
//
// Redis's answers for a deterministic sample of invocations are kept in
// testdata/getkeys_corpus.jsonl and replayed without Redis by
// TestGetkeysCorpus; regenerate it with
//
//	go test ./keyspace -run TestGetkeysDifferential -update-corpus

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/getkeys_corpus.jsonl from a live redis-server")

const corpusFile = "testdata/getkeys_corpus.jsonl"

// verdict is what Redis says about one invocation.
type verdict struct {
	Args       []string `json:"args"`
	GetKeys    []string `json:"getkeys,omitempty"`
	GetKeysErr string   `json:"getkeys_err,omitempty"`
	Written    []string `json:"written,omitempty"` // keys the command modified when it ran
	Ran        bool     `json:"ran,omitempty"`     // the command was executed for the write oracle
}

// judge compares Extract with Redis's verdict; "" means they agree (or the
// proxy refuses the form, which is always safe: an ambiguous keyword).
func judge(v verdict) string {
	args := toBytes(v.Args)
	cmd := keyspace.Resolve(args)
	if cmd == nil || len(args) < 2 {
		return "" // COMMAND GETKEYS cannot be asked about a command without arguments
	}
	if !cmd.ArityOK(len(args)) {
		if v.GetKeysErr == "" && len(v.GetKeys) > 0 {
			return fmt.Sprintf("the proxy refuses the arity but Redis finds keys %q", v.GetKeys)
		}
		return ""
	}
	if cmd.Container && len(args) > 1 {
		return "" // unknown subcommand: refused for agents
	}
	var acc keyspace.Access
	if err := keyspace.Extract(cmd, args, &acc); errors.Is(err, keyspace.ErrAmbiguous) {
		return "" // refused form
	} else if err != nil {
		// Forwarded for Redis's parser to reject, checked for the role
		// only: Redis must not find keys either, nor write any.
		if v.GetKeysErr == "" && len(v.GetKeys) > 0 {
			return fmt.Sprintf("Extract cannot find the keys Redis finds (%q): the form would reach Redis with no key checked", v.GetKeys)
		}
		if len(v.Written) > 0 {
			return fmt.Sprintf("Redis wrote %q for a form whose keys Extract cannot find", v.Written)
		}
		return ""
	}
	got := []string{}
	for _, i := range acc.Keys {
		got = append(got, v.Args[i])
	}
	written := map[string]bool{}
	for _, i := range acc.Written {
		written[v.Args[i]] = true
	}
	for _, w := range v.Written {
		if !written[w] {
			return fmt.Sprintf("Redis wrote key %q, which Extract did not report as written (keys %q, written %v)", w, got, acc.Written)
		}
	}
	switch v.GetKeysErr {
	case "":
	case "ERR The command has no key arguments":
		if len(got) > 0 {
			return fmt.Sprintf("Redis says the command has no keys; Extract found %q", got)
		}
		return ""
	default:
		if v.Ran {
			// Redis's key spec gives up on a form its command runs
			// (PFMERGE dest alone, in 7.0): what it wrote is among the
			// keys the proxy checks (above).
			return ""
		}
		return fmt.Sprintf("COMMAND GETKEYS refuses the form (%s) but the proxy does not: keys %q", v.GetKeysErr, got)
	}
	want := slices.Clone(v.GetKeys)
	sort.Strings(want)
	have := slices.Clone(got)
	sort.Strings(have)
	if !slices.Equal(want, have) {
		return fmt.Sprintf("Extract keys %q, COMMAND GETKEYS %q", got, v.GetKeys)
	}
	return ""
}

// oracle asks a real Redis about invocations.
type oracle struct {
	t    testing.TB
	r    *testutil.Redis
	q    *testutil.Conn // COMMAND GETKEYS
	x    *testutil.Conn // executes commands
	sub  *testutil.Conn // keyspace notifications
	docs map[string][]argDoc
	seq  int
}

func newOracle(t testing.TB) *oracle {
	t.Helper()
	r := testutil.StartRedis(t, "--notify-keyspace-events", "KEA")
	o := &oracle{t: t, r: r, q: testutil.DialFree(t, r.Addr), sub: testutil.DialFree(t, r.Addr), x: testutil.DialFree(t, r.Addr)}
	t.Cleanup(func() { o.q.Close(); o.sub.Close(); o.x.Close() })
	if got := string(o.sub.Do("PSUBSCRIBE", "__keyevent@*__:*")); !strings.Contains(got, "psubscribe") {
		t.Fatalf("PSUBSCRIBE: %q", got)
	}
	o.docs = loadDocs(t, o.q)
	return o
}

// setT reports to t from now on.
func (o *oracle) setT(t testing.TB) {
	o.t = t
	o.q.SetT(t)
	o.x.SetT(t)
	o.sub.SetT(t)
}

// ask fills in Redis's verdict on args.
func (o *oracle) ask(args []string, run bool) verdict {
	v := verdict{Args: args}
	keys, err := getkeysReply(o.q.Do(append([]string{"COMMAND", "GETKEYS"}, args...)...))
	if err != nil {
		v.GetKeysErr = err.Error()
	} else if keys == nil {
		v.GetKeysErr = "ERR The command has no key arguments"
	} else {
		v.GetKeys = keys
	}
	if run {
		v.Written, v.Ran = o.run(args)
	}
	return v
}

// run executes args on an emptied database whose key-like arguments exist
// with the command's data type, and returns the keys Redis reports as
// modified (keyspace notifications between two sentinel writes).
func (o *oracle) run(args []string) ([]string, bool) {
	o.seq++
	start, end := fmt.Sprintf("__start%d", o.seq), fmt.Sprintf("__end%d", o.seq)
	var b []byte
	b = upstream.AppendCommand(b, "FLUSHALL")
	n := 1
	typ := dataType(keyspace.Resolve(toBytes(args)))
	for _, a := range args {
		if isKeyToken(a) {
			b = append(b, setupFor(typ, a)...)
			n++
		}
	}
	b = upstream.AppendCommand(b, "SET", start, "1")
	b = upstream.AppendCommand(b, args...)
	b = upstream.AppendCommand(b, "SET", end, "1")
	n += 3
	o.x.Write(b)
	for i := 0; i < n; i++ {
		if _, err := o.x.ReadTimeout(2 * time.Second); err != nil {
			// Blocked (a blocking form with no data): start over.
			o.x.Close()
			o.x = testutil.DialFree(o.t, o.r.Addr)
			o.drain(end)
			return nil, false
		}
	}
	var written []string
	seen := false
	for {
		f, err := o.sub.ReadTimeout(5 * time.Second)
		if err != nil {
			o.t.Fatalf("keyspace notification: %v", err)
		}
		key := lastBulk(f)
		switch {
		case key == start:
			seen = true
		case key == end:
			return written, true
		case seen && !slices.Contains(written, key):
			written = append(written, key)
		}
	}
}

// drain reads notifications up to the one for key (or a quiet second).
func (o *oracle) drain(key string) {
	for {
		f, err := o.sub.ReadTimeout(time.Second)
		if err != nil || lastBulk(f) == key {
			return
		}
	}
}

// lastBulk is the payload of a pmessage frame.
func lastBulk(f []byte) string {
	s := strings.TrimSuffix(string(f), "\r\n")
	i := strings.LastIndex(s, "\r\n")
	if i < 0 {
		return ""
	}
	return s[i+2:]
}

// isKeyToken: generated key names are k<digits>.
func isKeyToken(a string) bool {
	if len(a) < 2 || a[0] != 'k' {
		return false
	}
	_, err := strconv.Atoi(a[1:])
	return err == nil
}

func dataType(c *keyspace.Command) string {
	switch {
	case c == nil:
		return "string"
	case c.ACL&keyspace.ACLGeo != 0:
		return "geo"
	case c.ACL&keyspace.ACLStream != 0:
		return "stream"
	case c.ACL&keyspace.ACLList != 0:
		return "list"
	case c.ACL&keyspace.ACLHash != 0:
		return "hash"
	case c.ACL&keyspace.ACLSortedset != 0:
		return "zset"
	case c.ACL&keyspace.ACLSet != 0:
		return "set"
	case c.ACL&keyspace.ACLHyperloglog != 0:
		return "hll"
	}
	return "string"
}

func setupFor(typ, key string) []byte {
	switch typ {
	case "geo":
		return upstream.AppendCommand(nil, "GEOADD", key, "15", "37", "v1", "15.1", "37.1", "v2")
	case "stream":
		return upstream.AppendCommand(nil, "XADD", key, "1-1", "f", "v")
	case "list":
		return upstream.AppendCommand(nil, "RPUSH", key, "v1", "v2", "v3")
	case "hash":
		return upstream.AppendCommand(nil, "HSET", key, "v1", "1", "v2", "2")
	case "zset":
		return upstream.AppendCommand(nil, "ZADD", key, "1", "v1", "2", "v2")
	case "set":
		return upstream.AppendCommand(nil, "SADD", key, "v1", "v2")
	case "hll":
		return upstream.AppendCommand(nil, "PFADD", key, "v1", "v2")
	}
	return upstream.AppendCommand(nil, "SET", key, "1")
}

// argDoc is one argument of COMMAND DOCS.
type argDoc struct {
	name, typ, token string
	optional, multi  bool
	multiToken       bool
	args             []argDoc
}

// loadDocs reads COMMAND DOCS for every command and subcommand.
func loadDocs(t testing.TB, c *testutil.Conn) map[string][]argDoc {
	t.Helper()
	v, rest := decode(c.Do("COMMAND", "DOCS"))
	if len(rest) != 0 {
		t.Fatalf("COMMAND DOCS: %d bytes left over", len(rest))
	}
	out := map[string][]argDoc{}
	var walk func(prefix string, m []any)
	walk = func(prefix string, m []any) {
		for i := 0; i+1 < len(m); i += 2 {
			name, _ := m[i].(string)
			fields, _ := m[i+1].([]any)
			full := prefix + strings.ToLower(name)
			for j := 0; j+1 < len(fields); j += 2 {
				switch fields[j] {
				case "arguments":
					out[full] = parseArgs(fields[j+1].([]any))
				case "subcommands":
					walk("", fields[j+1].([]any))
				}
			}
			if _, ok := out[full]; !ok {
				out[full] = nil
			}
		}
	}
	walk("", v.([]any))
	return out
}

func parseArgs(list []any) []argDoc {
	var out []argDoc
	for _, e := range list {
		fields := e.([]any)
		var a argDoc
		for j := 0; j+1 < len(fields); j += 2 {
			switch fields[j] {
			case "name":
				a.name, _ = fields[j+1].(string)
			case "type":
				a.typ, _ = fields[j+1].(string)
			case "token":
				a.token, _ = fields[j+1].(string)
			case "flags":
				for _, f := range fields[j+1].([]any) {
					switch f {
					case "optional":
						a.optional = true
					case "multiple":
						a.multi = true
					case "multiple_token":
						a.multiToken = true
					}
				}
			case "arguments":
				a.args = parseArgs(fields[j+1].([]any))
			}
		}
		out = append(out, a)
	}
	return out
}

// decode parses one RESP2 value into string, int64, nil, error or []any.
func decode(b []byte) (any, []byte) {
	line, rest, _ := strings.Cut(string(b), "\r\n")
	if line == "" {
		return nil, nil
	}
	switch line[0] {
	case '+':
		return line[1:], []byte(rest)
	case '-':
		return errors.New(line[1:]), []byte(rest)
	case ':':
		n, _ := strconv.ParseInt(line[1:], 10, 64)
		return n, []byte(rest)
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return nil, []byte(rest)
		}
		return rest[:n], []byte(rest[n+2:])
	case '*':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return nil, []byte(rest)
		}
		out := make([]any, 0, n)
		r := []byte(rest)
		for i := 0; i < n; i++ {
			var v any
			v, r = decode(r)
			out = append(out, v)
		}
		return out, r
	}
	return nil, nil
}

// gen builds invocations of one command from its argument grammar.
type gen struct {
	rnd    *rand.Rand
	opt    int // percent chance of including each optional argument
	keys   int
	vals   int
	tokens []string // every keyword of the command, for insertions
}

// piece is one generated argument and what it stands for.
type piece struct {
	s       string
	key     bool
	numkeys bool
	clause  int // index of the optional clause it belongs to, 0 for none
}

func (g *gen) word(w string) string {
	switch g.rnd.IntN(4) {
	case 0:
		return strings.ToLower(w)
	case 1:
		b := []byte(strings.ToLower(w))
		for i := range b {
			if g.rnd.IntN(2) == 0 && b[i] >= 'a' && b[i] <= 'z' {
				b[i] -= 'a' - 'A'
			}
		}
		return string(b)
	}
	return w
}

func (g *gen) value(a argDoc) string {
	switch a.typ {
	case "integer":
		return strconv.Itoa(g.rnd.IntN(4))
	case "double":
		if strings.HasPrefix(a.name, "lon") {
			return "15"
		}
		if strings.HasPrefix(a.name, "lat") {
			return "37"
		}
		return []string{"1.5", "0", "2", "0.01", "500"}[g.rnd.IntN(5)]
	case "unix-time":
		return "100"
	case "pattern":
		return []string{"*", "k*", "v?"}[g.rnd.IntN(3)]
	}
	if strings.Contains(a.name, "id") {
		return []string{"0", "$", ">", "1-1", "*", "0-0"}[g.rnd.IntN(6)]
	}
	g.vals++
	return "v" + strconv.Itoa(g.vals%3+1)
}

func (g *gen) collectTokens(args []argDoc) {
	for _, a := range args {
		if a.token != "" {
			g.tokens = append(g.tokens, a.token)
		}
		if a.typ == "pure-token" && a.token == "" {
			g.tokens = append(g.tokens, strings.ToUpper(a.name))
		}
		g.collectTokens(a.args)
	}
}

// emit appends the pieces for one argument.
func (g *gen) emit(out []piece, a argDoc, clause int) []piece {
	reps := 1
	if a.multi {
		reps = 1 + g.rnd.IntN(3)
	}
	for r := 0; r < reps; r++ {
		if a.token == `""` {
			out = append(out, piece{s: "", clause: clause}) // MIGRATE's empty key
			continue
		}
		if a.token != "" && (r == 0 || a.multiToken) {
			out = append(out, piece{s: g.word(a.token), clause: clause})
		}
		switch a.typ {
		case "key":
			g.keys++
			out = append(out, piece{s: "k" + strconv.Itoa(g.keys), key: true, clause: clause})
		case "pure-token":
			if a.token == "" {
				out = append(out, piece{s: g.word(strings.ToUpper(a.name)), clause: clause})
			}
		case "oneof":
			if len(a.args) > 0 {
				out = g.emit(out, a.args[g.rnd.IntN(len(a.args))], clause)
			}
		case "block":
			out = g.emitList(out, a.args, clause)
		default:
			p := piece{s: g.value(a), clause: clause}
			if a.name == "numkeys" {
				p.numkeys = true
			}
			if a.name == "timeout" {
				p.s = "0.01"
			}
			out = append(out, p)
		}
	}
	return out
}

func (g *gen) emitList(out []piece, args []argDoc, clause int) []piece {
	for i, a := range args {
		c := clause
		if a.optional {
			if g.rnd.IntN(100) >= g.opt {
				continue
			}
			if c == 0 {
				c = 1000 + i + 100*g.rnd.IntN(100)
			}
		}
		out = g.emit(out, a, c)
	}
	return out
}

// invocation generates one invocation of name (a command or "parent|sub").
func (g *gen) invocation(name string, docs []argDoc) []string {
	g.keys, g.vals, g.tokens = 0, 0, g.tokens[:0]
	// Few optional arguments make forms Redis accepts (options often
	// exclude each other); many make odd ones.
	g.opt = []int{10, 25, 50, 75}[g.rnd.IntN(4)]
	g.collectTokens(docs)
	pieces := g.emitList(nil, docs, 0)
	// numkeys counts the keys that follow it.
	for i := range pieces {
		if !pieces[i].numkeys {
			continue
		}
		n := 0
		for j := i + 1; j < len(pieces) && pieces[j].key; j++ {
			n++
		}
		pieces[i].s = strconv.Itoa(n)
	}
	pieces = g.mutate(pieces)
	var out []string
	if parent, sub, ok := strings.Cut(name, "|"); ok {
		out = append(out, g.word(strings.ToUpper(parent)), g.word(strings.ToUpper(sub)))
	} else {
		out = append(out, g.word(strings.ToUpper(name)))
	}
	for _, p := range pieces {
		out = append(out, p.s)
	}
	return out
}

// mutate applies zero or more of the odd forms an attacker would try.
func (g *gen) mutate(p []piece) []piece {
	for n := g.rnd.IntN(3); n > 0; n-- {
		switch g.rnd.IntN(10) {
		case 0: // repeat an optional clause (a keyword given twice)
			if c := g.someClause(p); c != 0 {
				var cl []piece
				for _, q := range p {
					if q.clause == c {
						q.s = g.word(q.s)
						if q.key {
							g.keys++
							q.s = "k" + strconv.Itoa(g.keys)
						}
						cl = append(cl, q)
					}
				}
				at := g.rnd.IntN(len(p) + 1)
				p = slices.Insert(p, at, cl...)
			}
		case 1: // a keyword and a fresh key anywhere
			if len(g.tokens) > 0 {
				g.keys++
				at := g.rnd.IntN(len(p) + 1)
				p = slices.Insert(p, at, piece{s: g.word(g.tokens[g.rnd.IntN(len(g.tokens))])},
					piece{s: "k" + strconv.Itoa(g.keys), key: true})
			}
		case 2: // drop an argument
			if len(p) > 0 {
				i := g.rnd.IntN(len(p))
				p = slices.Delete(p, i, i+1)
			}
		case 3: // swap two neighbouring clauses' order
			if len(p) > 1 {
				i := g.rnd.IntN(len(p) - 1)
				p[i], p[i+1] = p[i+1], p[i]
			}
		case 4, 5: // numkeys at and past its edges
			for i := range p {
				if p[i].numkeys {
					n, _ := strconv.Atoi(p[i].s)
					edge := []string{"0", "-1", strconv.Itoa(n + 1), strconv.Itoa(n - 1), "0" + p[i].s, "+" + p[i].s,
						" " + p[i].s, p[i].s + ".0", "99999999999", "2147483648", "x", ""}
					p[i].s = edge[g.rnd.IntN(len(edge))]
				}
			}
		case 6: // a keyword as the last argument, without its value
			if len(g.tokens) > 0 {
				p = append(p, piece{s: g.word(g.tokens[g.rnd.IntN(len(g.tokens))])})
			}
		case 7: // an extra key at the end
			g.keys++
			p = append(p, piece{s: "k" + strconv.Itoa(g.keys), key: true})
		case 8: // an empty argument
			p = slices.Insert(p, g.rnd.IntN(len(p)+1), piece{s: ""})
		case 9: // a keyword ending in a NUL byte: Redis's strcasecmp reads up to it
			for i := range p {
				if !p[i].key && !p[i].numkeys && slices.ContainsFunc(g.tokens, func(t string) bool { return strings.EqualFold(t, p[i].s) }) {
					p[i].s += []string{"\x00", "\x00x"}[g.rnd.IntN(2)]
					break
				}
			}
		}
	}
	return p
}

func (g *gen) someClause(p []piece) int {
	var cs []int
	for _, q := range p {
		if q.clause != 0 && !slices.Contains(cs, q.clause) {
			cs = append(cs, q.clause)
		}
	}
	if len(cs) == 0 {
		return 0
	}
	return cs[g.rnd.IntN(len(cs))]
}

// targets lists the commands worth generating: every one with keys (or
// whose keys the proxy finds itself), except the admin-only ones whose
// execution would disturb the oracle.
func targets(docs map[string][]argDoc) []string {
	var out []string
	for _, name := range keyspace.Names() {
		c := keyspace.Resolve(toBytes(strings.Split(name, "|")))
		if c == nil || c.Container || c.Arity == 1 {
			continue
		}
		if len(c.Keys) == 0 && name != "sort" && name != "sort_ro" && name != "migrate" {
			continue
		}
		if _, ok := docs[name]; !ok {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// runnable reports whether the write oracle may execute the command.
func runnable(name string) bool {
	c := keyspace.Resolve(toBytes(strings.Split(name, "|")))
	switch {
	case c == nil || c.Agents == keyspace.AgentsAdmin || c.Agents == keyspace.AgentsNever:
		return false
	case name == "wait" || name == "eval" || name == "evalsha" || name == "fcall" || strings.HasSuffix(name, "_ro"):
		return false
	}
	return c.Has(keyspace.Write)
}

// TestGetkeysDifferential runs the generator over every command with keys
// against a real redis-server. AGENTPROXY_DIFF_PER_COMMAND sets how many
// invocations each command gets (default 150).
func TestGetkeysDifferential(t *testing.T) {
	o := newOracle(t)
	per := 150
	if n, err := strconv.Atoi(os.Getenv("AGENTPROXY_DIFF_PER_COMMAND")); err == nil && n > 0 {
		per = n
	}
	names := targets(o.docs)
	if len(names) < 150 {
		t.Fatalf("only %d commands with keys found in COMMAND DOCS", len(names))
	}
	var corpus []verdict
	total, refused, ran, wrote := 0, 0, 0, 0
	failures := map[string]int{}
	for ci, name := range names {
		g := &gen{rnd: rand.New(rand.NewPCG(uint64(ci)+1, 0x5eed))}
		run := runnable(name)
		for i := 0; i < per; i++ {
			args := g.invocation(name, o.docs[name])
			v := o.ask(args, run)
			total++
			if v.Ran {
				ran++
			}
			if len(v.Written) > 0 {
				wrote++
			}
			if msg := judge(v); msg != "" {
				failures[name]++
				if failures[name] <= 3 {
					t.Errorf("%q: %s", args, msg)
				}
			}
			var acc keyspace.Access
			if err := keyspace.Extract(keyspace.Resolve(toBytes(args)), toBytes(args), &acc); err != nil {
				refused++
			}
			if i < 12 || (len(v.Written) > 0 && i < 40) {
				corpus = append(corpus, v)
			}
		}
	}
	t.Logf("%d commands, %d invocations (%d executed for the write oracle, %d of them wrote keys), %d refused forms, %d commands disagreeing",
		len(names), total, ran, wrote, refused, len(failures))
	if *updateCorpus {
		writeCorpus(t, corpus)
	}
}

func writeCorpus(t *testing.T, vs []verdict) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(corpusFile), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(corpusFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for _, v := range vs {
		b, _ := json.Marshal(v)
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d verdicts to %s", len(vs), corpusFile)
}

// TestGetkeysCorpus replays Redis's recorded verdicts against Extract; it
// needs no Redis.
func TestGetkeysCorpus(t *testing.T) {
	f, err := os.Open(corpusFile)
	if err != nil {
		t.Fatalf("%v (regenerate: go test ./keyspace -run TestGetkeysDifferential -update-corpus)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n, written := 0, 0
	commands := map[string]bool{}
	for sc.Scan() {
		var v verdict
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
		if len(v.Written) > 0 {
			written++
		}
		if c := keyspace.Resolve(toBytes(v.Args)); c != nil {
			commands[c.Name] = true
		}
		if msg := judge(v); msg != "" {
			t.Errorf("%q: %s", v.Args, msg)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 1000 || len(commands) < 150 || written < 100 {
		t.Fatalf("corpus too small: %d verdicts of %d commands, %d with written keys", n, len(commands), written)
	}
}

// FuzzGetkeysDifferential is the same comparison under go test -fuzz: the
// input picks a command and seeds the generator.
func FuzzGetkeysDifferential(f *testing.F) {
	testutil.RedisServerPath(f)
	f.Add(uint16(0), uint64(1))
	f.Add(uint16(77), uint64(42))
	f.Add(uint16(130), uint64(7))
	o := newOracle(f)
	names := targets(o.docs)
	f.Fuzz(func(t *testing.T, cmd uint16, seed uint64) {
		o.setT(t)
		name := names[int(cmd)%len(names)]
		g := &gen{rnd: rand.New(rand.NewPCG(seed, uint64(cmd)))}
		args := g.invocation(name, o.docs[name])
		if msg := judge(o.ask(args, runnable(name))); msg != "" {
			t.Errorf("%q: %s", args, msg)
		}
	})
}
