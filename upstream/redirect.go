package upstream

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/agentproxy/agentproxy/keyspace"
)

// Redirects, and how long a command whose slot is migrating is retried:
// a reshard moves a slot's keys in batches, and a multi-key command whose
// keys are split for the moment gets TRYAGAIN from Redis until they are
// together again.
const (
	maxRedirects  = 16
	tryAgainTotal = 3 * time.Second
)

// FollowRedirects resends, on the node named, each command whose reply is a
// cluster redirection: MOVED (the slot has a new owner: the slot map is
// read again), ASK (the key is being migrated: ASKING and the command go to
// the importing node, in one write on one connection) or a migrating slot's
// TRYAGAIN (retried after a pause). Such a command did not run, so resending
// it cannot run it twice. The replies start at out[start:] and end at ends
// (one per command of payload, as sent on a connection to sent); each
// redirected reply is replaced by the final one, and ends are moved to
// match. maxOut bounds a resent command's reply (0: none). It returns the
// new out.
//
// A script's error reply can say anything, MOVED included: for a script
// the proxy does not own (Own), only a MOVED that the cluster's own slot
// map confirms is followed, and ASK and TRYAGAIN reach the client as they
// are.
//
// Commands are resent one at a time, after the batch they came in, as a
// cluster client's pipeline does: the client gets its replies in order, but
// a redirected command runs after the rest of its batch.
func (c *Cluster) FollowRedirects(out []byte, start int, ends []int, payload []byte, proto int, sent *Pool, maxOut int) []byte {
	var cmds [][]byte // the commands of payload, split when first needed
	var deadline time.Time
	prev := start
	type fix struct {
		a, b  int
		final []byte
	}
	var fixes []fix
	for i := range ends {
		a, b := prev, ends[i]
		prev = b
		reply := out[a:b]
		_, isRedirect := ParseRedirect(reply)
		if !isRedirect && !IsClusterTryAgain(reply) {
			continue
		}
		if cmds == nil {
			cmds = splitCommands(payload, len(ends))
			if len(cmds) != len(ends) {
				return out // not one command per reply: leave the replies as they are
			}
		}
		if deadline.IsZero() {
			// One bound for the whole batch, however many of its
			// commands wait for a migrating slot.
			deadline = time.Now().Add(tryAgainTotal)
		}
		if ranAfter(cmds, out, ends, i) {
			// A later command of the batch already ran on one of its
			// keys (an ASK or TRYAGAIN splits a slot key by key): sent
			// now, this one would run after it.
			fixes = append(fixes, fix{a, b, []byte(errWouldReorder)})
			continue
		}
		if final := c.resend(cmds[i], reply, proto, sent, deadline, maxOut); final != nil {
			fixes = append(fixes, fix{a, b, final})
		}
	}
	if len(fixes) == 0 {
		return out
	}
	// One pass: the replies with the resent ones in place.
	base := fixes[0].a
	tail := append([]byte(nil), out[base:]...)
	out = out[:base]
	prevEnd := base
	for _, f := range fixes {
		out = append(out, tail[prevEnd-base:f.a-base]...)
		out = append(out, f.final...)
		prevEnd = f.b
	}
	out = append(out, tail[prevEnd-base:]...)
	// Each end after a replaced reply moves by the growth of the replaced
	// replies up to it.
	k, grown := 0, 0
	for j := range ends {
		for k < len(fixes) && fixes[k].b <= ends[j] {
			grown += len(fixes[k].final) - (fixes[k].b - fixes[k].a)
			k++
		}
		ends[j] += grown
	}
	return out
}

// ranAfter reports whether a command after cmds[i] whose reply is not a
// redirection (it ran) touches a key of cmds[i]. Commands whose keys are
// unknown conflict with every one.
func ranAfter(cmds [][]byte, out []byte, ends []int, i int) bool {
	var acc keyspace.Access
	mine := keysOf(cmds[i], &acc)
	for j := i + 1; j < len(ends); j++ {
		r := out[ends[j-1]:ends[j]]
		if _, redirected := ParseRedirect(r); redirected || IsClusterTryAgain(r) {
			continue
		}
		theirs := keysOf(cmds[j], &acc)
		if mine == nil || theirs == nil {
			return true
		}
		for _, k := range mine {
			for _, t := range theirs {
				if bytes.Equal(k, t) {
					return true
				}
			}
		}
	}
	return false
}

// keysOf is the keys of a RESP command (nil when unknown; empty when it
// has none).
func keysOf(cmd []byte, acc *keyspace.Access) [][]byte {
	var args [][]byte
	for i := 0; ; i++ {
		a := cmdArg(cmd, i)
		if a == nil {
			break
		}
		args = append(args, a)
	}
	if len(args) == 0 {
		return nil
	}
	info := keyspace.Resolve(args)
	acc.Reset()
	if info == nil || keyspace.Extract(info, args, acc) != nil {
		return nil
	}
	keys := make([][]byte, 0, len(acc.Keys))
	for _, k := range acc.Keys {
		keys = append(keys, args[k])
	}
	return keys
}

// forgeable reports whether cmd's error replies may be a script's own text:
// a script or function the proxy does not own (user code).
func (c *Cluster) forgeable(cmd []byte) bool {
	name, arg := cmdArg(cmd, 0), cmdArg(cmd, 1)
	switch strings.ToLower(string(name)) {
	case "eval", "eval_ro":
		sum := sha1.Sum(arg)
		return c.Own == nil || !c.Own(hex.EncodeToString(sum[:]))
	case "evalsha", "evalsha_ro":
		return c.Own == nil || !c.Own(strings.ToLower(string(arg)))
	case "fcall", "fcall_ro":
		return true
	}
	return false
}

// cmdArg is argument i of a RESP command, or nil.
func cmdArg(cmd []byte, i int) []byte {
	if len(cmd) == 0 || cmd[0] != '*' {
		return nil
	}
	p := bytes.IndexByte(cmd, '\n') + 1
	for k := 0; p > 0 && p < len(cmd) && cmd[p] == '$'; k++ {
		e := bytes.IndexByte(cmd[p:], '\r')
		if e < 0 {
			return nil
		}
		n, err := strconv.Atoi(string(cmd[p+1 : p+e]))
		if err != nil || n < 0 || p+e+2+n > len(cmd) {
			return nil
		}
		if k == i {
			return cmd[p+e+2 : p+e+2+n]
		}
		p += e + 2 + n + 2
	}
	return nil
}

// resend runs cmd until its reply is not a redirection. A client of the
// proxy is not a cluster client: it never gets MOVED or ASK for a command
// the proxy can resend, but TRYAGAIN (not run) when the slot's owner cannot
// be reached or keeps moving, and UNCERTAIN when the connection is lost
// after sending. It returns nil when the first reply stands.
func (c *Cluster) resend(cmd, reply []byte, proto int, node *Pool, deadline time.Time, maxOut int) []byte {
	forgeable := c.forgeable(cmd)
	call := NewCall()
	call.MaxOut = maxOut
	ask, first := false, true
	keep := func() []byte {
		if first {
			return nil
		}
		return reply
	}
	for n := 0; ; n++ {
		if n >= 2 || IsClusterTryAgain(reply) {
			if forgeable {
				return keep() // a script's TRYAGAIN may be its own: it may have run
			}
			// Redirected back and forth (a failover in progress: the
			// nodes do not agree yet), or keys split by a migration:
			// wait for the cluster to settle.
			if time.Now().After(deadline) || n >= maxRedirects {
				return []byte(errSlotMoving)
			}
			time.Sleep(pause(n))
		}
		if IsClusterTryAgain(reply) {
			c.markMigrating(KeySlot(cmdArg(cmd, 1)))
		}
		if rd, ok := ParseRedirect(reply); ok {
			if rd.Ask {
				c.markMigrating(rd.Slot)
			}
			switch {
			case rd.Addr == node.Addr() || !c.member(rd.Addr):
				// Redis never redirects to the node that answers, nor
				// to a node the cluster does not list.
				return keep()
			case forgeable && (rd.Ask || !c.owns(rd.Slot, rd.Addr)):
				return keep()
			case rd.Ask:
				node, ask = c.NodeAt(rd.Addr), true
			case forgeable:
				node, ask = c.NodeAt(rd.Addr), false // confirmed by the slot map, which it does not change
			default:
				node, ask = c.Moved(rd.Slot, rd.Addr), false
			}
		} else if !IsClusterTryAgain(reply) {
			return keep()
		}
		conn := node.Shared(proto)
		if conn == nil && node.WaitUp(min(time.Until(deadline), node.opts.DialTimeout)) {
			conn = node.Shared(proto) // a node just learnt of: its first connection
		}
		if conn == nil {
			return []byte(errSlotMoving)
		}
		call.N, call.Out, call.Timeout = 1, call.Out[:0], 0
		var err error
		if ask {
			call.N = 2
			err = conn.Send(call, asking, cmd)
		} else {
			err = conn.Send(call, cmd)
		}
		if err != nil {
			return []byte(errSlotMoving)
		}
		call.Wait()
		if errors.Is(call.Err, ErrOutputFull) {
			return []byte(errRedirectTooBig)
		}
		if call.Err != nil {
			return []byte(errRedirectLost)
		}
		reply = call.Out
		if ask {
			// ASKING's +OK, then the command's reply.
			var f Framer
			k, done, ferr := f.Scan(reply)
			if ferr != nil || !done {
				return []byte(errRedirectLost)
			}
			reply = reply[k:]
		}
		reply, first = append([]byte(nil), reply...), false
	}
}

// pause is the wait before the nth attempt at a command whose slot is
// moving.
func pause(n int) time.Duration {
	return min(5*time.Millisecond<<min(n, 6), 200*time.Millisecond)
}

// owns reports whether the slot map, read again if it says otherwise, has
// addr as the owner of slot.
func (c *Cluster) owns(slot int, addr string) bool {
	if p := c.slots[slot].Load(); p != nil && p.Addr() == addr {
		return true
	}
	c.syncRefresh()
	p := c.slots[slot].Load()
	return p != nil && p.Addr() == addr
}

const (
	errSlotMoving     = "-TRYAGAIN the cluster is moving this key's slot and its new owner could not be reached; the command was not run, retry shortly\r\n"
	errRedirectLost   = "-UNCERTAIN the command was sent to the slot's new owner but the connection was lost before the reply; it may or may not have run, retry only if it is idempotent\r\n"
	errWouldReorder   = "-TRYAGAIN the cluster is moving this key's slot and a later command of the same pipeline already ran on its keys; this one was not run (resending it now would reorder them), retry it\r\n"
	errRedirectTooBig = "-ERR reply exceeds the proxy's client output limit (listen.max_output_bytes)\r\n"
)

var asking = AppendCommand(nil, "ASKING")

// splitCommands cuts payload into its first n RESP commands.
func splitCommands(payload []byte, n int) [][]byte {
	out := make([][]byte, 0, n)
	for len(payload) > 0 && len(out) < n {
		var f Framer
		k, done, err := f.Scan(payload)
		if err != nil || !done {
			return nil
		}
		out = append(out, payload[:k])
		payload = payload[k:]
	}
	return out
}
