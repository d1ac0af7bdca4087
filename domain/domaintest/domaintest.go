// Package domaintest drives the domain commands' handlers without a proxy
// session: against miniredis (in-process) or a real redis-server, through a
// domain.Req whose Upstream is a plain Pool. Each family's tests use it.
package domaintest

import (
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

// Env is a store with a pool to it and the domain state of one proxy.
type Env struct {
	T    testing.TB
	Addr string // the store, for direct inspection
	Pool *upstream.Pool
	Dom  *domain.Env
	g    *keyspace.Grammar
}

// Miniredis starts an in-process miniredis.
func Miniredis(t testing.TB) *Env {
	t.Helper()
	m := miniredis.RunT(t)
	return start(t, m.Addr())
}

// Redis starts a redis-server (skipped locally when it is not installed,
// a failure under CI).
func Redis(t testing.TB) *Env {
	t.Helper()
	return start(t, testutil.StartRedis(t).Addr)
}

func start(t testing.TB, addr string) *Env {
	opts, err := upstream.ParseURL("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	p := upstream.NewPool(opts, nil)
	t.Cleanup(p.Close)
	if !p.WaitUp(10 * time.Second) {
		t.Fatalf("store %s not reachable", addr)
	}
	dom := &domain.Env{Pool: p, MaxOutput: 256 << 20,
		Files: domain.FileOptions{ChunkSize: 64, MaxBytes: 1 << 20, UploadTTL: time.Minute}}
	return &Env{T: t, Addr: addr, Pool: p, Dom: dom,
		g: keyspace.NewGrammar("deepagents", keyspace.DefaultKinds)}
}

// Req is a request of actor in workspace ws speaking protocol proto (one
// per "connection": it keeps lock tokens between commands).
func (e *Env) Req(ws, actor string, proto int) *domain.Req {
	r := &domain.Req{Proto: proto, Workspace: ws, Actor: actor, Grammar: e.g, Env: e.Dom}
	r.Up = &direct{e: e, proto: proto}
	return r
}

// Do runs the domain command line (space separated; use DoArgs for
// arguments with spaces) on r and returns its raw reply.
func (e *Env) Do(r *domain.Req, line string) string {
	e.T.Helper()
	return e.DoArgs(r, strings.Fields(line)...)
}

// DoArgs runs one domain command on r and returns its raw reply.
func (e *Env) DoArgs(r *domain.Req, args ...string) string {
	e.T.Helper()
	c := keyspace.Lookup([]byte(args[0]))
	entry, ok := c.Handler.(*domain.Entry)
	if c == nil || !ok {
		e.T.Fatalf("%s is not a registered domain command", args[0])
	}
	if !c.ArityOK(len(args)) {
		return "-" + wire.ErrWrongArityPrefix + c.Name + wire.ErrWrongAritySuffix + "\r\n"
	}
	b := make([][]byte, len(args)-1)
	for i, a := range args[1:] {
		b[i] = []byte(a)
	}
	r.Out = r.Out[:0]
	entry.Run(r, b)
	return string(r.Out)
}

// Direct is the store itself, for inspection.
func (e *Env) Direct() *testutil.Conn { return testutil.Dial(e.T, e.Addr) }

// direct is an Upstream over the pool, as a session would be, without
// output limits or quotas.
type direct struct {
	e     *Env
	proto int
	call  *upstream.Call
}

var _ domain.Upstream = (*direct)(nil)

func (d *direct) Shared(r *domain.Req, payload []byte, n int) error {
	conn := d.e.Pool.Shared(d.proto)
	if conn == nil {
		r.Out = wire.AppendError(r.Out, wire.ErrTryAgainDown)
		return upstream.ErrUnavailable
	}
	return d.run(conn, r, payload, n, 0)
}

func (d *direct) run(conn *upstream.Conn, r *domain.Req, payload []byte, n int, timeout time.Duration) error {
	if d.call == nil {
		d.call = upstream.NewCall()
	}
	c := d.call
	c.Out, c.N, c.Timeout = r.Out, n, timeout
	if err := conn.Send(c, payload); err != nil {
		r.Out = wire.AppendError(r.Out, wire.CallError(err))
		return err
	}
	c.Wait()
	r.Out = c.Out
	for k := c.Got; c.Err != nil && k < n; k++ {
		r.Out = wire.AppendError(r.Out, wire.CallError(c.Err))
	}
	return c.Err
}

func (d *direct) Blocking(r *domain.Req, args [][]byte, raw []byte) {
	conn, err := d.e.Pool.Dedicated(d.proto, true)
	if err != nil {
		r.Out = wire.AppendError(r.Out, wire.ErrTryAgainDown)
		return
	}
	err = d.run(conn, r, raw, 1, keyspace.BlockTimeout(keyspace.Lookup(args[0]), args, time.Second))
	d.e.Pool.Release(conn, d.proto, err == nil)
}

func (d *direct) TakeDedicated() (string, bool) { return "", true }
func (d *direct) GiveDedicated(string)          {}
func (d *direct) Stopping() bool                { return false }
