package upstream

import (
	"errors"
	"net"
	"time"
)

// Stream is a raw connection to the node whose replies are handed on as
// they arrive, through a fixed buffer, instead of being collected: the
// proxy's bulk lane uses it so a 10 MB reply costs 256 KiB of memory and
// reaches its client while it is still arriving.
type Stream struct {
	nc  net.Conn
	buf []byte
	w   int // bytes in buf not yet handed on

	// Tick, when set, is called before every read of the socket (the
	// bulk lane releases its slot from it).
	Tick func()
}

// ErrStreamStep means the node sent more than the replies asked for: the
// stream is out of step and must be closed.
var ErrStreamStep = errors.New("stream out of step")

// DialStream opens a stream speaking protocol proto, with a buffer of
// bufSize bytes (at least a RESP header line).
func (p *Pool) DialStream(proto, bufSize int) (*Stream, error) {
	nc, left, err := p.DialRaw(proto)
	if err != nil {
		return nil, err
	}
	st := &Stream{nc: nc, buf: make([]byte, max(bufSize, 2*maxLine))}
	st.w = copy(st.buf, left)
	return st, nil
}

// Close closes the stream's connection.
func (st *Stream) Close() { st.nc.Close() }

// Do writes payload (n complete commands) and hands the n replies to out,
// piece by piece, as they arrive; RESP3 pushes are skipped. It returns the
// reply bytes handed on, how many replies were complete, and whether the
// reply that was cut (on error) had begun to be handed on. An error from
// out is returned as is; every error leaves the stream unusable.
func (st *Stream) Do(payload []byte, n int, readTimeout, writeTimeout time.Duration, out func([]byte) error) (moved, got int, cut bool, err error) {
	if writeTimeout > 0 {
		st.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	if _, err := st.nc.Write(payload); err != nil {
		return 0, 0, false, err
	}
	var f Framer
	buf, w := st.buf, st.w
	for got < n {
		r := 0
		for r < w && got < n {
			k, done, err := f.Scan(buf[r:w])
			if err != nil {
				return moved, got, cut, err
			}
			push := f.Push()
			if !push {
				if err := out(buf[r : r+k]); err != nil {
					return moved, got, true, err
				}
				cut = !done
			}
			r += k
			moved += k
			if !done {
				break
			}
			f.Reset()
			if !push {
				got++
			}
		}
		w = copy(buf, buf[r:w])
		if got == n {
			break
		}
		if w == len(buf) {
			return moved, got, cut, ErrProtocol // a header line longer than the buffer
		}
		if st.Tick != nil {
			st.Tick()
		}
		if readTimeout > 0 {
			st.nc.SetReadDeadline(time.Now().Add(readTimeout))
		}
		k, err := st.nc.Read(buf[w:])
		w += k
		if err != nil && k == 0 {
			return moved, got, cut, err
		}
	}
	st.w = w
	if w > 0 {
		return moved, got, false, ErrStreamStep
	}
	return moved, got, false, nil
}
