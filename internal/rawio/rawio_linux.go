//go:build linux

// Package rawio reads and writes sockets with raw system calls on the
// data path. A Go net.Conn enters and leaves the scheduler's syscall state
// on every Read and Write; when the system call is slow enough, the
// runtime hands the P to another thread meanwhile, and the thread
// switches cost more than the work (a loopback write does the receiver's
// TCP processing too). Non-blocking socket calls never block, so they may
// run as raw system calls, keeping the goroutine on its thread; waiting
// for readiness still goes through the runtime's poller (syscall.RawConn),
// with deadlines and Close working as usual.
package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write are raw system calls.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	// rmu and wmu make concurrent Reads (and Writes) safe, as they are on
	// a net.Conn: the callbacks share the fields below.
	rmu     sync.Mutex
	wmu     sync.Mutex
	rbuf    []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(fd uintptr) bool
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	wtry    bool // TryWrite: give up at EAGAIN instead of waiting
	writeFn func(fd uintptr) bool
}

// Wrap returns nc with raw reads and writes, or nc itself when it is not
// a plain socket (TLS, pipes).
func Wrap(nc net.Conn) net.Conn {
	if disabled {
		return nc
	}
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nc
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return nc
	}
	c := &Conn{Conn: nc, rc: rc}
	c.readFn, c.writeFn = c.doRead, c.doWrite
	return c
}

func (c *Conn) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = e
			return true
		}
	}
}

func (c *Conn) doWrite(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		p := c.wbuf[c.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return c.wtry
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// Read reads like net.Conn.Read.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = b, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, c.opErr("read", err)
	case c.rerr != 0:
		return 0, c.opErr("read", os.NewSyscallError("read", c.rerr))
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// Write writes all of b like net.Conn.Write.
func (c *Conn) Write(b []byte) (int, error) { return c.write(b, false) }

// TryWrite writes what the socket takes without waiting: it returns
// fewer than len(b) bytes, and no error, when the socket buffer is full.
func (c *Conn) TryWrite(b []byte) (int, error) { return c.write(b, true) }

func (c *Conn) write(b []byte, try bool) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr, c.wtry = b, 0, 0, try
	err := c.rc.Write(c.writeFn)
	c.wbuf = nil
	if err == nil && c.werr != 0 {
		err = os.NewSyscallError("write", c.werr)
	}
	if err != nil {
		return c.wn, c.opErr("write", err)
	}
	return c.wn, nil
}

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// disabled turns Wrap off (AGENTPROXY_RAWIO=0), for comparisons.
var disabled = os.Getenv("AGENTPROXY_RAWIO") == "0"
