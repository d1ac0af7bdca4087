package upstream

import (
	"time"
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
// updated and read again), ASK (the key is being migrated: ASKING and the
// command go to the importing node, in one write on one connection) or a
// migrating slot's TRYAGAIN (retried after a pause). Such a command did not
// run, so resending it cannot run it twice. The replies start at out[start:]
// and end at ends (one per command of payload, as sent on a connection to
// sent); each redirected reply is replaced by the final one, and ends are
// moved to match. It returns the new out.
//
// Commands are resent one at a time, after the batch they came in: the
// client still gets its replies in order.
func (c *Cluster) FollowRedirects(out []byte, start int, ends []int, payload []byte, proto int, sent *Pool) []byte {
	var cmds [][]byte // the commands of payload, split when first needed
	var deadline time.Time
	prev := start
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
		final := c.resend(cmds[i], reply, proto, sent, deadline)
		if final == nil || (len(final) == len(reply) && &final[0] == &reply[0]) {
			continue // unchanged: the first reply stands
		}
		shift := len(final) - (b - a)
		out = append(out[:a], append(final, out[b:]...)...)
		for j := i; j < len(ends); j++ {
			ends[j] += shift
		}
		prev = ends[i]
	}
	return out
}

// resend runs cmd until its reply is not a redirection. A client of the
// proxy is not a cluster client: it never gets MOVED or ASK, but TRYAGAIN
// (not run) when the slot's owner cannot be reached or keeps moving, and
// UNCERTAIN when the connection is lost after sending.
func (c *Cluster) resend(cmd, reply []byte, proto int, node *Pool, deadline time.Time) []byte {
	call := NewCall()
	ask := false
	pause := 5 * time.Millisecond
	for n := 0; ; n++ {
		if n >= 2 || IsClusterTryAgain(reply) {
			// Redirected back and forth (a failover in progress: the
			// nodes do not agree yet), or keys split by a migration:
			// wait for the cluster to settle.
			if time.Now().After(deadline) || n >= maxRedirects {
				return []byte(errSlotMoving)
			}
			time.Sleep(pause)
			pause = min(2*pause, 200*time.Millisecond)
		}
		if rd, ok := ParseRedirect(reply); ok {
			if !c.member(rd.Addr) {
				return reply // not a node of the cluster: not a redirect to follow
			}
			if rd.Ask {
				node, ask = c.NodeAt(rd.Addr), true
			} else {
				node, ask = c.Moved(rd.Slot, rd.Addr), false
			}
		} else if !IsClusterTryAgain(reply) {
			return reply
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
		reply = append([]byte(nil), reply...)
	}
}

const (
	errSlotMoving   = "-TRYAGAIN the cluster is moving this key's slot and its new owner could not be reached; the command was not run, retry shortly\r\n"
	errRedirectLost = "-UNCERTAIN the command was sent to the slot's new owner but the connection was lost before the reply; it may or may not have run, retry only if it is idempotent\r\n"
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
