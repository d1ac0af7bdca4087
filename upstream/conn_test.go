package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// echoServer answers every "*2 $4 ECHO $n <n bytes>" command with its
// argument as a bulk string, strictly one command at a time and with
// blocking writes: it does not read the next command until its reply is
// written, like miniredis, so a client that stops reading while it writes
// would deadlock with it. It counts the commands it ran.
type echoServer struct {
	ln       net.Listener
	mu       sync.Mutex
	commands int
	// firstDelay holds back the reply to the first command of each
	// connection, so that the client queues requests behind it.
	firstDelay time.Duration
}

func startEcho(t *testing.T, firstDelay time.Duration) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, firstDelay: firstDelay}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(nc)
		}
	}()
	return s
}

func (s *echoServer) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 64<<10)
	line := func() (string, error) {
		l, err := br.ReadString('\n')
		if len(l) < 2 {
			return "", io.ErrUnexpectedEOF
		}
		return l[:len(l)-2], err
	}
	for {
		if _, err := line(); err != nil { // *2
			return
		}
		if _, err := line(); err != nil { // $4
			return
		}
		if _, err := line(); err != nil { // ECHO
			return
		}
		l, err := line()
		if err != nil {
			return
		}
		n, _ := strconv.Atoi(l[1:])
		arg := make([]byte, n+2)
		if _, err := io.ReadFull(br, arg); err != nil {
			return
		}
		s.mu.Lock()
		s.commands++
		first := s.commands == 1
		s.mu.Unlock()
		if first && s.firstDelay > 0 {
			time.Sleep(s.firstDelay)
		}
		out := append([]byte("$"+strconv.Itoa(n)+"\r\n"), arg...)
		if _, err := nc.Write(out); err != nil {
			return
		}
	}
}

func echoCmd(arg []byte) []byte {
	b := []byte("*2\r\n$4\r\nECHO\r\n$" + strconv.Itoa(len(arg)) + "\r\n")
	return append(append(b, arg...), '\r', '\n')
}

func dialConn(t *testing.T, addr string) *Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newConnTimeouts(nc, 10*time.Second, 10*time.Second, nil, nil, nil)
	t.Cleanup(c.Close)
	return c
}

// TestConnWindowLargeBothWays: many clients send large requests with
// large replies through one connection to a server that blocks while
// writing. Requests queued behind an in-flight batch are written when its
// replies begin; if the reader itself blocked writing them, neither side
// would read and the calls would time out.
func TestConnWindowLargeBothWays(t *testing.T) {
	s := startEcho(t, 0)
	c := dialConn(t, s.ln.Addr().String())
	const clients, rounds = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := NewCall()
			for r := range rounds {
				arg := bytes.Repeat([]byte{byte('a' + i)}, 3<<20+r) // larger than socket buffers
				call.Out, call.N = call.Out[:0], 1
				if err := c.Send(call, echoCmd(arg)); err != nil {
					errs <- err
					return
				}
				call.Wait()
				if call.Err != nil {
					errs <- call.Err
					return
				}
				want := append([]byte("$"+strconv.Itoa(len(arg))+"\r\n"), append(arg, '\r', '\n')...)
				if !bytes.Equal(call.Out, want) {
					errs <- errors.New("reply does not match its request")
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("calls stuck: the connection deadlocked")
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commands != clients*rounds {
		t.Fatalf("server ran %d commands, want %d", s.commands, clients*rounds)
	}
}

// TestConnWindowHeldCallsNotSent: when the connection fails, calls that
// were only queued behind an in-flight batch end with ErrNotSent (safe to
// retry), the in-flight ones with ErrReplyLost.
func TestConnWindowHeldCallsNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			accepted <- nc
		}
	}()
	c := dialConn(t, ln.Addr().String())
	srv := <-accepted
	first := NewCall()
	first.N = 1
	if err := c.Send(first, echoCmd([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	// The server never answers: the next calls stay queued behind the
	// first, unwritten.
	held := make([]*Call, 3)
	for i := range held {
		held[i] = NewCall()
		held[i].N = 1
		if err := c.Send(held[i], echoCmd([]byte("y"))); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	srv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	n, _ := io.ReadAtLeast(srv, buf, 1)
	if got := string(buf[:n]); got != string(echoCmd([]byte("x"))) {
		t.Fatalf("server received %q; the held calls must not be written yet", got)
	}
	srv.Close()
	first.Wait()
	if !errors.Is(first.Err, ErrReplyLost) {
		t.Fatalf("in-flight call: %v, want ErrReplyLost", first.Err)
	}
	for i, h := range held {
		h.Wait()
		if !errors.Is(h.Err, ErrNotSent) {
			t.Fatalf("held call %d: %v, want ErrNotSent", i, h.Err)
		}
	}
}

// sendEcho sends ECHO arg on c and returns the call (not waited for).
func sendEcho(t *testing.T, c *Conn, arg []byte) *Call {
	t.Helper()
	call := NewCall()
	call.N = 1
	if err := c.Send(call, echoCmd(arg)); err != nil {
		t.Fatal(err)
	}
	return call
}

func echoReply(arg []byte) []byte {
	return append(append([]byte("$"+strconv.Itoa(len(arg))+"\r\n"), arg...), '\r', '\n')
}

// TestConnWindowLargeHeldBatch: a batch of more than 1 MiB held behind a
// slow reply and then written whole by the reader must not leave the
// write buffer sharing its array with the spare one (later requests would
// be overwritten while in flight and replies would reach the wrong
// callers; the race detector cannot see it through raw system calls).
func TestConnWindowLargeHeldBatch(t *testing.T) {
	s := startEcho(t, 50*time.Millisecond)
	c := dialConn(t, s.ln.Addr().String())
	a := sendEcho(t, c, []byte("first"))
	big := bytes.Repeat([]byte{'z'}, 1100<<10)
	b := sendEcho(t, c, big) // held behind the first
	a.Wait()
	b.Wait()
	if a.Err != nil || b.Err != nil || !bytes.Equal(b.Out, echoReply(big)) {
		t.Fatalf("held large call: %v %v", a.Err, b.Err)
	}
	c.mu.Lock()
	shared := cap(c.spare) > 0 && cap(c.wbuf) > 0 && &c.spare[:1][0] == &c.wbuf[:1][0]
	c.mu.Unlock()
	if shared {
		t.Fatal("the write buffer shares its array with the spare buffer")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := NewCall()
			for i := range 300 {
				arg := []byte(strconv.Itoa(g) + "-" + strconv.Itoa(i) + "-" + string(bytes.Repeat([]byte{byte('a' + g)}, i%97)))
				call.Out, call.N = call.Out[:0], 1
				if err := c.Send(call, echoCmd(arg)); err != nil {
					errs <- err
					return
				}
				call.Wait()
				if call.Err != nil {
					errs <- call.Err
					return
				}
				if !bytes.Equal(call.Out, echoReply(arg)) {
					errs <- errors.New("reply " + strconv.Quote(string(call.Out[:min(40, len(call.Out))])) + " for " + strconv.Quote(string(arg[:min(20, len(arg))])))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestConnWindowSlowReplyStaleWriteDeadline: a reply slower than the
// write timeout must not make the reader's write of the requests queued
// behind it fail on the deadline armed by the earlier write.
func TestConnWindowSlowReplyStaleWriteDeadline(t *testing.T) {
	s := startEcho(t, 300*time.Millisecond)
	nc, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newConnTimeouts(nc, 2*time.Second, 100*time.Millisecond, nil, nil, nil)
	t.Cleanup(c.Close)
	a := sendEcho(t, c, []byte("slow"))
	b := sendEcho(t, c, []byte("held"))
	a.Wait()
	b.Wait()
	if a.Err != nil || b.Err != nil {
		t.Fatalf("slow call: %v; call held behind it: %v", a.Err, b.Err)
	}
	if !bytes.Equal(b.Out, echoReply([]byte("held"))) {
		t.Fatalf("held call got %q", b.Out)
	}
}

// TestConnIdleDeadlineRace: the idle read deadline fires while a new call
// is being sent; the reader must see that the call re-armed it and keep
// reading instead of failing the call at once.
func TestConnIdleDeadlineRace(t *testing.T) {
	s := startEcho(t, 0)
	nc, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newConnTimeouts(nc, 20*time.Millisecond, time.Second, nil, nil, nil)
	t.Cleanup(c.Close)
	for i := range 5 {
		a := sendEcho(t, c, []byte("x"))
		a.Wait()
		if a.Err != nil {
			t.Fatal(a.Err)
		}
		// Hold the lock across the idle deadline, as a descheduled reader
		// would be, then send: the reader wakes with a timeout and finds
		// a call queued behind a freshly armed deadline.
		c.mu.Lock()
		time.Sleep(40 * time.Millisecond)
		c.mu.Unlock()
		b := sendEcho(t, c, []byte("y"))
		b.Wait()
		if b.Err != nil {
			t.Fatalf("round %d: a call sent as the idle deadline fired failed: %v", i, b.Err)
		}
	}
}
