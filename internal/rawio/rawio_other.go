//go:build !linux

package rawio

import "net"

// Wrap returns nc unchanged off Linux.
func Wrap(nc net.Conn) net.Conn { return nc }
