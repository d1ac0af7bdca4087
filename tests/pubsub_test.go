package tests

// Pub/sub tests (SPEC §3: SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE tunnel the client
// to a dedicated upstream connection). Every subscribe, unsubscribe, message
// and pong frame is compared byte for byte with the same sequence run
// against Redis directly, in RESP2 and RESP3.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
	"github.com/agentproxy/agentproxy/upstream"
)

func TestPubSubMatchesRedisRESP2(t *testing.T) {
	r, a := dtStart(t)
	steps := []dtStep{
		// The first SUBSCRIBE pipelined behind ordinary commands.
		dtSend(0, "SET @k v", "GET @k", "SUBSCRIBE ^events:a ^events:b"),
		dtExpect(0, 1), // the second subscribe confirmation
		dtSend(1, "PUBLISH ^events:a hello"),
		dtExpect(0, 1),
		dtSend(0, "PSUBSCRIBE ^events:*"),
		dtSend(1, "PUBLISH ^events:b second"),
		dtExpect(0, 2), // message, then pmessage
		dtSend(0, "PING"),
		dtSend(0, "PING hi"),
		dtSend(0, "GET @k"),
		dtSend(1, "PUBSUB NUMSUB ^events:a ^events:b ^events:c", "PUBSUB NUMPAT", "PUBSUB CHANNELS ^events:*"),
		dtSend(0, "UNSUBSCRIBE ^events:a"),
		dtSend(1, "PUBLISH ^events:a only-pattern"),
		dtExpect(0, 1),
		dtSend(0, "UNSUBSCRIBE"),
		dtSend(0, "PUNSUBSCRIBE"),
		// Out of subscriber mode: the same connection serves commands.
		dtSend(0, "SET @k v", "GET @k", "PING"),
		dtSend(0, "UNSUBSCRIBE"),
		dtSend(1, "PUBLISH ^events:a nobody", "PUBSUB NUMSUB ^events:a", "PUBSUB NUMPAT"),
		// And back in: subscribe again, pipelined with other frames.
		dtSend(0, "SUBSCRIBE ^events:c", "PING"),
		dtSend(1, "PUBLISH ^events:c again"),
		dtExpect(0, 1),
		dtSend(0, "UNSUBSCRIBE ^events:c", "GET @k"),
	}
	dtCompareSteps(t, r, a, 2, 2, steps)
}

func TestPubSubMatchesRedisRESP3(t *testing.T) {
	r, a := dtStart(t)
	steps := []dtStep{
		dtSend(0, "DEL @k", "SUBSCRIBE ^events:a", "EXISTS @k"),
		// RESP3 clients run commands while subscribed.
		dtSend(0, "GET @k", "SET @k v", "GET @k", "HSET @h f v", "HGETALL @h", "PING"),
		dtSend(1, "PUBLISH ^events:a hello"),
		dtExpect(0, 1),
		dtSend(0, "PSUBSCRIBE ^events:*"),
		dtSend(1, "PUBLISH ^events:a second"),
		dtExpect(0, 2),
		dtSend(0, "SSUBSCRIBE ^events:shard"),
		dtSend(1, "SPUBLISH ^events:shard sharded", "PUBSUB SHARDNUMSUB ^events:shard"),
		dtExpect(0, 1),
		dtSend(0, "SUNSUBSCRIBE"),
		dtSend(0, "UNSUBSCRIBE ^events:a"),
		dtSend(0, "PUNSUBSCRIBE"),
		dtSend(0, "GET @k", "PING"),
		dtSend(1, "PUBLISH ^events:a nobody"),
	}
	frames := dtCompareSteps(t, r, a, 3, 2, steps)
	// Beyond equality: what is not a reply to a command arrives as a push.
	pushes := 0
	for _, f := range frames {
		name := strings.ToUpper(dtArgs(f.cmd)[0])
		isPush := f.cmd == "(unsolicited)" || strings.HasSuffix(name, "SUBSCRIBE")
		if isPush != (f.frame[0] == '>') {
			t.Fatalf("step %d %s: %q: push frame %v, want %v", f.step, f.cmd, f.frame, f.frame[0] == '>', isPush)
		}
		if isPush {
			pushes++
		}
	}
	if pushes != 10 {
		t.Fatalf("saw %d push frames, want 10", pushes)
	}
}

// TestPubSubReset: RESET leaves subscriber mode and returns the connection
// to RESP2, as it does on Redis.
func TestPubSubReset(t *testing.T) {
	r, a := dtStart(t)
	for _, proto := range []int{2, 3} {
		t.Run("resp"+strconv.Itoa(proto), func(t *testing.T) {
			steps := []dtStep{
				dtSend(0, "CLIENT SETNAME subscriber"),
				dtSend(0, "SUBSCRIBE ^events:a"),
				dtSend(0, "PSUBSCRIBE ^events:*"),
				dtSend(0, "RESET"),
				dtSend(1, "PUBSUB NUMSUB ^events:a", "PUBSUB NUMPAT"),
				// One at a time: in tunnel mode the proxy's own answers
				// (CLIENT GETNAME, HELLO) are not ordered against forwarded
				// replies still in flight (see tunnel.go).
				dtSend(0, "GET @nope"),
				dtSend(0, "CLIENT GETNAME"),
				dtSend(0, "PING"),
				dtSend(0, "HELLO"),
			}
			dtCompareSteps(t, r, a, proto, 2, steps)
		})
	}
}

// TestPubSubPublishersAnywhere: a subscriber through the proxy receives
// what a direct client and a proxy client publish, every message in order
// and intact, including large and binary payloads.
func TestPubSubPublishersAnywhere(t *testing.T) {
	r, a := dtStart(t)
	for _, proto := range []int{2, 3} {
		ch := dtWS + "events:stream" + strconv.Itoa(proto)
		kind := byte('*')
		if proto == 3 {
			kind = '>'
		}
		frame := func(parts ...string) string {
			b := []byte{kind}
			b = strconv.AppendInt(b, int64(len(parts)), 10)
			b = append(b, "\r\n"...)
			for _, p := range parts {
				if p[0] == ':' {
					b = append(b, p+"\r\n"...)
					continue
				}
				b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(p), p)
			}
			return string(b)
		}
		sub := dtDial(t, a.Addr(), proto)
		if got, want := sub.DoS("SUBSCRIBE", ch), frame("subscribe", ch, ":1"); got != want {
			t.Fatalf("resp%d SUBSCRIBE: got %q, want %q", proto, got, want)
		}
		const n = 400
		payload := func(i int) string {
			switch i % 4 {
			case 0:
				return fmt.Sprintf("msg-%d", i)
			case 1:
				return fmt.Sprintf("bin\r\n\x00-%d", i)
			case 2:
				return fmt.Sprintf("%d:%0*d", i, 20000, i) // spans several reads
			default:
				return fmt.Sprintf("*%d", i) // looks like a RESP header
			}
		}
		publishers := []*testutil.Conn{testutil.Dial(t, r.Addr), dtDial(t, a.Addr(), 2)}
		for half, pub := range publishers {
			var req []byte
			for i := half * n / 2; i < (half+1)*n/2; i++ {
				req = upstream.AppendCommand(req, "PUBLISH", ch, payload(i))
			}
			pub.Write(req)
			for i := 0; i < n/2; i++ {
				if got := string(pub.Read()); got != ":1\r\n" {
					t.Fatalf("resp%d PUBLISH %d: got %q, want :1", proto, i, got)
				}
			}
		}
		for i := 0; i < n; i++ {
			if got, want := string(sub.Read()), frame("message", ch, payload(i)); got != want {
				t.Fatalf("resp%d message %d: got %s, want %s", proto, i, dtQuote([]byte(got)), dtQuote([]byte(want)))
			}
		}
	}
}

// TestPubSubSubscriberLeaves: when a subscriber disconnects, the proxy
// closes its upstream connection (Redis counts no subscriber any more) and
// the pinned-sessions gauge and client count return to zero.
func TestPubSubSubscriberLeaves(t *testing.T) {
	r, a := dtStart(t)
	direct := testutil.Dial(t, r.Addr)
	ch := dtWS + "events:leave"
	numsub := func(n int) string {
		return fmt.Sprintf("*2\r\n$%d\r\n%s\r\n:%d\r\n", len(ch), ch, n)
	}
	for _, proto := range []int{2, 3} {
		sub := dtDial(t, a.Addr(), proto)
		sub.Send("SUBSCRIBE", ch)
		sub.Read()
		if got := direct.DoS("PUBSUB", "NUMSUB", ch); got != numsub(1) {
			t.Fatalf("resp%d: PUBSUB NUMSUB while subscribed: %q", proto, got)
		}
		if got := txPinned(a); got != 1 {
			t.Fatalf("resp%d: pinned gauge %d while subscribed, want 1", proto, got)
		}
		sub.Close()
		dtAwait(t, 5*time.Second, "redis to drop the subscriber", func() bool {
			return direct.DoS("PUBSUB", "NUMSUB", ch) == numsub(0)
		})
		dtAwait(t, 5*time.Second, "the proxy to drop the client", func() bool {
			return a.Server().Clients() == 0
		})
		if got := txPinned(a); got != 0 {
			t.Fatalf("resp%d: pinned gauge %d after the subscriber left, want 0", proto, got)
		}
	}
}

// TestPubSubTunnelReplyOrder: once a connection is tunnelled (it
// subscribed once), the proxy's own answers (CLIENT GETNAME, HELLO, AUTH,
// refused commands) must still come in request order when pipelined after
// forwarded commands. A RESP3 client may pipeline anything while
// subscribed, and redis-py returns a connection that unsubscribed to its
// pool for ordinary use.
//
// KNOWN BUG: execTunnel appends the local answer to the session's output
// at once, while the forwarded command's reply is still on its way through
// the pump, so the two usually arrive swapped. Remove the Skip when fixed.
func TestPubSubTunnelReplyOrder(t *testing.T) {
	_, a := dtStart(t)
	for _, proto := range []int{2, 3} {
		c := dtDial(t, a.Addr(), proto)
		c.Do("CLIENT", "SETNAME", "tunnelled")
		c.Send("SUBSCRIBE", dtWS+"events:order")
		c.Read()
		if proto == 2 {
			c.Send("UNSUBSCRIBE")
			c.Read()
		}
		k := dtKV + "order"
		c.Do("SET", k, "value")
		for i := 0; i < 50; i++ {
			var req []byte
			req = upstream.AppendCommand(req, "GET", k)
			req = upstream.AppendCommand(req, "CLIENT", "GETNAME")
			c.Write(req)
			first, second := string(c.Read()), string(c.Read())
			if first != "$5\r\nvalue\r\n" || second != "$9\r\ntunnelled\r\n" {
				t.Fatalf("resp%d round %d: pipelined [GET, CLIENT GETNAME] answered %q, %q: replies out of order", proto, i, first, second)
			}
		}
	}
}
