package events

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tidwall/redcon"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/upstream"
)

// Write is one key written by a plain write that Redis acknowledged.
type Write struct {
	WS, Actor, Cmd string
	Kind           string
	Resource       string // the key after "<prefix>:{ws}:"
	Delete         bool   // the command deleted the key (DEL, UNLINK, GETDEL)
	TS             int64  // unix ms
}

// Emitter turns plain writes into events (SPEC §8): one envelope per
// written key on the workspace's channel and in its log, sent off the
// client's path. Writes queue in a bounded channel (a writer waits at most
// EmitWait for room, then the event is dropped and counted); one goroutine sends them in
// batches on a shared connection, a PUBLISH and an XADD per event, and
// optionally keeps only the last event per key within a window.
type Emitter struct {
	pool     upstream.Router
	prefix   string
	maxLen   string
	coalesce time.Duration
	log      *zap.Logger
	ch       chan Write
	env, ch0 []byte // scratch of append (the Run goroutine's)

	// Sent and Dropped count events.
	Sent    atomic.Int64
	Dropped atomic.Int64
}

// NewEmitter returns an emitter; start it with Run.
func NewEmitter(pool upstream.Router, prefix string, maxLen int, coalesce time.Duration, log *zap.Logger) *Emitter {
	if log == nil {
		log = zap.NewNop()
	}
	return &Emitter{pool: pool, prefix: prefix, maxLen: strconv.Itoa(maxLen), coalesce: coalesce, log: log,
		ch: make(chan Write, 8192)}
}

// EmitWait is how long a writer waits for room in a full queue before its
// event is dropped (and counted): writes faster than Redis takes their
// events slow down to its pace, and a Redis that takes none does not stall
// the writers for longer.
const EmitWait = 100 * time.Millisecond

// Emit queues w; false when it was dropped.
func (e *Emitter) Emit(w Write) bool {
	select {
	case e.ch <- w:
		return true
	default:
	}
	t := time.NewTimer(EmitWait)
	defer t.Stop()
	select {
	case e.ch <- w:
		return true
	case <-t.C:
		e.Dropped.Add(1)
		return false
	}
}

// Run sends queued events until ctx ends. One goroutine, owned by the
// caller: a batch goes out as soon as the previous one is answered, so
// an idle emitter sends at once and a busy one sends many per write.
func (e *Emitter) Run(ctx context.Context) {
	call := upstream.NewCall()
	var batch []Write
	var req []byte
	var other []Write
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-e.ch:
			batch = append(batch[:0], w)
		}
		if e.coalesce > 0 {
			t := time.NewTimer(e.coalesce)
		collect:
			for {
				select {
				case w := <-e.ch:
					batch = append(batch, w)
				case <-t.C:
					break collect
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
			batch = lastPerKey(batch)
		}
	drain:
		for len(batch) < 1024 {
			select {
			case w := <-e.ch:
				batch = append(batch, w)
			default:
				break drain
			}
		}
		// Each workspace's log lives on its node (a cluster's master for
		// the workspace's slot): one write per node, in order.
		for rest := batch; len(rest) > 0; {
			node := e.pool.Node(upstream.TagSlot(rest[0].WS))
			req, other = req[:0], other[:0]
			n := 0
			for _, w := range rest {
				if e.pool.Node(upstream.TagSlot(w.WS)) == node {
					req = e.append(req, w)
					n++
				} else {
					other = append(other, w)
				}
			}
			rest = append(rest[:0], other...)
			e.send(call, node, req, n)
		}
	}
}

// send writes the PUBLISH and XADD of n events to node.
func (e *Emitter) send(call *upstream.Call, node *upstream.Pool, req []byte, n int) {
	conn := node.Shared(2)
	if conn == nil {
		e.Dropped.Add(int64(n))
		return
	}
	call.Out, call.N, call.Timeout = call.Out[:0], 2*n, 0
	cl, _ := e.pool.(*upstream.Cluster)
	if cl != nil {
		if call.Ends == nil {
			call.Ends = make([]int, 0, 2*n) // non-nil: the replies' ends, for the redirects below
		}
		call.Ends = call.Ends[:0]
	}
	if err := conn.Send(call, req); err != nil {
		e.Dropped.Add(int64(n))
		return
	}
	call.Wait()
	if cl != nil && call.Err == nil {
		// A workspace's log on a slot being moved: follow the redirects.
		call.Out = cl.FollowRedirects(call.Out, 0, call.Ends, req, 2, node, 0)
	}
	if call.Err != nil {
		e.log.Debug("events not sent", zap.Error(call.Err), zap.Int("events", n))
		e.Dropped.Add(int64(n))
		return
	}
	e.Sent.Add(int64(n))
}

// lastPerKey keeps the last write of each key, in order.
func lastPerKey(b []Write) []Write {
	last := map[string]int{}
	for i, w := range b {
		last[w.WS+"\x00"+w.Resource] = i
	}
	out := b[:0]
	for i, w := range b {
		if last[w.WS+"\x00"+w.Resource] == i {
			out = append(out, w)
		}
	}
	return out
}

// append adds the PUBLISH and XADD of w's envelope (SPEC §8) to req,
// without allocating: the envelope is written once into e.env.
func (e *Emitter) append(req []byte, w Write) []byte {
	b := e.env[:0]
	b = append(b, `{"v":1,"type":`...)
	typ := ".write"
	if w.Delete {
		typ = ".delete"
	}
	b = append(b, '"')
	b = appendJSONBody(b, w.Kind)
	b = append(b, typ...)
	b = append(b, `","ws":`...)
	b = appendJSONString(b, w.WS)
	b = append(b, `,"resource":`...)
	b = appendJSONString(b, w.Resource)
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, w.Actor)
	b = append(b, `,"cmd":`...)
	b = appendJSONString(b, w.Cmd)
	b = append(b, `,"version":0,"ts":`...)
	b = strconv.AppendInt(b, w.TS, 10)
	b = append(b, '}')
	e.env = b
	// <prefix>:{ws}:events
	ch := append(append(append(e.ch0[:0], e.prefix...), ":{"...), w.WS...)
	ch = append(ch, "}:events"...)
	e.ch0 = ch
	req = redcon.AppendArray(req, 3)
	req = redcon.AppendBulkString(req, "PUBLISH")
	req = redcon.AppendBulk(req, ch)
	req = redcon.AppendBulk(req, b)
	req = redcon.AppendArray(req, 8)
	req = redcon.AppendBulkString(req, "XADD")
	req = appendBulk2(req, ch, ":log")
	req = redcon.AppendBulkString(req, "MAXLEN")
	req = redcon.AppendBulkString(req, "~")
	req = redcon.AppendBulkString(req, e.maxLen)
	req = redcon.AppendBulkString(req, "*")
	req = redcon.AppendBulkString(req, "event")
	return redcon.AppendBulk(req, b)
}

// appendBulk2 appends the bulk string a+b.
func appendBulk2(dst, a []byte, b string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(a)+len(b)), 10)
	dst = append(dst, "\r\n"...)
	dst = append(append(dst, a...), b...)
	return append(dst, "\r\n"...)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONBody(dst, s)
	return append(dst, '"')
}

// appendJSONBody appends s escaped for a JSON string (as encoding/json
// does: quotes, backslashes and control characters escaped, <, >, & and
// U+2028/9 as \u escapes, invalid UTF-8 as U+FFFD).
func appendJSONBody(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}
