package proxy

import (
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/upstream"
)

// Tunnel mode serves clients whose connection receives messages nobody asked
// for: subscribers, CLIENT TRACKING in RESP3, MONITOR. The client gets a
// dedicated upstream connection for the rest of its life; a pump copies
// every upstream frame to the client while the session forwards requests.
// The proxy's own answers (AUTH, HELLO, CLIENT SETNAME, refusals) keep
// their place among the replies still coming from Redis through
// wire.Markers.

// answer queues the proxy's reply (everything appended to s.out since
// mark) behind the replies in flight.
func (s *session) answer(mark int) {
	s.scratch = s.tlocal.Push(s.scratch, s.out[mark:])
	s.out = s.out[:mark]
}

// startTunnel dials the tunnel and starts the pump. Output so far is
// flushed first so it precedes everything the pump writes. It returns ""
// or the error the commands get when no tunnel can be had.
func (s *session) startTunnel() string {
	if !s.flush() {
		s.quit = true
		return ""
	}
	var ws string
	if !s.takeDedicated(&ws) {
		return wire.ErrTryAgainDedicated
	}
	nc, left, err := s.node().DialRaw(s.proto)
	if err != nil {
		s.giveDedicated(ws)
		s.log.Debug("tunnel dial failed", zap.Error(err))
		return wire.TryAgainDown(s.node())
	}
	if s.db != s.node().DB() {
		nc.SetDeadline(time.Now().Add(s.node().ReadTimeout()))
		nc.Write(upstream.AppendCommand(nil, "SELECT", strconv.Itoa(s.db)))
		_, left, err = upstream.ReadFrames(nc, 1)
		nc.SetDeadline(time.Time{})
		if err != nil {
			nc.Close()
			s.giveDedicated(ws)
			return wire.TryAgainDown(s.node())
		}
	}
	s.tunWS = ws
	if s.pinned != nil {
		s.unpin(false)
	}
	s.srv.Stats.Pinned.Add(1)
	s.srv.Stats.Tunnels.Add(1)
	s.tlocal = wire.NewMarkers()
	s.tconn, s.untrack = nc, s.node().Track(nc) // cut if the node fails
	go s.pump(nc, left)
	return ""
}

// execTunnel forwards requests to the tunnel, answering the proxy's own in
// their place (wire.Markers). Each command's entry says how it runs
// while tunnelled.
func (s *session) execTunnel(cmds []command) {
	s.scratch = s.scratch[:0]
	for i := range cmds {
		c := &cmds[i]
		if c.deny == denyPending {
			s.checkBatch(cmds[i:])
		}
		mark := len(s.out)
		lc := localOf(c.sub)
		if lc == nil {
			lc = localOf(c.cmd)
		}
		switch {
		case c.deny != "":
			s.out = wire.AppendError(s.out, c.deny)
			s.answer(mark)
		case lc == nil || lc.tunnel == tunnelForward:
			// QUIT too: Redis answers +OK and closes, and the pump
			// closes the client after writing it.
			s.scratch = append(s.scratch, c.Raw...)
		case lc.tunnel == tunnelOwn:
			lc.run(s, c)
		case lc.run(s, c) == routeLocal:
			s.answer(mark)
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
	s.tconn.SetWriteDeadline(time.Now().Add(s.node().ReadTimeout()))
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
	var held int64 // growth of buf taken from the memory budget
	defer func() { s.srv.budget.Give(held) }()
	var f upstream.Framer
	open := false   // a frame is partly written
	locked := false // wmu is held (only while a frame is open)
	defer func() {
		if locked {
			s.wmu.Unlock()
		}
	}()
	for {
		r, fstart := 0, 0
		var sub []byte // a queued answer replacing the frame buf[fstart:r]
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
			if s.tlocal.IsMarker(buf[fstart:r]) {
				sub = s.tlocal.Pop()
				break
			}
			fstart = r
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
			out := buf[:r]
			if sub != nil {
				out = buf[:fstart]
			}
			if len(out) > 0 {
				if _, err := s.nc.Write(out); err != nil {
					s.srv.Stats.SlowConsumers.Add(1)
					return
				}
			}
			if sub != nil {
				if _, err := s.nc.Write(sub); err != nil {
					return
				}
			}
			if !open {
				s.wmu.Unlock()
				locked = false
			}
		}
		w = copy(buf, buf[r:w])
		if w == len(buf) {
			// A frame larger than the buffer (a big message): grow,
			// within the memory budget.
			if !s.srv.budget.Take(held, int64(len(buf)), budgetWait) {
				s.srv.Stats.BudgetCuts.Add(1)
				s.log.Warn("memory budget exhausted: subscriber receiving a large message disconnected", zap.Int64("client", s.id))
				return
			}
			held += int64(len(buf))
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:w])
			buf = nb
		} else if held > 0 && !open && w < 16<<10 && len(buf) > 16<<10 {
			// Back to small frames: shrink and give the growth back.
			nb := make([]byte, 16<<10)
			copy(nb, buf[:w])
			buf = nb
			s.srv.budget.Give(held)
			held = 0
		}
		if sub != nil && w > 0 {
			continue // more frames already buffered
		}
		n, err := nc.Read(buf[w:])
		w += n
		if err != nil && n == 0 {
			if !open && !s.stopping.Load() { // Redis failed or moved: say so
				s.wmu.Lock()
				s.nc.Write(wire.AppendError(nil, wire.ErrSubscriptionLost))
				s.wmu.Unlock()
			}
			return
		}
	}
}
