// Package clientwatch reads a client connection while its session waits
// upstream (a blocking command): what the client sends meanwhile is kept
// for later, and the client leaving is noticed at once, so the upstream
// wait can be cut (Redis would otherwise hand a popped element to a client
// that is gone).
package clientwatch

import (
	"errors"
	"net"
	"os"
	"time"
)

// Max bounds what a watcher keeps of what a blocked client sends; beyond
// it the client waits like any other (its socket fills and it stops
// sending).
const Max = 16 << 10

// Watcher reads one client connection until Stop.
type Watcher struct {
	nc   net.Conn
	done chan struct{}
	data []byte
	gone bool
}

// Start reads nc in the background; when the client leaves, onGone runs
// (it closes the upstream connection the session waits on). limit bounds
// what is kept, below Max.
func Start(nc net.Conn, limit int, onGone func()) *Watcher {
	w := &Watcher{nc: nc, done: make(chan struct{})}
	nc.SetReadDeadline(time.Time{})
	go func() {
		defer close(w.done)
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			w.data = append(w.data, buf[:n]...)
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					w.gone = true
					onGone()
				}
				return
			}
			if len(w.data) >= Max || len(w.data) > limit {
				return
			}
		}
	}()
	return w
}

// Stop ends the watcher and returns the bytes it read and whether the
// client left. stopping leaves the connection's read deadline in the past
// (the server is shutting down), else cleared.
func (w *Watcher) Stop(stopping func() bool) (data []byte, gone bool) {
	w.nc.SetReadDeadline(time.Unix(1, 0))
	<-w.done
	if stopping() {
		w.nc.SetReadDeadline(time.Unix(1, 0))
	} else {
		w.nc.SetReadDeadline(time.Time{})
	}
	return w.data, w.gone
}
