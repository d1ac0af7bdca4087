package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentproxy/agentproxy/breaker"
	"github.com/agentproxy/agentproxy/internal/membudget"
	"github.com/agentproxy/agentproxy/internal/rawio"
)

// Errors a Call can end with. Callers map them to wire codes: ErrNotSent
// means nothing reached Redis (TRYAGAIN, safe to retry); ErrReplyLost means
// the request was written but its reply never arrived (UNCERTAIN).
var (
	ErrNotSent    = errors.New("request not sent upstream")
	ErrReplyLost  = errors.New("upstream connection lost before the reply")
	ErrTimeout    = errors.New("upstream did not reply in time")
	ErrClosed     = errors.New("upstream connection closed")
	ErrOutputFull = errors.New("reply exceeds the client output limit")
	ErrBudget     = errors.New("reply does not fit in the proxy's memory budget")
)

// BudgetFree is the capacity of a call's output buffer that is not counted
// against the budget (the per-client buffers every connection has).
const BudgetFree = 64 << 10

// Call is one batch of pipelined commands sent as one write. Its replies are
// appended, byte for byte, to Out. A Call is owned by one client session and
// reused for every batch, so the data path does not allocate.
type Call struct {
	// Out receives the raw reply frames. The caller may preset it to its own
	// output buffer; replies are appended after what is there.
	Out []byte
	// MaxOut bounds len(Out); replies beyond it are discarded and the call
	// ends with ErrOutputFull.
	MaxOut int
	// N is the number of replies expected.
	N int
	// Timeout overrides the connection's read timeout for this call; a
	// negative value waits forever (blocking commands without a deadline).
	Timeout time.Duration

	// Ends, when non-nil on Send, receives the end offset in Out of each
	// reply (for callers that inspect replies, such as pinned sessions).
	Ends []int

	// Budget, when set, is taken from as Out grows past BudgetFree bytes
	// of capacity; Held accumulates what was taken (the caller gives it
	// back when it drops the buffer). A reply that does not fit ends the
	// call with ErrBudget.
	Budget *membudget.Budget
	Held   int64

	// Sent, when set, is called once the payload is written (or queued
	// behind the replies in flight), before the call waits for its
	// replies; Do clears it.
	Sent func()

	// Got counts complete replies; Out[:End] holds exactly those.
	Got int
	End int
	Err error

	done     chan struct{}
	overflow bool
	noBudget bool // overflow because the budget was exhausted
	sent     time.Time
}

// grow makes room for n more bytes in Out, taking the growth from the
// budget; false when it does not fit.
func (c *Call) grow(n int) bool {
	need := len(c.Out) + n
	newCap := max(2*cap(c.Out), need, 4096)
	before, after := max(int64(cap(c.Out))-BudgetFree, 0), max(int64(newCap)-BudgetFree, 0)
	if after > before {
		// The reader goroutine serves every client: it never waits here.
		if !c.Budget.Take(before, after-before, 0) {
			return false
		}
		c.Held += after - before
	}
	nb := make([]byte, len(c.Out), newCap)
	copy(nb, c.Out)
	c.Out = nb
	return true
}

// NewCall returns a reusable call.
func NewCall() *Call { return &Call{done: make(chan struct{}, 1)} }

// Done is signalled once when the call completes (all replies or an error).
func (c *Call) Done() <-chan struct{} { return c.done }

// Wait blocks until the call completes.
func (c *Call) Wait() { <-c.done }

func (c *Call) reset() {
	c.Got, c.End, c.Err, c.overflow, c.noBudget = 0, len(c.Out), nil, false, false
	if c.Ends != nil {
		c.Ends = c.Ends[:0]
	}
}

func (c *Call) finish(err error) {
	if err == nil && c.overflow {
		err = ErrOutputFull
		if c.noBudget {
			err = ErrBudget
		}
	}
	c.Err = err
	if err != nil {
		c.Out = c.Out[:c.End]
	}
	c.done <- struct{}{}
}

// Conn is one upstream connection carrying the batches of many clients.
// Writers append to a shared buffer and whoever finds no flush in progress
// writes it out (write combining: one syscall serves many clients under
// load, none waits for a goroutine hand-off when idle). One reader goroutine
// frames replies and hands them to the calls in the order they were sent.
//
// Lock order: Conn.mu is a leaf lock; it is never held across a network
// read, and held across a write only by the flushing writer's buffer swap.
type Conn struct {
	nc          net.Conn
	readTimeout time.Duration
	onClose     func(*Conn, error)
	brk         *breaker.Breaker // the node's; nil in tests
	pool        *Pool            // the node's; nil in tests
	proto       int              // a shared connection's protocol version (2, 3)

	mu       sync.Mutex
	wbuf     []byte
	spare    []byte
	flushing bool
	queue    []*Call                                    // calls awaiting replies, oldest at head
	written  int                                        // queued calls already written (the oldest ones); the rest are in wbuf
	tw       interface{ TryWrite([]byte) (int, error) } // nc's non-blocking write, when it has one
	kick     chan struct{}                              // wakes writeLoop; nil until first needed
	wdl      bool                                       // a write deadline is armed (touched only by the flushing owner)
	head     int
	closed   bool
	closeErr error

	writeTimeout time.Duration
	rbuf         []byte
	// deadline is the armed read deadline (zero: none), guarded by mu.
	// It is moved only when it no longer covers the oldest call, so a busy
	// connection does not reprogram a timer per call.
	deadline time.Time

	redisID atomic.Pointer[string] // RedisID, once known
}

// newConn wraps an established connection and starts its reader. onClose
// runs once, from the reader goroutine, after the connection has failed.
func newConn(nc net.Conn, p *Pool, leftover []byte, onClose func(*Conn, error)) *Conn {
	c := newConnTimeouts(nc, p.opts.ReadTimeout, p.opts.WriteTimeout, leftover, p.brk, onClose)
	c.pool = p
	return c
}

func newConnTimeouts(nc net.Conn, readTimeout, writeTimeout time.Duration, leftover []byte, brk *breaker.Breaker, onClose func(*Conn, error)) *Conn {
	c := &Conn{nc: rawio.Wrap(nc), readTimeout: readTimeout, writeTimeout: writeTimeout, onClose: onClose,
		brk: brk, rbuf: make([]byte, 32<<10)}
	c.tw, _ = c.nc.(interface{ TryWrite([]byte) (int, error) })
	n := copy(c.rbuf, leftover)
	go c.readLoop(n)
	return c
}

// Pool is the pool the connection belongs to: give a dedicated connection
// back to it.
func (c *Conn) Pool() *Pool { return c.pool }

// IsShared reports whether the connection is one of the pool's shared
// (multiplexed) ones.
func (c *Conn) IsShared() bool { return c.onClose != nil }

// Alive reports whether the connection can take calls.
func (c *Conn) Alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed
}

// Pending returns the number of calls awaiting replies.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) - c.head
}

// Send queues call and writes payload (one or more complete commands whose
// replies the call expects). It returns once the bytes are handed to the
// kernel or queued behind a flush in progress; wait on the call for replies.
// On error nothing of this call was sent and the call is not queued.
func (c *Conn) Send(call *Call, payload ...[]byte) error {
	call.reset()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrNotSent
	}
	call.sent = time.Now()
	if len(c.queue) == c.head {
		c.armDeadlineLocked(call)
	}
	c.queue = append(c.queue, call)
	if len(payload) > 1 {
		total := 0
		for _, p := range payload {
			total += len(p)
		}
		c.wbuf = slices.Grow(c.wbuf, total) // one allocation for a large gathered payload
	}
	for _, p := range payload {
		c.wbuf = append(c.wbuf, p...)
	}
	if c.flushing || (c.written > 0 && holdBatches) {
		// A flush is in progress, or batches written earlier still await
		// their replies: this one goes with the next write, which the
		// reader starts as soon as the last of those replies begins to
		// arrive. Under load every write carries the requests of all the
		// clients that came meanwhile (twemproxy gets the same from its
		// event loop); an idle connection writes at once.
		c.mu.Unlock()
		return nil
	}
	c.flushLocked()
	c.mu.Unlock()
	return nil
}

// holdBatches enables the write window above (AGENTPROXY_HOLD=0 turns it
// off, for comparisons).
var holdBatches = os.Getenv("AGENTPROXY_HOLD") != "0"

// takeUnsentLocked counts the queued calls not yet written (the newest
// ones, whose bytes are in wbuf) as written, for the write about to carry
// them, and returns how many they are.
func (c *Conn) takeUnsentLocked() int {
	n := len(c.queue) - c.head - c.written
	c.written += n
	return n
}

// writeFailedLocked closes the connection after a failed write of moved
// calls of which n bytes went out. It marks the connection closed before
// giving up the flush, so no later write can follow a torn request.
func (c *Conn) writeFailedLocked(err error, n, moved int) {
	if n == 0 {
		c.written -= moved // nothing went out: they are still unsent
	}
	if !c.closed {
		c.closed, c.closeErr = true, err
	}
	c.flushing = false
	c.mu.Unlock()
	c.nc.Close()
	c.mu.Lock()
}

// writeLoop writes what queued behind answered batches, each time the
// reader kicks it, until the connection fails.
func (c *Conn) writeLoop(kick chan struct{}) {
	for range kick {
		c.mu.Lock()
		c.flushLocked()
		c.mu.Unlock()
	}
}

// flushLocked writes the buffered requests; c.mu is held on entry and on
// return but not across the write. It keeps writing while new requests
// arrive and nothing written awaits a reply.
func (c *Conn) flushLocked() {
	c.flushing = true
	for len(c.wbuf) > 0 && !c.closed {
		buf := c.wbuf
		c.wbuf = c.spare[:0]
		moved := c.takeUnsentLocked()
		c.mu.Unlock()
		if c.writeTimeout > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
			c.wdl = true
		}
		n, err := c.nc.Write(buf)
		c.mu.Lock()
		if cap(buf) > 1<<20 {
			buf = nil // do not keep a huge buffer around
		}
		c.spare = buf[:0]
		if err != nil {
			// The reader sees the closed socket and fails every queued
			// call: ErrReplyLost for those written, ErrNotSent for the
			// rest (all of this write's when none of it went out).
			c.writeFailedLocked(err, n, moved)
			return
		}
		if c.written > 0 && holdBatches {
			break // the reader writes the rest when replies come
		}
	}
	c.flushing = false
}

// armDeadlineLocked makes the read deadline cover call, the oldest one in
// flight: its reply is due by sent+timeout. A deadline already armed up to
// a quarter of the timeout later is kept (replies may take up to 1.25x the
// timeout before UNCERTAIN); a new one is armed with an eighth to spare.
func (c *Conn) armDeadlineLocked(call *Call) {
	wait := call.Timeout
	if wait == 0 {
		wait = c.readTimeout
	}
	if wait <= 0 {
		if !c.deadline.IsZero() {
			c.nc.SetReadDeadline(time.Time{})
			c.deadline = time.Time{}
		}
		return
	}
	need := call.sent.Add(wait)
	if !c.deadline.IsZero() && !c.deadline.Before(need) && c.deadline.Sub(need) <= wait/4 {
		return
	}
	c.deadline = need.Add(wait / 8)
	c.nc.SetReadDeadline(c.deadline)
}

// idleTimeout reports whether err is the read deadline firing while no call
// is in flight; then the deadline is cleared and reading goes on.
func (c *Conn) idleTimeout(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.head < len(c.queue) {
		// A call came after the idle deadline fired and re-armed it:
		// keep reading, unless the armed deadline has passed too.
		return c.deadline.IsZero() || time.Now().Before(c.deadline)
	}
	c.nc.SetReadDeadline(time.Time{})
	c.deadline = time.Time{}
	return true
}

// pop takes the oldest queued call, or nil.
func (c *Conn) pop() *Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head == len(c.queue) {
		return nil
	}
	call := c.queue[c.head]
	c.queue[c.head] = nil
	c.head++
	if c.head == len(c.queue) {
		c.queue, c.head = c.queue[:0], 0
	}
	if c.written--; c.written == 0 && len(c.wbuf) > 0 && !c.flushing && !c.closed {
		// The last written batch is answering: send what queued behind
		// it. This reader writes only what the socket takes at once; the
		// rest goes to the writer goroutine, since a write may block until
		// the server reads, and a server that blocks writing its replies
		// (miniredis does) would be waiting for this reader.
		c.flushing = true
		if c.tw != nil {
			buf := c.wbuf
			c.wbuf = c.spare[:0]
			moved := c.takeUnsentLocked()
			c.mu.Unlock()
			if c.wdl {
				// A write deadline armed by an earlier flush may have
				// passed; TryWrite never waits, so it needs none.
				c.nc.SetWriteDeadline(time.Time{})
				c.wdl = false
			}
			n, err := c.tw.TryWrite(buf)
			c.mu.Lock()
			if err != nil {
				c.writeFailedLocked(err, n, moved)
				return call
			}
			if n == len(buf) {
				// buf becomes the spare buffer, or none when large: wbuf
				// was the old spare and must not share its array.
				if cap(buf) <= 1<<20 {
					c.spare = buf[:0]
				} else {
					c.spare = nil
				}
				c.flushing = false
				return call
			}
			// Put the unwritten rest back in front of what queued meanwhile.
			c.wbuf = append(buf[n:len(buf):len(buf)], c.wbuf...)
		}
		if c.kick == nil {
			c.kick = make(chan struct{}, 1)
			go c.writeLoop(c.kick)
		}
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return call
}

// complete re-arms the read deadline for the next call and signals call.
func (c *Conn) complete(call *Call) {
	c.mu.Lock()
	if c.head < len(c.queue) {
		c.armDeadlineLocked(c.queue[c.head])
	} // idle: the armed deadline may fire; readLoop ignores it then
	c.mu.Unlock()
	call.finish(nil)
}

// Close closes the connection; queued calls end with ErrReplyLost.
func (c *Conn) Close() { c.fail(ErrClosed) }

// fail closes the socket once; the reader drains the queue.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.closeErr = err
	c.mu.Unlock()
	c.nc.Close()
}

// readLoop frames replies and completes calls in order until the
// connection fails. It owns rbuf.
func (c *Conn) readLoop(w int) {
	var f Framer
	var cur *Call
	var push bool // the frame in progress is an out-of-band push
	r := 0
	var err error
	for {
		for r < w {
			if cur == nil && !push {
				if c.rbuf[r] == '>' {
					push = true
				} else if cur = c.pop(); cur == nil {
					err = errors.New("reply with no request outstanding")
					goto fail
				}
			}
			n, done, ferr := f.Scan(c.rbuf[r:w])
			if ferr != nil {
				err = ferr
				goto fail
			}
			if push || f.Push() {
				// Out-of-band push on a shared connection: nobody asked
				// for it here; drop it.
				r += n
				if done {
					push = false
				}
			} else {
				if !cur.overflow {
					switch {
					case cur.MaxOut > 0 && len(cur.Out)+n > cur.MaxOut:
						cur.overflow = true
						cur.Out = cur.Out[:cur.End]
					case len(cur.Out)+n > cap(cur.Out) && cur.Budget != nil && !cur.grow(n):
						cur.overflow, cur.noBudget = true, true
						cur.Out = cur.Out[:cur.End]
					default:
						cur.Out = append(cur.Out, c.rbuf[r:r+n]...)
					}
				}
				r += n
				if done {
					cur.Got++
					if !cur.overflow {
						cur.End = len(cur.Out)
					}
					if cur.Ends != nil {
						cur.Ends = append(cur.Ends, cur.End)
					}
					if cur.Got == cur.N {
						c.complete(cur)
						cur = nil
						if c.brk != nil {
							c.brk.Success()
						}
					}
				}
			}
			if !done && r < w {
				// A partial line: keep it and read more behind it.
				if r > 0 {
					w = copy(c.rbuf, c.rbuf[r:w])
					r = 0
				}
				if w == len(c.rbuf) {
					if len(c.rbuf) >= 2*maxLine {
						err = ErrProtocol
						goto fail
					}
					nb := make([]byte, 2*len(c.rbuf))
					copy(nb, c.rbuf[:w])
					c.rbuf = nb
				}
				break
			}
		}
		if r == w {
			r, w = 0, 0
		}
		var n int
		n, err = c.nc.Read(c.rbuf[w:])
		if n > 0 {
			w += n
			continue
		}
		if err == nil {
			continue
		}
		if cur == nil && !push && c.idleTimeout(err) {
			continue
		}
		goto fail
	}
fail:
	c.mu.Lock()
	wasClosed := c.closed
	c.closed = true
	if c.closeErr == nil {
		c.closeErr = err
	}
	queue := c.queue[c.head:]
	sent := min(max(c.written, 0), len(queue))
	c.queue, c.head, c.written = nil, 0, 0
	c.wbuf = c.wbuf[:0]
	if c.kick != nil {
		close(c.kick)
		c.kick = nil
	}
	c.mu.Unlock()
	if !wasClosed {
		c.nc.Close()
	}
	cause := ErrReplyLost
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		cause = ErrTimeout
	}
	if cur != nil {
		cur.finish(cause)
	}
	for i, call := range queue {
		if i < sent {
			call.finish(cause)
		} else {
			call.finish(ErrNotSent) // held behind a batch, never written
		}
	}
	if c.brk != nil && !errors.Is(c.closeErr, ErrClosed) && !errors.Is(c.closeErr, ErrMoved) {
		// A transport failure, not the proxy's own close: a timeout or a
		// lost connection counts once, however many requests it cost
		// (one slow command must not open the breaker for everyone). The
		// redial that follows proves the node answers, or counts again.
		c.brk.Failure()
	}
	if c.onClose != nil {
		c.onClose(c, err)
	}
}

// Do sends payload for call on c and waits for the replies. On a shared
// connection, a call none of whose bytes were written (the connection
// failed first) is sent once more on the pool's next shared connection,
// if one comes up within retryWait: it never ran, so running it now is
// safe, and a lost connection costs the client nothing. The error is
// Send's; the call's own is in call.Err.
func (c *Conn) Do(call *Call, payload []byte) error {
	mark := len(call.Out)
	err := c.Send(call, payload)
	if sent := call.Sent; sent != nil {
		call.Sent = nil
		sent()
	}
	if err == nil {
		call.Wait()
		if !errors.Is(call.Err, ErrNotSent) || call.Got > 0 {
			return nil
		}
	}
	if !c.IsShared() || c.pool == nil {
		return err
	}
	if n := c.pool.await(c.proto, c); n != nil {
		call.Out = call.Out[:mark]
		if err = n.Send(call, payload); err == nil {
			call.Wait()
		}
	}
	return err
}

// retryWait is how long a call that was never sent waits for a new shared
// connection before it is answered TRYAGAIN.
const retryWait = 250 * time.Millisecond

// Query sends one command on c and waits for its reply (for the proxy's
// own commands, off the data path).
func (c *Conn) Query(args ...string) ([]byte, error) {
	call := NewCall()
	call.N = 1
	if err := c.Send(call, AppendCommand(nil, args...)); err != nil {
		return nil, err
	}
	call.Wait()
	return call.Out, call.Err
}

// RedisID is the id Redis knows c by (CLIENT ID, asked once). Ask it
// before c blocks: the question would queue behind the blocked command.
func (c *Conn) RedisID() (string, error) {
	if id := c.redisID.Load(); id != nil {
		return *id, nil
	}
	r, err := c.Query("CLIENT", "ID")
	if err != nil {
		return "", err
	}
	if len(r) < 4 || r[0] != ':' {
		return "", fmt.Errorf("CLIENT ID: %q", r)
	}
	id := string(bytes.TrimRight(r[1:], "\r\n"))
	c.redisID.Store(&id)
	return id, nil
}
