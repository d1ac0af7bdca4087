package fencing

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

// Watch keeps r in step with the locks in Redis until ctx ends: it
// subscribes to every workspace's lock channel (<prefix>:{*}:events:locks,
// published by the lock scripts only: agents may not publish there),
// loads the locks that exist (SCAN <prefix>:{*}:lock:*, PTTL), marks r
// synced, and applies the lock events as they come. When the subscription
// fails r is marked unsynced (every guarded write takes the script) and
// Watch starts over with backoff. One goroutine, owned by the caller.
//
// In a cluster the subscription is on any node (pub/sub reaches every
// node) and the locks are loaded from every master.
func (r *Registry) Watch(ctx context.Context, up upstream.Router, prefix string, log *zap.Logger) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := r.watchOnce(ctx, up, prefix)
		r.SetSynced(false)
		if ctx.Err() != nil {
			return
		}
		log.Debug("lock watch restarting", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		if backoff *= 2; backoff > 2*time.Second {
			backoff = 2 * time.Second
		}
	}
}

func (r *Registry) watchOnce(ctx context.Context, up upstream.Router, prefix string) error {
	sub, left, err := up.Node(-1).DialRaw(2)
	if err != nil {
		return err
	}
	defer sub.Close()
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	defer stop()
	sub.SetDeadline(time.Now().Add(5 * time.Second))
	// Named, so operators (and CLIENT LIST checks) can tell it apart.
	req := upstream.AppendCommand(nil, "CLIENT", "SETNAME", "agentproxy-lockwatch")
	if _, err := sub.Write(upstream.AppendCommand(req, "PSUBSCRIBE", prefix+":{*}:events:locks")); err != nil {
		return err
	}
	fr := &frames{nc: sub, buf: append(make([]byte, 0, 64<<10), left...)}
	for i := 0; i < 2; i++ { // +OK, the psubscribe confirmation
		if _, err := fr.next(); err != nil {
			return err
		}
	}
	sub.SetDeadline(time.Time{})
	// Subscribed: what happens from now on arrives as events, so the
	// locks that exist now are the rest.
	r.Reset()
	for _, pool := range up.Masters() {
		if err := r.load(pool, prefix); err != nil {
			return err
		}
	}
	// Events published while the locks loaded are queued on the
	// subscription: apply them (up to the answer to a PING, which comes
	// after them) before the registry counts as complete.
	sub.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := sub.Write(upstream.AppendCommand(nil, "PING", "agentproxy-synced")); err != nil {
		return err
	}
	for {
		f, err := fr.next()
		if err != nil {
			return err
		}
		if v, _, err := domain.ParseReply(f); err == nil && v.Typ == '*' && len(v.Kids) == 2 &&
			v.Kids[0].Str == "pong" && v.Kids[1].Str == "agentproxy-synced" {
			break
		}
		r.apply(f, prefix)
	}
	sub.SetDeadline(time.Time{})
	r.SetSynced(true)
	for {
		sub.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := fr.next()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.Purge()
			continue
		}
		if err != nil {
			return err
		}
		r.apply(f, prefix)
	}
}

// event is the part of an event envelope the registry reads.
type event struct {
	Type      string `json:"type"`
	WS        string `json:"ws"`
	Resource  string `json:"resource"`
	Version   int64  `json:"version"` // the fencing token
	ExpiresAt int64  `json:"expires_at"`
}

// apply reads one pmessage frame. The workspace is the channel's, which
// must be exactly <prefix>:{ws}:events:locks (the pattern also matches
// channels such as <prefix>:{a}:events:x}:events:locks, which an agent of
// workspace a may publish on), and the envelope must agree.
func (r *Registry) apply(frame []byte, prefix string) {
	v, _, err := domain.ParseReply(frame)
	if err != nil || v.Typ != '*' || len(v.Kids) != 4 || v.Kids[0].Str != "pmessage" {
		return
	}
	ws, ok := locksChannelWS(v.Kids[2].Str, prefix)
	if !ok {
		return
	}
	var e event
	if json.Unmarshal([]byte(v.Kids[3].Str), &e) != nil || e.WS != ws || e.Resource == "" {
		return
	}
	switch e.Type {
	case "lock.acquired", "lock.extended":
		r.Acquired(ws, e.Resource, e.Version, e.ExpiresAt)
	case "lock.released":
		r.Released(ws, e.Resource, e.Version)
	}
}

// locksChannelWS returns ws of a channel that is exactly
// <prefix>:{ws}:events:locks.
func locksChannelWS(ch, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(ch, prefix+":{")
	if !ok {
		return "", false
	}
	ws, tail, ok := strings.Cut(rest, "}")
	return ws, ok && ws != "" && tail == ":events:locks"
}

// load reads every lock that exists, a page at a time.
func (r *Registry) load(pool *upstream.Pool, prefix string) error {
	nc, left, err := pool.DialRaw(2)
	if err != nil {
		return err
	}
	defer nc.Close()
	fr := &frames{nc: nc, buf: append(make([]byte, 0, 64<<10), left...)}
	head := prefix + ":{"
	cursor := "0"
	for {
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(upstream.AppendCommand(nil, "SCAN", cursor, "MATCH", head+"*}:lock:*", "COUNT", "1000")); err != nil {
			return err
		}
		f, err := fr.next()
		if err != nil {
			return err
		}
		v, _, err := domain.ParseReply(f)
		if err != nil || v.Typ != '*' || len(v.Kids) != 2 {
			return errors.New("unexpected SCAN reply")
		}
		cursor = v.Kids[0].Str
		var req []byte
		var keys []string
		for _, k := range v.Kids[1].Kids {
			keys = append(keys, k.Str)
			req = upstream.AppendCommand(req, "PTTL", k.Str)
			req = upstream.AppendCommand(req, "HGET", k.Str, "token")
		}
		if len(keys) > 0 {
			now := time.Now().UnixMilli()
			if _, err := nc.Write(req); err != nil {
				return err
			}
			for _, k := range keys {
				f, err := fr.next()
				if err != nil {
					return err
				}
				ttl, _ := strconv.ParseInt(strings.TrimSpace(string(f[1:])), 10, 64)
				if f, err = fr.next(); err != nil {
					return err
				}
				var tok int64
				if v, _, err := domain.ParseReply(f); err == nil && v.Typ == '$' {
					tok, _ = strconv.ParseInt(v.Str, 10, 64)
				}
				ws, res, ok := lockName(k, head)
				switch {
				case !ok || ttl == -2:
				case ttl < 0:
					r.Acquired(ws, res, tok, now+24*time.Hour.Milliseconds()) // no TTL: assume held
				default:
					r.Acquired(ws, res, tok, now+ttl)
				}
			}
		}
		if cursor == "0" {
			return nil
		}
	}
}

// lockName splits <prefix>:{ws}:lock:<resource>.
func lockName(key, head string) (ws, res string, ok bool) {
	rest, ok := strings.CutPrefix(key, head)
	if !ok {
		return "", "", false
	}
	ws, res, ok = strings.Cut(rest, "}:lock:")
	// A kv key such as <prefix>:{w}:kv:x}:lock:y matches the SCAN pattern
	// too; its "workspace" is not a valid name.
	return ws, res, ok && keyspace.ValidWorkspace(ws) && res != ""
}

// frames reads whole RESP frames from a connection.
type frames struct {
	nc   net.Conn
	buf  []byte
	f    upstream.Framer
	pos  int
	done int // bytes of buf handed out by the last next
}

// next returns the next frame; it is valid until the following call.
func (fr *frames) next() ([]byte, error) {
	if fr.done > 0 {
		fr.buf = append(fr.buf[:0], fr.buf[fr.done:]...)
		fr.pos, fr.done = fr.pos-fr.done, 0
	}
	for {
		if fr.pos < len(fr.buf) {
			n, done, err := fr.f.Scan(fr.buf[fr.pos:])
			if err != nil {
				return nil, err
			}
			fr.pos += n
			if done {
				fr.done = fr.pos
				return fr.buf[:fr.pos], nil
			}
		}
		if cap(fr.buf)-len(fr.buf) < 4<<10 {
			fr.buf = append(fr.buf, make([]byte, 16<<10)...)[:len(fr.buf)]
		}
		n, err := fr.nc.Read(fr.buf[len(fr.buf):cap(fr.buf)])
		fr.buf = fr.buf[:len(fr.buf)+n]
		if err != nil && n == 0 {
			return nil, err
		}
	}
}
