package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"sync"

	"github.com/tidwall/redcon"
)

// Markers keep the proxy's own answers in their place on a tunnelled
// connection (subscriptions, MONITOR), among the replies still coming from
// Redis: each answer is queued and "PING <marker>" goes upstream in its
// place; when the marker's reply comes back, the answer is written instead.
// The marker holds a random token, so no published message can imitate it
// (a message arrives as a 3-element push, not a PING reply). Its lock is a
// leaf: the pump takes it after reading a frame, the session after
// building an answer.
type Markers struct {
	mu      sync.Mutex
	replies [][]byte
	ping    []byte // PING <marker> as RESP
	pong2   []byte // its reply while subscribed in RESP2: ["pong", marker]
	pong    []byte // its reply otherwise: the marker as a bulk string
}

// NewMarkers returns an empty queue with a fresh token.
func NewMarkers() *Markers {
	var b [16]byte
	rand.Read(b[:])
	token := "agentproxy-local-" + hex.EncodeToString(b[:])
	m := &Markers{}
	m.ping = redcon.AppendBulkString(redcon.AppendBulkString(redcon.AppendArray(nil, 2), "PING"), token)
	m.pong = redcon.AppendBulkString(nil, token)
	m.pong2 = redcon.AppendBulkString(redcon.AppendBulkString(redcon.AppendArray(nil, 2), "pong"), token)
	return m
}

// Push queues a copy of reply and appends the marker PING to send in its
// place.
func (m *Markers) Push(send, reply []byte) []byte {
	r := append([]byte(nil), reply...)
	m.mu.Lock()
	m.replies = append(m.replies, r)
	m.mu.Unlock()
	return append(send, m.ping...)
}

// IsMarker reports whether frame is the reply to a marker PING.
func (m *Markers) IsMarker(frame []byte) bool {
	if len(frame) > len(m.pong2)+1 {
		return false
	}
	return bytes.Equal(frame, m.pong) || bytes.Equal(frame, m.pong2) ||
		len(frame) > 0 && frame[0] == '>' && bytes.Equal(frame[1:], m.pong2[1:])
}

// Pop returns the oldest queued answer, or nil.
func (m *Markers) Pop() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.replies) == 0 {
		return nil
	}
	r := m.replies[0]
	m.replies = m.replies[1:]
	return r
}
