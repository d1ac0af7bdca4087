package upstream

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/keyspace"
)

// Router is what the proxy's background work sends through: one node
// (a Pool) or a Cluster's masters.
type Router interface {
	// Node is the pool for slot (< 0: any).
	Node(slot int) *Pool
	// Masters are the nodes that hold data now.
	Masters() []*Pool
	// Nodes are all the pools (for metrics).
	Nodes() []*Pool
	// Up reports whether every master is reachable.
	Up() bool
}

var (
	_ Router = (*Pool)(nil)
	_ Router = (*Cluster)(nil)
)

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Cluster routes to the masters of a Redis Cluster by hash slot. The slot
// map comes from CLUSTER SLOTS (through go-redis, off the data path), at
// start, every few seconds, and at once when a reply says MOVED; the data
// path reads it with one atomic load. Each master has its own Pool, with
// its own breaker.
type Cluster struct {
	t   Target
	log *zap.Logger

	slots     [Slots]atomic.Pointer[Pool]
	migrating [Slots]atomic.Int64             // unix nanos until which the slot counts as being moved
	known     atomic.Bool                     // a slot map was read
	members   atomic.Pointer[map[string]bool] // every node's address (CLUSTER NODES)

	syncMu sync.Mutex // member's refresh
	synced time.Time

	mu     sync.Mutex
	pools  map[string]*Pool
	closed bool

	kick chan struct{}
	done chan struct{}

	// Own reports whether a script SHA (hex) is one of the proxy's own,
	// whose error replies are never a forged redirect. Set before use.
	Own func(sha string) bool
}

// NewCluster starts discovering the cluster from t.Seeds in the background.
func NewCluster(t Target, log *zap.Logger) *Cluster {
	if log == nil {
		log = zap.NewNop()
	}
	c := &Cluster{t: t, log: log, pools: map[string]*Pool{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	for _, s := range t.Seeds {
		c.NodeAt(s)
	}
	go c.refreshLoop()
	return c
}

// Node is the pool of the master that owns slot; before the slot map is
// known, or for slot < 0 (a command without keys), any master's.
func (c *Cluster) Node(slot int) *Pool {
	if slot >= 0 && slot < Slots {
		if p := c.slots[slot].Load(); p != nil {
			return p
		}
	}
	if p := c.slots[0].Load(); p != nil {
		return p
	}
	return c.NodeAt(c.t.Seeds[0])
}

// CommandNode is the pool for a command (cmd, its table entry, may be
// nil): the master of its first key's slot, or def for a command without
// keys. acc is scratch.
//
// alone says the slot is being migrated: send the command by itself and
// wait for its reply (redirects followed) before the next, so a command
// sent again after an ASK or TRYAGAIN cannot run after a later one of the
// same batch.
func (c *Cluster) CommandNode(cmd *keyspace.Command, args [][]byte, acc *keyspace.Access, def *Pool) (node *Pool, alone bool) {
	if cmd != nil && keyspace.Extract(cmd, args, acc) == nil && len(acc.Keys) > 0 {
		slot := KeySlot(args[acc.Keys[0]])
		return c.Node(slot), c.Migrating(slot)
	}
	return def, false
}

// Migrating reports whether slot is being moved: CLUSTER NODES said so at
// the last refresh, or a reply said ASK or TRYAGAIN for it in the last
// few seconds.
func (c *Cluster) Migrating(slot int) bool {
	return time.Now().UnixNano() < c.migrating[slot].Load()
}

// markMigrating notes that slot is being moved, for the next 5 s.
func (c *Cluster) markMigrating(slot int) {
	if slot >= 0 && slot < Slots {
		c.migrating[slot].Store(time.Now().Add(5 * time.Second).UnixNano())
	}
}

// NodeAt is the pool for the node at addr, created on first use.
func (c *Cluster) NodeAt(addr string) *Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pools[addr]; p != nil {
		return p
	}
	o := c.t.Node
	o.Addr = addr
	p := NewPool(o, c.log.With(zap.String("node", addr)))
	if c.closed {
		p.Close()
	}
	c.pools[addr] = p
	return p
}

// Moved records a MOVED reply: slot is now served at addr. The slot map is
// read again soon (one MOVED usually means many slots moved).
func (c *Cluster) Moved(slot int, addr string) *Pool {
	p := c.NodeAt(addr)
	if slot >= 0 && slot < Slots {
		c.slots[slot].Store(p)
	}
	c.Refresh()
	return p
}

// Refresh asks for the slot map to be read again (coalesced).
func (c *Cluster) Refresh() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Nodes lists every node's pool the proxy knows.
func (c *Cluster) Nodes() []*Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Pool, 0, len(c.pools))
	for _, p := range c.pools {
		out = append(out, p)
	}
	return out
}

// Masters lists the pools of the masters that own slots now.
func (c *Cluster) Masters() []*Pool {
	seen := map[*Pool]bool{}
	var out []*Pool
	for i := range c.slots {
		if p := c.slots[i].Load(); p != nil && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// WaitUp waits until the slot map is known and every master's shared
// connections are up, or d elapses.
func (c *Cluster) WaitUp(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.known.Load() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, p := range c.Masters() {
		if !p.WaitUp(time.Until(deadline)) {
			return false
		}
	}
	return true
}

// Up reports whether the slot map is known and every master is up.
func (c *Cluster) Up() bool {
	if !c.known.Load() {
		return false
	}
	for _, p := range c.Masters() {
		if !p.Up() {
			return false
		}
	}
	return true
}

// Close closes every pool and stops discovery.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.done)
	pools := make([]*Pool, 0, len(c.pools))
	for _, p := range c.pools {
		pools = append(pools, p)
	}
	c.mu.Unlock()
	for _, p := range pools {
		p.Close()
	}
}

// refreshLoop reads the slot map at start, when kicked (at most every
// 50 ms) and every 5 s.
func (c *Cluster) refreshLoop() {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	backoff := 10 * time.Millisecond
	for {
		if err := c.refresh(); err != nil {
			c.log.Warn("cluster topology: no node answered CLUSTER SLOTS", zap.Error(err))
			select {
			case <-c.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		select {
		case <-c.done:
			return
		case <-tick.C:
		case <-c.kick:
			select {
			case <-c.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// refresh reads CLUSTER SLOTS from the first node that answers (the known
// masters first, then the seeds) and installs it.
func (c *Cluster) refresh() error {
	var addrs []string
	seen := map[string]bool{}
	for _, p := range c.Masters() {
		if a := p.Addr(); !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	for _, s := range c.t.Seeds {
		if !seen[s] {
			seen[s] = true
			addrs = append(addrs, s)
		}
	}
	for _, p := range c.Nodes() {
		if a := p.Addr(); !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	var errs []error
	for _, a := range addrs {
		ranges, members, err := c.slotsFrom(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.members.Store(&members)
		covered := 0
		for _, r := range ranges {
			if len(r.Nodes) == 0 {
				continue
			}
			p := c.NodeAt(r.Nodes[0].Addr)
			for _, n := range r.Nodes[1:] {
				// Connected ahead: a replica is the master after a
				// failover.
				c.NodeAt(n.Addr)
			}
			for s := r.Start; s <= r.End && s < Slots; s++ {
				c.slots[s].Store(p)
				covered++
			}
		}
		if covered == 0 {
			errs = append(errs, errors.New(a+": no slots assigned"))
			continue
		}
		c.known.Store(true)
		return nil
	}
	return errors.Join(errs...)
}

// slotsFrom reads the slot map (CLUSTER SLOTS) and the addresses of every
// node of the cluster (CLUSTER NODES: also masters that own no slot yet,
// such as one importing its first) from the node at addr.
func (c *Cluster) slotsFrom(addr string) ([]redis.ClusterSlot, map[string]bool, error) {
	o := c.t.controlOptions(addr)
	o.Username, o.Password = c.t.Node.Username, c.t.Node.Password
	rc := redis.NewClient(o)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.t.Node.DialTimeout)
	defer cancel()
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, nil, err
	}
	nodes, err := rc.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, nil, err
	}
	members := map[string]bool{}
	for _, line := range strings.Split(nodes, "\n") {
		// <id> <ip:port@cport[,hostname]> <flags> ...
		f := strings.Fields(line)
		if len(f) < 3 || strings.Contains(f[2], "noaddr") || strings.Contains(f[2], "handshake") {
			continue
		}
		for _, sl := range f[8:] {
			// [<slot>->-<node>] (migrating) or [<slot>-<-<node>] (importing)
			if n, _, ok := strings.Cut(strings.TrimPrefix(sl, "["), "-"); ok && sl[0] == '[' {
				if v, err := strconv.Atoi(n); err == nil {
					c.markMigrating(v)
				}
			}
		}
		a, _, _ := strings.Cut(f[1], "@")
		if strings.HasPrefix(a, ":") { // myself, before it knows its own IP
			host, _, _ := net.SplitHostPort(addr)
			a = host + a
		}
		members[a] = true
	}
	for _, r := range slots {
		for _, n := range r.Nodes {
			members[n.Addr] = true
		}
	}
	return slots, members, nil
}

// member reports whether addr is a node of the cluster. A redirect names
// its target in an error reply, and scripts can return any error text: the
// proxy follows only redirects to nodes the cluster itself lists (asking
// again, at most every 100 ms, when a name is new: a node just added).
func (c *Cluster) member(addr string) bool {
	if m := c.members.Load(); m != nil && (*m)[addr] {
		return true
	}
	c.syncRefresh()
	m := c.members.Load()
	return m != nil && (*m)[addr]
}

// syncRefresh reads the slot map now, unless that was done in the last
// 100 ms.
func (c *Cluster) syncRefresh() {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	if time.Since(c.synced) >= 100*time.Millisecond {
		c.synced = time.Now()
		c.refresh()
	}
}

// Redirect is a cluster redirection reply: -MOVED <slot> <addr> or -ASK
// <slot> <addr>.
type Redirect struct {
	Ask  bool
	Slot int
	Addr string
}

// ParseRedirect reads a reply that is a MOVED or ASK error.
func ParseRedirect(reply []byte) (Redirect, bool) {
	var r Redirect
	var rest []byte
	switch {
	case bytes.HasPrefix(reply, []byte("-MOVED ")):
		rest = reply[7:]
	case bytes.HasPrefix(reply, []byte("-ASK ")):
		rest, r.Ask = reply[5:], true
	default:
		return r, false
	}
	rest = bytes.TrimRight(rest, "\r\n")
	sl, addr, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return r, false
	}
	n, err := strconv.Atoi(string(sl))
	if err != nil || n < 0 || n >= Slots || len(addr) == 0 {
		return r, false
	}
	r.Slot, r.Addr = n, string(addr)
	return r, true
}

// IsClusterTryAgain reports a TRYAGAIN from Redis Cluster: a multi-key
// command on a slot being migrated, whose keys are split for now.
func IsClusterTryAgain(reply []byte) bool {
	return bytes.HasPrefix(reply, []byte("-TRYAGAIN Multiple keys request during rehashing of slot"))
}

// crc16tab is CRC16-CCITT (XMODEM), polynomial 0x1021, which Redis Cluster
// hashes keys with.
var crc16tab = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^c]
	}
	return crc
}

// KeySlot is the hash slot of key, as Redis computes it: the part inside
// the first {...} when that is not empty, else the whole key.
func KeySlot(key []byte) int {
	if i := bytes.IndexByte(key, '{'); i >= 0 {
		if j := bytes.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) & (Slots - 1))
}

// TagSlot is the slot of every key whose hash tag is tag (a workspace).
func TagSlot(tag string) int {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^tag[i]]
	}
	return int(crc & (Slots - 1))
}
