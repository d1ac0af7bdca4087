package testutil

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Shim is a TCP forwarder between a client under test and a server, which
// can inject network faults: latency, a hung network, cut connections,
// refused connections, a different target. Every method is safe to call
// while traffic flows. It is closed, and all its goroutines have ended,
// when the test ends.
type Shim struct {
	// Addr is the address clients connect to ("127.0.0.1:port").
	Addr string

	ln      net.Listener
	ctx     context.Context // cancelled by Close, aborts dials to the target
	cancel  context.CancelFunc
	wg      sync.WaitGroup // every goroutine of the shim
	latency atomic.Int64   // nanoseconds

	mu      sync.Mutex
	target  string
	refuse  bool
	hole    bool          // blackhole on
	holeOff chan struct{} // closed when the blackhole is turned off
	conns   map[*shimConn]struct{}
	closed  bool
}

// shimConn is one forwarded connection: the accepted client side and the
// dialled server side.
type shimConn struct {
	client, server net.Conn
	done           chan struct{} // closed by close
	once           sync.Once
}

// close closes both sides and wakes every goroutine of the connection.
func (p *shimConn) close() {
	p.once.Do(func() {
		close(p.done)
		p.client.Close()
		p.server.Close()
	})
}

// chunk is data read from one side, with the time it arrived.
type chunk struct {
	b  []byte
	at time.Time
}

// StartShim listens on a free loopback port and forwards each connection
// it accepts to target.
func StartShim(t testing.TB, target string) *Shim {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Shim{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[*shimConn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// SetLatency delays every chunk of data, in either direction, by d after
// it arrived, keeping the order. 0 turns the delay off, also for data
// already waiting.
func (s *Shim) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Blackhole on makes the network hang: connections (also new ones) stay
// open but nothing is forwarded either way; the shim stops reading, so TCP
// backpressure holds the data, and what it had already read is held back.
// Turning it off delivers everything held, in order.
func (s *Shim) Blackhole(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on && !s.hole {
		s.hole, s.holeOff = true, make(chan struct{})
	} else if !on && s.hole {
		s.hole = false
		close(s.holeOff)
	}
}

// Cut closes every current connection, both the client and the server
// side.
func (s *Shim) Cut() {
	s.mu.Lock()
	conns := s.conns
	s.conns = map[*shimConn]struct{}{}
	s.mu.Unlock()
	for p := range conns {
		p.close()
	}
}

// Refuse on makes the shim reset new connections as soon as it accepts
// them: the client's dial or its first read or write fails with
// ECONNRESET (which one is a race).
// Current connections are not affected.
func (s *Shim) Refuse(on bool) {
	s.mu.Lock()
	s.refuse = on
	s.mu.Unlock()
}

// SetTarget makes new connections go to addr; current ones stay where they
// are.
func (s *Shim) SetTarget(addr string) {
	s.mu.Lock()
	s.target = addr
	s.mu.Unlock()
}

// Conns is the number of open forwarded connections (counted once the
// target has accepted the server side).
func (s *Shim) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops listening, closes every connection and waits until all the
// shim's goroutines have ended. It is called at the end of the test; calling
// it again does nothing.
func (s *Shim) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := s.conns
	s.conns = map[*shimConn]struct{}{}
	s.mu.Unlock()
	s.cancel()
	s.ln.Close()
	for p := range conns {
		p.close()
	}
	s.wg.Wait()
}

// accept accepts connections until the listener is closed.
func (s *Shim) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		s.mu.Lock()
		if s.closed || s.refuse {
			s.mu.Unlock()
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset, not a clean close
			}
			c.Close()
			continue
		}
		target := s.target
		s.wg.Add(1) // under mu: Close cannot be waiting yet
		s.mu.Unlock()
		go s.serve(c, target)
	}
}

// serve dials target for client and forwards both ways until both
// directions have ended or the connection is closed.
func (s *Shim) serve(client net.Conn, target string) {
	defer s.wg.Done()
	d := net.Dialer{Timeout: 5 * time.Second}
	server, err := d.DialContext(s.ctx, "tcp", target)
	if err != nil {
		client.Close()
		return
	}
	p := &shimConn{client: client, server: server, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.close()
		return
	}
	s.conns[p] = struct{}{}
	s.mu.Unlock()

	var dirs sync.WaitGroup
	dirs.Add(2)
	s.wg.Add(1) // serve itself is counted, so the counter is not zero
	go func() {
		defer s.wg.Done()
		defer dirs.Done()
		s.direction(p, server, client)
	}()
	s.direction(p, client, server)
	dirs.Done()
	dirs.Wait()
	p.close()
	s.mu.Lock()
	delete(s.conns, p)
	s.mu.Unlock()
}

// direction forwards src to dst. When src ends cleanly (EOF) it passes the
// end on by half-closing dst and lets the other direction finish; on any
// other error it closes the whole connection.
func (s *Shim) direction(p *shimConn, src, dst net.Conn) {
	ch := make(chan chunk, 16)
	var readErr error // written before ch is closed
	s.wg.Add(1)
	go func() { // reader
		defer s.wg.Done()
		defer close(ch)
		for {
			if !s.waitOpen(p) {
				return
			}
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case ch <- chunk{buf[:n], time.Now()}:
				case <-p.done:
					return
				}
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()
	for c := range ch { // writer
		if !s.waitOpen(p) {
			p.close()
			return
		}
		if wait := time.Until(c.at.Add(time.Duration(s.latency.Load()))); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-p.done:
				timer.Stop()
				return
			}
			if !s.waitOpen(p) { // the blackhole may have opened meanwhile
				p.close()
				return
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			p.close()
			return
		}
	}
	if errors.Is(readErr, io.EOF) {
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
			return
		}
	}
	p.close()
}

// waitOpen waits while the blackhole is on; it reports false if the
// connection was closed meanwhile.
func (s *Shim) waitOpen(p *shimConn) bool {
	for {
		s.mu.Lock()
		on, off := s.hole, s.holeOff
		s.mu.Unlock()
		if !on {
			select {
			case <-p.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-off:
		case <-p.done:
			return false
		}
	}
}
