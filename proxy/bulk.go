package proxy

import (
	"errors"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/internal/wire"
)

// The bulk lane. On the shared connection every client's replies come back
// in the order the requests went out, so 10 MB for one client holds up the
// small replies queued behind it, and buffering that reply whole costs its
// size in memory. A client whose batch moved bulkBytes or more (requests or
// replies) is "bulky" for its next bulkBatches batches: they go down a
// connection of its own, and the replies are streamed to the client as they
// arrive through a fixed buffer, never held whole. At most bulkSlots bulky
// batches run at once proxy-wide, so big transfers also cannot fill Redis's
// event loop and the machine's CPU with copies while small requests wait:
// the others queue in the proxy, each behind at most a few big replies.

const (
	bulkBytes   = 1 << 20
	bulkBatches = 16
	bulkSlots   = 1
	bulkBuf     = 256 << 10
	// bulkLease is how long a batch keeps its slot: past it, the slot goes
	// to the next one while this batch finishes, so a client that reads
	// its replies slowly cannot hold the lane.
	bulkLease = 250 * time.Millisecond
)

// errStreamCut means a reply was cut after part of it reached the client:
// the client's stream cannot be resynchronised and it is disconnected.
var errStreamCut = errors.New("upstream failed in the middle of a streamed reply")

// forwardBulk runs a bulky client's batch on its own connection, streaming
// the replies.
func (s *session) forwardBulk(cmds []command, payload []byte) {
	// Replies so far go first, in order.
	if !s.flush() {
		s.quit = true
		return
	}
	select {
	case s.srv.bulk <- struct{}{}:
	default:
		s.srv.Stats.BulkWaits.Add(1)
		s.srv.bulk <- struct{}{}
	}
	s.slot, s.slotAt = true, time.Now()
	err := s.streamBatch(payload, len(cmds))
	s.releaseSlot()
	if err != nil {
		s.closeBulk()
		if errors.Is(err, errStreamCut) {
			s.log.Info("bulk reply cut by an upstream failure; client disconnected", zap.Int64("client", s.id), zap.Error(err))
			s.quit = true
		}
	}
}

// streamBatch writes payload (n commands) on the session's bulk
// connection and copies n replies to the client as they arrive.
func (s *session) streamBatch(payload []byte, n int) error {
	if s.bulk == nil {
		var ws string
		if !s.takeDedicated(&ws) {
			for k := 0; k < n; k++ {
				s.out = wire.AppendError(s.out, wire.ErrTryAgainDedicated)
			}
			return errors.New("dedicated connection limit")
		}
		st, err := s.node().DialStream(s.proto, bulkBuf)
		if err != nil {
			s.giveDedicated(ws)
			for k := 0; k < n; k++ {
				s.out = wire.AppendError(s.out, wire.TryAgainDown(s.node()))
			}
			return err
		}
		st.Tick = func() {
			if s.slot && time.Since(s.slotAt) > bulkLease {
				s.releaseSlot()
			}
		}
		s.bulk, s.bulkWS = st, ws
	}
	moved, got, cut, err := s.bulk.Do(payload, n, s.node().ReadTimeout(), s.node().WriteTimeout(), s.writeClient)
	switch {
	case err != nil && cut:
		return errStreamCut
	case err != nil:
		msg := wire.ErrUncertain
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			msg = wire.ErrUncertainTimeout
		}
		s.srv.Stats.UpstreamErrors.Add(1)
		for k := got; k < n; k++ {
			s.out = wire.AppendError(s.out, msg)
		}
		return err
	}
	if moved < bulkBytes && len(payload) < bulkBytes {
		s.bulky--
	} else {
		s.bulky = bulkBatches
	}
	if s.bulky <= 0 {
		s.closeBulk()
	}
	return nil
}

// releaseSlot gives the batch's slot of the bulk lane back, once.
func (s *session) releaseSlot() {
	if s.slot {
		s.slot = false
		<-s.srv.bulk
	}
}

// writeClient writes streamed reply bytes straight to the client.
func (s *session) writeClient(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if t := s.srv.opts.ClientWriteTimeout; t > 0 {
		if now := time.Now(); s.wdeadline.Sub(now) < t*3/4 {
			s.wdeadline = now.Add(t)
			s.nc.SetWriteDeadline(s.wdeadline)
		}
	}
	_, err := s.nc.Write(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		s.srv.Stats.SlowConsumers.Add(1)
	}
	return err
}

// closeBulk drops the bulk connection (the client is no longer bulky, or
// the connection failed).
func (s *session) closeBulk() {
	if s.bulk != nil {
		s.bulk.Close()
		s.bulk = nil
		s.giveDedicated(s.bulkWS)
		s.bulkWS = ""
	}
	if s.bulky < 0 {
		s.bulky = 0
	}
}
