package events

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"

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
	pool     *upstream.Pool
	prefix   string
	maxLen   string
	coalesce time.Duration
	log      *zap.Logger
	ch       chan Write

	// Sent and Dropped count events.
	Sent    atomic.Int64
	Dropped atomic.Int64
}

// NewEmitter returns an emitter; start it with Run.
func NewEmitter(pool *upstream.Pool, prefix string, maxLen int, coalesce time.Duration, log *zap.Logger) *Emitter {
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
		req = req[:0]
		for _, w := range batch {
			req = e.append(req, w)
		}
		conn := e.pool.Shared(2)
		if conn == nil {
			e.Dropped.Add(int64(len(batch)))
			continue
		}
		call.Out, call.N, call.Timeout = call.Out[:0], 2*len(batch), 0
		if err := conn.Send(call, req); err != nil {
			e.Dropped.Add(int64(len(batch)))
			continue
		}
		call.Wait()
		if call.Err != nil {
			e.log.Debug("events not sent", zap.Error(call.Err), zap.Int("events", len(batch)))
			e.Dropped.Add(int64(len(batch)))
			continue
		}
		e.Sent.Add(int64(len(batch)))
	}
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

// envelope is an event as SPEC §8 writes it.
type envelope struct {
	V        int    `json:"v"`
	Type     string `json:"type"`
	WS       string `json:"ws"`
	Resource string `json:"resource"`
	Actor    string `json:"actor"`
	Cmd      string `json:"cmd"`
	Version  int    `json:"version"`
	TS       int64  `json:"ts"`
}

func (e *Emitter) append(req []byte, w Write) []byte {
	typ := w.Kind + ".write"
	if w.Delete {
		typ = w.Kind + ".delete"
	}
	b, _ := json.Marshal(envelope{V: 1, Type: typ, WS: w.WS, Resource: w.Resource, Actor: w.Actor, Cmd: w.Cmd, TS: w.TS})
	head := e.prefix + ":{" + w.WS + "}:events"
	req = upstream.AppendCommand(req, "PUBLISH", head, string(b))
	return upstream.AppendCommand(req, "XADD", head+":log", "MAXLEN", "~", e.maxLen, "*", "event", string(b))
}
