package proxy

import (
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/upstream"
)

// Tunnel mode serves clients whose connection receives messages nobody asked
// for: subscribers, CLIENT TRACKING in RESP3, MONITOR. The client gets a
// dedicated upstream connection for the rest of its life; a pump copies
// every upstream frame to the client while the session forwards requests.
// The proxy's own answers (QUIT, AUTH, ...) are written between whole
// frames, so they never split one; against replies still in flight their
// order is best effort.

// startTunnel dials the tunnel and starts the pump. Output so far is
// flushed first so it precedes everything the pump writes.
func (s *session) startTunnel() bool {
	if !s.flush() {
		s.quit = true
		return true
	}
	nc, left, err := s.srv.pool.DialRaw(s.proto)
	if err != nil {
		s.log.Debug("tunnel dial failed", zap.Error(err))
		return false
	}
	if s.db != s.srv.pool.DB() {
		nc.SetDeadline(time.Now().Add(s.srv.pool.ReadTimeout()))
		nc.Write(upstream.AppendCommand(nil, "SELECT", itoa(s.db)))
		_, left, err = upstream.ReadFrames(nc, 1)
		nc.SetDeadline(time.Time{})
		if err != nil {
			nc.Close()
			return false
		}
	}
	if s.pinned != nil {
		s.unpin(false)
	}
	s.srv.Stats.Pinned.Add(1)
	s.tconn = nc
	go s.pump(nc, left)
	return true
}

// execTunnel forwards requests to the tunnel, answering the proxy's own.
func (s *session) execTunnel(cmds []command) {
	s.scratch = s.scratch[:0]
	for i := range cmds {
		c := &cmds[i]
		name := c.Args[0]
		info := keyspace.Lookup(name)
		switch {
		case c.deny != "":
			s.sendTunnel()
			s.out = appendError(s.out, c.deny)
		case info.Has(keyspace.Unsupported):
			s.sendTunnel()
			s.out = appendError(s.out, ErrUnsupported)
		case eqFold(name, "quit"):
			s.sendTunnel()
			s.out = append(s.out, "+OK\r\n"...)
			s.quit = true
			return
		case eqFold(name, "hello"):
			s.sendTunnel()
			if len(c.Args) > 1 {
				if v, ok := parseInt(c.Args[1]); ok && v != s.proto {
					s.out = appendError(s.out, ErrProtoSwitch)
					continue
				}
			}
			s.hello(c.Args[1:])
		case eqFold(name, "reset"):
			// Redis resets the tunnel connection (no subscriptions, RESP2,
			// no name); the session's view of it follows.
			s.scratch = append(s.scratch, c.Raw...)
			s.proto, s.name = 2, ""
		case eqFold(name, "auth"):
			s.sendTunnel()
			s.auth(c.Args[1:])
		case eqFold(name, "client") && len(c.Args) > 1 && !eqFold(c.Args[1], "tracking") &&
			!eqFold(c.Args[1], "caching") && !eqFold(c.Args[1], "list") && !eqFold(c.Args[1], "info"):
			s.sendTunnel()
			if s.client(c.Args[1:]) != routeLocal {
				s.scratch = append(s.scratch, c.Raw...)
			}
		default:
			s.scratch = append(s.scratch, c.Raw...)
		}
	}
	s.sendTunnel()
}

// sendTunnel writes the forwarded requests gathered in scratch.
func (s *session) sendTunnel() {
	if len(s.scratch) == 0 {
		return
	}
	s.tconn.SetWriteDeadline(time.Now().Add(s.srv.pool.ReadTimeout()))
	if _, err := s.tconn.Write(s.scratch); err != nil {
		s.quit = true
	}
	s.scratch = s.scratch[:0]
}

// pump copies upstream frames to the client until either side fails, then
// closes both so the session ends too.
func (s *session) pump(nc interface {
	Read([]byte) (int, error)
	Close() error
}, left []byte) {
	defer s.nc.Close()
	defer nc.Close()
	buf := make([]byte, 16<<10)
	w := copy(buf, left)
	var f upstream.Framer
	open := false   // a frame is partly written
	locked := false // wmu is held (only while a frame is open)
	defer func() {
		if locked {
			s.wmu.Unlock()
		}
	}()
	for {
		r := 0
		for r < w {
			n, done, err := f.Scan(buf[r:w])
			if err != nil {
				return
			}
			r += n
			open = !done
			if !done {
				break
			}
		}
		if r > 0 {
			// Whole frames (and the start of an open one) in one write;
			// the lock stays held while a frame is open so the session
			// never writes into the middle of it.
			if !locked {
				s.wmu.Lock()
				locked = true
			}
			if t := s.srv.opts.ClientWriteTimeout; t > 0 {
				s.nc.SetWriteDeadline(time.Now().Add(t))
			}
			if _, err := s.nc.Write(buf[:r]); err != nil {
				s.srv.Stats.SlowConsumers.Add(1)
				return
			}
			if !open {
				s.wmu.Unlock()
				locked = false
			}
		}
		w = copy(buf, buf[r:w])
		if w == len(buf) {
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:w])
			buf = nb
		}
		n, err := nc.Read(buf[w:])
		w += n
		if err != nil && n == 0 {
			return
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
