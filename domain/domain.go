// Package domain is what the agent domain's commands (SPEC §5: locks, the
// tool cache, events, todos, files, WS.INFO) share, and the narrow view of
// a client connection their handlers get: a Req. The families live in the
// packages below (domain/locks, domain/cache, domain/events, domain/todos,
// domain/filestore, domain/wsinfo); each registers its handlers in the
// command table, and the proxy dispatches to them through it. None of them
// knows a client connection: they read their arguments, run commands and
// scripts upstream through Req.Up, and append their reply to Req.Out.
//
// Every key a handler touches is built from the request's workspace
// (Req.Key), so agents never name, or forge, the domain's keys.
package domain

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/lua"
	"github.com/agentproxy/agentproxy/upstream"
)

// Handler runs one domain command; args are its arguments after the name.
type Handler func(r *Req, args [][]byte)

// MayTakeTime reports whether a command may take time before it answers:
// it blocks, or it is a domain command (WAIT retries, several round trips).
func MayTakeTime(c *keyspace.Command) bool {
	if c == nil {
		return false
	}
	if c.Has(keyspace.Blocking) || c.Has(keyspace.BlockingIfArg) {
		return true
	}
	_, ok := c.Handler.(*Entry)
	return ok
}

// Entry is what the command table carries for a domain command.
type Entry struct {
	// Feature is the [features] flag that governs the command ("cache",
	// "todos", "files", "coord").
	Feature string
	Run     Handler
	// Tx, when set, lets the command be queued inside MULTI: it is one
	// script or command, which the handler produces with Req.InTx set
	// (it is queued instead of run), and Tx finishes its reply inside
	// EXEC's (RESP3 maps, the connection's lock tokens, counters). Nil:
	// the command makes several round trips and is refused in MULTI.
	Tx TxFix
}

// TxFix finishes a queued domain command's reply (its element of EXEC's
// reply) and returns it.
type TxFix func(r *Req, args [][]byte, reply []byte) []byte

// TxAsIs keeps the reply as Redis gave it.
func TxAsIs(_ *Req, _ [][]byte, reply []byte) []byte { return reply }

// Register attaches a handler to the table entry of a domain command
// (called from the families' init functions).
func Register(name, feature string, h Handler) {
	keyspace.SetHandler(name, &Entry{Feature: feature, Run: h})
}

// RegisterTx is Register for a command that may be queued in MULTI.
func RegisterTx(name, feature string, h Handler, fix TxFix) {
	keyspace.SetHandler(name, &Entry{Feature: feature, Run: h, Tx: fix})
}

// Fix runs f over reply as if it were the handler's own output at
// Out[start:] and returns what f leaves there (for TxFix functions built
// on a handler's finishing steps).
func (r *Req) Fix(reply []byte, f func(start int)) []byte {
	start := len(r.Out)
	r.Out = append(r.Out, reply...)
	f(start)
	out := append([]byte(nil), r.Out[start:]...)
	r.Out = r.Out[:start]
	return out
}

// Upstream is how a handler reaches Redis from the connection that sent
// the command: the proxy's session implements it (shared connections with
// the client's output limits and memory budget, blocking commands on a
// connection of their own, the workspace's quota of dedicated
// connections); tests implement it over a Pool (Direct).
type Upstream interface {
	// Shared sends n commands encoded in payload on a shared connection
	// and appends their replies, or the errors that stand for them, to
	// r.Out. The error says the batch failed (its errors are in place).
	Shared(r *Req, payload []byte, n int) error
	// Blocking runs one blocking command (args, RESP-encoded as raw) on a
	// connection of its own and appends its reply to r.Out.
	Blocking(r *Req, args [][]byte, raw []byte)
	// TakeDedicated counts one dedicated connection against the
	// workspace's quota; false when it is used up. GiveDedicated ends it.
	TakeDedicated() (ws string, ok bool)
	GiveDedicated(ws string)
	// Stopping reports that the proxy is shutting down (long waits end).
	Stopping() bool
}

// Req is one domain command's view of the connection that sent it.
type Req struct {
	// Out receives the reply; handlers append to it.
	Out []byte
	// Proto is the client's protocol, 2 or 3.
	Proto int
	// Workspace is the connection's workspace and Actor its user name.
	Workspace string
	Actor     string
	Grammar   *keyspace.Grammar
	// Locks holds the connection's lock tokens (from LOCK.ACQUIRE and
	// LOCK.USE) by resource; handlers may add and remove them. Nil until
	// the first one.
	Locks map[string]int64
	Env   *Env
	Up    Upstream
	// InTx: the command is being queued inside MULTI; Script sends EVAL
	// (a NOSCRIPT at EXEC could not be retried) and Up queues instead of
	// running.
	InTx bool
	// Waited is set by a handler that waited on purpose (LOCK.ACQUIRE
	// WAIT retrying): the time is not latency. The session clears it.
	Waited bool
	// away keeps the tokens held in the workspaces the connection left
	// (WORKSPACE): a token counts only in the workspace of its lock.
	away map[string]map[string]int64
	// txAcquires are the lock acquires queued in the client's MULTI
	// ("ws\x00resource"), in flight for the registry until EndTx.
	txAcquires []string

	// Buffers kept across the connection's commands.
	Scratch []byte
	FileBuf []byte
	FCall   *upstream.Call
}

// FileOptions configure the file store ([files]).
type FileOptions struct {
	ChunkSize int
	MaxBytes  int64
	UploadTTL time.Duration
}

// Stats are the domain's counters.
type Stats struct {
	CacheHits   atomic.Int64
	CacheMisses atomic.Int64
}

// Node is the pool of the node that holds workspace ws's keys (all of
// them: the workspace is their hash tag, so one slot).
func (e *Env) Node(ws string) *upstream.Pool {
	if e.Cluster != nil {
		return e.Cluster.Node(upstream.TagSlot(ws))
	}
	return e.Pool
}

// Env is what the domain commands of one proxy share.
type Env struct {
	Pool *upstream.Pool
	// Cluster routes each workspace to its master; nil with one node.
	Cluster *upstream.Cluster
	Files   FileOptions
	Stats   Stats
	// MaxOutput is the client output limit (listen.max_output_bytes):
	// replies the handlers build must fit in it.
	MaxOutput int
	// EventsMaxLen is the length each workspace's event log is trimmed to
	// ([events] stream_maxlen); "" is DefaultEventsMaxLen.
	EventsMaxLen string
	// Locks, when set, learns of the locks the domain's lock commands take
	// and release (the proxy's fencing registry; other proxies learn them
	// from the lock events).
	Locks LockObserver

	mu  sync.Mutex
	ext map[any]any
}

// Value returns the state a family keeps for this proxy under key,
// creating it with mk the first time (the file store's uploads table).
func (e *Env) Value(key any, mk func() any) any {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ext == nil {
		e.ext = map[any]any{}
	}
	v, ok := e.ext[key]
	if !ok {
		v = mk()
		e.ext[key] = v
	}
	return v
}

// LockObserver learns of lock changes (expiresAt: unix ms; token: the
// lock's fencing token, by which reports arriving out of order are told apart). An acquire is
// announced (Acquiring) before it is sent and ended (Done) after its reply
// was observed, so that the observer never misses a lock that already
// holds in Redis.
type LockObserver interface {
	Acquiring(ws, resource string)
	Done(ws, resource string)
	Acquired(ws, resource string, token, expiresAt int64)
	Released(ws, resource string, token int64)
}

// Acquiring announces an acquire of resource to the lock observer. Inside
// MULTI it stays announced until the transaction ends (EndTx); otherwise
// the caller calls the returned func once the reply was observed.
func (r *Req) Acquiring(resource string) (done func()) {
	if r.Env == nil || r.Env.Locks == nil {
		return func() {}
	}
	r.Env.Locks.Acquiring(r.Workspace, resource)
	if r.InTx {
		r.txAcquires = append(r.txAcquires, r.Workspace+"\x00"+resource)
		return func() {}
	}
	ws := r.Workspace
	return func() { r.Env.Locks.Done(ws, resource) }
}

// EndTx ends the acquires queued in a transaction that is over (executed,
// discarded or abandoned).
func (r *Req) EndTx() {
	for _, k := range r.txAcquires {
		ws, res, _ := strings.Cut(k, "\x00")
		r.Env.Locks.Done(ws, res)
	}
	r.txAcquires = r.txAcquires[:0]
}

// Limits of the domain's arguments.
const (
	// MaxResource leaves room for files:<path> with the longest path.
	MaxResource = 1100
	// DefaultEventsMaxLen is the length the event log is trimmed to when
	// Env.EventsMaxLen is not set.
	DefaultEventsMaxLen = "10000"
)

// Key builds <prefix>:{<workspace>}:<kind>[:<rest>].
func (r *Req) Key(kind, rest string) string {
	p := r.Grammar.WorkspacePrefix(r.Workspace)
	if rest == "" {
		return p + kind
	}
	return p + kind + ":" + rest
}

// Channel is the workspace's event channel.
func (r *Req) Channel() string { return r.Key("events", "") }

// Err appends an error reply.
func (r *Req) Err(msg string) { r.Out = wire.AppendError(r.Out, msg) }

// Resource validates a resource name (it becomes part of a key).
func (r *Req) Resource(b []byte) (string, bool) {
	if len(b) == 0 || len(b) > MaxResource || strings.ContainsAny(string(b), "\r\n\x00") {
		r.Err("ERR resource names are 1 to 1100 bytes without CR, LF or NUL")
		return "", false
	}
	return string(b), true
}

// PosInt parses a positive integer argument, answering a clear error.
func (r *Req) PosInt(b []byte, what string, max int64) (int64, bool) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n <= 0 || n > max {
		r.Err("ERR " + what + " must be a whole number from 1 to " + strconv.FormatInt(max, 10) + ", got '" + wire.QuoteArg(b) + "'")
		return 0, false
	}
	return n, true
}

// Version validates an IFVERSION argument (0: create only).
func (r *Req) Version(b []byte) bool {
	if n, err := strconv.ParseInt(string(b), 10, 64); err != nil || n < 0 {
		r.Err("ERR IFVERSION must be a version number (0: create only), got '" + wire.QuoteArg(b) + "'")
		return false
	}
	return true
}

// Script runs a domain script on a shared connection: EVALSHA, then EVAL
// when Redis no longer has it cached. The reply is appended to Out.
func (r *Req) Script(sc *lua.Script, keys, args []string) {
	start := len(r.Out)
	if r.InTx {
		r.Scratch = sc.AppendEval(r.Scratch[:0], keys, args)
		r.Up.Shared(r, r.Scratch, 1)
		return
	}
	r.Scratch = sc.AppendEvalSHA(r.Scratch[:0], keys, args)
	if r.Up.Shared(r, r.Scratch, 1) != nil {
		return
	}
	if lua.IsNoScript(r.Out[start:]) {
		r.Out = r.Out[:start]
		r.Scratch = sc.AppendEval(r.Scratch[:0], keys, args)
		r.Up.Shared(r, r.Scratch, 1)
	}
}

// AsMap turns a flat [field, value, ...] reply at Out[start:] into a RESP3
// map for RESP3 clients.
func (r *Req) AsMap(start int) { r.Out = wire.AsMap(r.Out, start, r.Proto) }

// EventsMaxLen is the length the event log is trimmed to.
func (r *Req) EventsMaxLen() string {
	if r.Env != nil && r.Env.EventsMaxLen != "" {
		return r.Env.EventsMaxLen
	}
	return DefaultEventsMaxLen
}

// HeldToken is the token this connection holds for resource (from
// LOCK.ACQUIRE or LOCK.USE), injected into its writes (SPEC §6), or "".
func (r *Req) HeldToken(resource string) string {
	if t, ok := r.Locks[resource]; ok {
		return strconv.FormatInt(t, 10)
	}
	return ""
}

// Hold attaches a lock token to the connection.
func (r *Req) Hold(resource string, token int64) {
	if r.Locks == nil {
		r.Locks = map[string]int64{}
	}
	r.Locks[resource] = token
}

// Enter makes the tokens held in workspace ws the connection's, keeping
// those of workspace from; with identity set (AUTH as another user) every
// token is forgotten: a token proves nothing for another user.
func (r *Req) Enter(from, ws string, identity bool) {
	if identity {
		r.Locks, r.away = nil, nil
		return
	}
	if from == ws {
		return
	}
	if len(r.Locks) > 0 {
		if r.away == nil {
			r.away = map[string]map[string]int64{}
		}
		r.away[from] = r.Locks
	}
	r.Locks = r.away[ws]
	delete(r.away, ws)
}

// Drop forgets a lock token.
func (r *Req) Drop(resource string) { delete(r.Locks, resource) }
