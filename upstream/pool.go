package upstream

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/breaker"
)

// Options describe how to reach one Redis node.
type Options struct {
	Network  string // "tcp" or "unix"
	Addr     string
	Username string
	Password string
	DB       int
	TLS      *tls.Config

	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// Conns is the number of shared (multiplexed) connections per protocol
	// version.
	Conns int
	// MaxIdleDedicated bounds the clean dedicated connections kept for
	// reuse by pinned sessions.
	MaxIdleDedicated int
	// BackoffMax caps the reconnect backoff.
	BackoffMax time.Duration
	// Breaker configures the node's circuit breaker.
	Breaker breaker.Settings
	// Name names the node in logs and metrics (default: Addr).
	Name string
	// RequireMaster refuses a connection to a node that is not a master
	// (Sentinel: a sentinel's stale answer must not send writes to a
	// demoted master).
	RequireMaster bool
}

// ParseURL reads redis://[user:pass@]host:port[/db], rediss://... (TLS) and
// unix:///path/to/socket[?db=n] into Options with default timeouts.
func ParseURL(raw string) (Options, error) {
	o, err := parseURL(raw)
	return o, redactErr(raw, err)
}

func parseURL(raw string) (Options, error) {
	o := Options{Network: "tcp", DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, Conns: 1, MaxIdleDedicated: 16, BackoffMax: time.Second}
	u, err := url.Parse(raw)
	if err != nil {
		return o, fmt.Errorf("upstream url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return o, fmt.Errorf("upstream url %q: missing host:port", raw)
		}
		o.Addr = u.Host
		if u.Port() == "" {
			o.Addr = net.JoinHostPort(u.Hostname(), "6379")
		}
		if u.Scheme == "rediss" {
			o.TLS = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			db, err := strconv.Atoi(p)
			if err != nil || db < 0 {
				return o, fmt.Errorf("upstream url %q: database %q is not a non-negative number", raw, p)
			}
			o.DB = db
		}
	case "unix":
		o.Network, o.Addr = "unix", u.Path
		if o.Addr == "" {
			return o, fmt.Errorf("upstream url %q: missing socket path", raw)
		}
		if d := u.Query().Get("db"); d != "" {
			db, err := strconv.Atoi(d)
			if err != nil || db < 0 {
				return o, fmt.Errorf("upstream url %q: db %q is not a non-negative number", raw, d)
			}
			o.DB = db
		}
	default:
		return o, fmt.Errorf("upstream url %q: scheme must be redis://, rediss:// or unix://", raw)
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
		if _, set := u.User.Password(); !set {
			// redis://secret@host means a password for the default user.
			o.Username, o.Password = "", u.User.Username()
		}
	}
	return o, nil
}

// Pool holds the connections to one Redis node: a fixed set of shared
// connections per protocol version, redialled in the background with
// backoff when they fail, and dedicated connections for pinned sessions.
type Pool struct {
	opts Options
	log  *zap.Logger
	brk  *breaker.Breaker
	addr atomic.Pointer[string] // where the node is now (Sentinel moves it)

	shared [2][]atomic.Pointer[Conn] // [0]: RESP2, [1]: RESP3
	rr     atomic.Uint32

	mu      sync.Mutex
	active  map[*Conn]struct{}    // dedicated connections handed out
	raw     map[net.Conn]struct{} // long-lived raw connections (subscriptions), see Track
	idle    [2][]*Conn
	dialing [2][]bool
	closed  bool
	done    chan struct{}

	dialFailing atomic.Bool // the last redial of a shared connection failed

	version atomic.Value // string: the server's version, from HELLO
	resp3   atomic.Bool  // the server speaks RESP3 (answered HELLO 3)
	up      atomic.Bool
}

// NewPool starts connecting to the node in the background; it does not
// wait for Redis to be reachable.
func NewPool(opts Options, log *zap.Logger) *Pool {
	if opts.Conns <= 0 {
		opts.Conns = 1
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = time.Second
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Pool{opts: opts, log: log, done: make(chan struct{}), active: map[*Conn]struct{}{}, raw: map[net.Conn]struct{}{}}
	p.addr.Store(&opts.Addr)
	name := opts.Addr
	if opts.Name != "" {
		name = opts.Name
	}
	p.brk = breaker.New(name, opts.Breaker, p.probe, log)
	p.brk.OnOpen = p.cutHeld
	p.version.Store("7.0.0")
	p.resp3.Store(true)
	for v := 0; v < 2; v++ {
		p.shared[v] = make([]atomic.Pointer[Conn], opts.Conns)
		p.dialing[v] = make([]bool, opts.Conns)
	}
	// Only once every slot exists: a dial loop that fails reads them all.
	for v := 0; v < 2; v++ {
		for i := range p.shared[v] {
			p.redial(v, i)
		}
	}
	return p
}

// Addr is the node's address.
func (p *Pool) Addr() string { return *p.addr.Load() }

// SetAddr moves the node to addr (a Sentinel failover): every connection
// to the old address is closed, so shared connections redial the new one
// and pinned sessions get an error instead of writing to a demoted master.
func (p *Pool) SetAddr(addr string) bool {
	if old := p.addr.Load(); *old == addr {
		return false
	}
	p.addr.Store(&addr)
	p.cutHeld()
	for v := range p.shared {
		for i := range p.shared[v] {
			if c := p.shared[v][i].Load(); c != nil {
				c.fail(ErrMoved) // onClose redials, now to addr
			}
		}
	}
	return true
}

// DB is the database the node's connections select.
func (p *Pool) DB() int { return p.opts.DB }

// WriteTimeout bounds a write to the node.
func (p *Pool) WriteTimeout() time.Duration { return p.opts.WriteTimeout }

// ReadTimeout is the default wait for a reply.
func (p *Pool) ReadTimeout() time.Duration { return p.opts.ReadTimeout }

// Version is the Redis version the node reported.
func (p *Pool) Version() string { return p.version.Load().(string) }

// SupportsRESP3 reports whether the node accepted HELLO 3.
func (p *Pool) SupportsRESP3() bool { return p.resp3.Load() }

// Up reports whether at least one shared connection is established and
// the breaker is closed.
func (p *Pool) Up() bool { return p.up.Load() && p.brk.Allow() }

// Nodes lists the pools behind this upstream (one for a single node).
func (p *Pool) Nodes() []*Pool { return []*Pool{p} }

// Masters is the pool itself (Router).
func (p *Pool) Masters() []*Pool { return []*Pool{p} }

// Node is the pool itself, whatever the slot (Router).
func (p *Pool) Node(int) *Pool { return p }

// Breaker is the node's circuit breaker.
func (p *Pool) Breaker() *breaker.Breaker { return p.brk }

// Refusal is the TRYAGAIN text for a request that found no connection: the
// breaker's state when it is not closed, else "" (the node is unreachable).
func (p *Pool) Refusal() string {
	if !p.brk.Allow() {
		return p.brk.Refusal()
	}
	return ""
}

// cutHeld closes the connections sessions hold (pinned, blocked, bulk,
// subscriptions) and the idle ones: the node failed or moved, and a client
// waiting on one gets an error now instead of a hang.
func (p *Pool) cutHeld() {
	p.mu.Lock()
	conns := append(p.idle[0], p.idle[1]...)
	p.idle[0], p.idle[1] = nil, nil
	for c := range p.active {
		conns = append(conns, c)
	}
	raw := make([]net.Conn, 0, len(p.raw))
	for nc := range p.raw {
		raw = append(raw, nc)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	for _, nc := range raw {
		nc.Close()
	}
}

// Track registers a long-lived connection from DialRaw (a subscription)
// to be closed when the node fails or moves; call the returned function
// when it is closed.
func (p *Pool) Track(nc net.Conn) (untrack func()) {
	p.mu.Lock()
	p.raw[nc] = struct{}{}
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.raw, nc)
		p.mu.Unlock()
	}
}

// probe is the breaker's health check: a fresh connection and PING.
func (p *Pool) probe() error {
	nc, _, err := p.dialRaw(2, true)
	if err != nil {
		return err
	}
	return nc.Close()
}

// Shared returns a live shared connection for protocol version proto (2 or
// 3), or nil when none is connected or the breaker is open (the caller
// answers TRYAGAIN, see Refusal).
func (p *Pool) Shared(proto int) *Conn { return p.await(proto, nil) }

// await returns a shared connection other than not. When there is none
// because it is being redialled (a reset connection comes back in a
// millisecond or two), it waits up to retryWait for it rather than fail
// the request, unless redialling already failed (the node is down: nil at
// once).
func (p *Pool) await(proto int, not *Conn) *Conn {
	var deadline time.Time
	for {
		if c := p.shared1(proto); c != nil && c != not {
			return c
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(retryWait)
		}
		if !p.Redialling() || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-p.done:
			return nil
		case <-time.After(time.Millisecond):
		}
	}
}

// Redialling reports whether a lost shared connection is being redialled
// with no failure yet: worth a short wait.
func (p *Pool) Redialling() bool { return p.brk.Allow() && !p.dialFailing.Load() }

func (p *Pool) shared1(proto int) *Conn {
	if !p.brk.Allow() {
		return nil
	}
	v := proto - 2
	conns := p.shared[v]
	n := uint32(len(conns))
	start := p.rr.Add(1)
	for i := uint32(0); i < n; i++ {
		if c := conns[(start+i)%n].Load(); c != nil {
			return c
		}
	}
	return nil
}

// WaitUp waits until every shared connection (of both protocol versions)
// is established, or d elapses.
func (p *Pool) WaitUp(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !p.allUp() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// redial starts the background dial loop for shared slot i of version v,
// unless one is already running.
func (p *Pool) redial(v, i int) {
	p.mu.Lock()
	if p.closed || p.dialing[v][i] {
		p.mu.Unlock()
		return
	}
	p.dialing[v][i] = true
	p.mu.Unlock()
	go func() {
		backoff := 10 * time.Millisecond
		failures := 0
		for {
			c, err := p.dialShared(v, i)
			p.dialFailing.Store(err != nil)
			if err == nil {
				p.mu.Lock()
				p.dialing[v][i] = false
				closed := p.closed
				p.mu.Unlock()
				if closed {
					c.Close()
					return
				}
				p.shared[v][i].Store(c)
				p.up.Store(true)
				if failures > 0 {
					p.log.Info("upstream reconnected", zap.String("addr", p.Addr()), zap.Int("failures", failures))
				}
				return
			}
			failures++
			if failures == 1 || failures%50 == 0 {
				p.log.Warn("upstream dial failed", zap.String("addr", p.Addr()), zap.Int("failures", failures), zap.Error(err))
			}
			// Full jitter keeps many proxies from reconnecting in lockstep.
			sleep := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-p.done:
				return
			case <-time.After(sleep):
			}
			backoff *= 2
			if backoff > p.opts.BackoffMax {
				backoff = p.opts.BackoffMax
			}
		}
	}()
}

func (p *Pool) dialShared(v, i int) (*Conn, error) {
	nc, left, err := p.dialRaw(v+2, true)
	if err != nil {
		return nil, err
	}
	c := newConn(nc, p, left, func(c *Conn, err error) {
		if p.shared[v][i].CompareAndSwap(c, nil) {
			p.log.Warn("upstream connection lost", zap.String("addr", p.Addr()), zap.Error(err))
			p.refreshUp()
			p.redial(v, i)
		}
	})
	c.proto = v + 2
	return c, nil
}

func (p *Pool) allUp() bool {
	for v := range p.shared {
		for i := range p.shared[v] {
			if p.shared[v][i].Load() == nil {
				return false
			}
		}
	}
	return true
}

func (p *Pool) refreshUp() {
	for v := range p.shared {
		for i := range p.shared[v] {
			if p.shared[v][i].Load() != nil {
				return
			}
		}
	}
	p.up.Store(false)
}

// Dedicated returns a connection for one pinned session: a clean idle one
// or a new one. Give it back with Release.
//
// ping false leaves out the PING that proves a new connection's server
// answers: for the commands that end what keeps Redis from answering
// (SCRIPT KILL while a script runs, before Redis starts answering BUSY).
func (p *Pool) Dedicated(proto int, ping bool) (*Conn, error) {
	if !p.brk.Allow() {
		return nil, ErrBreakerOpen
	}
	v := proto - 2
	p.mu.Lock()
	for len(p.idle[v]) > 0 {
		c := p.idle[v][len(p.idle[v])-1]
		p.idle[v] = p.idle[v][:len(p.idle[v])-1]
		if c.Alive() {
			p.active[c] = struct{}{}
			p.mu.Unlock()
			return c, nil
		}
	}
	p.mu.Unlock()
	addr := p.Addr()
	nc, left, err := p.dialRaw(proto, ping)
	if err != nil {
		return nil, err
	}
	c := newConn(nc, p, left, nil)
	p.mu.Lock()
	p.active[c] = struct{}{}
	p.mu.Unlock()
	if p.Addr() != addr {
		c.Close() // the node moved while it was dialled
	}
	return c, nil
}

// Release returns a dedicated connection. clean says the session left no
// state on it (no MULTI, WATCH, SELECT, subscription); anything else is
// closed.
func (p *Pool) Release(c *Conn, proto int, clean bool) {
	p.mu.Lock()
	delete(p.active, c)
	p.mu.Unlock()
	if !clean || !c.Alive() || c.Pending() > 0 {
		c.Close()
		return
	}
	v := proto - 2
	p.mu.Lock()
	if p.closed || len(p.idle[v]) >= p.opts.MaxIdleDedicated {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle[v] = append(p.idle[v], c)
	p.mu.Unlock()
}

// Close closes every connection and stops redialling.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.brk.Close()
	idle := append(p.idle[0], p.idle[1]...)
	p.idle[0], p.idle[1] = nil, nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	for v := range p.shared {
		for i := range p.shared[v] {
			if c := p.shared[v][i].Swap(nil); c != nil {
				c.Close()
			}
		}
	}
}

// DialRaw opens and prepares a connection speaking protocol proto: TLS,
// HELLO (or AUTH) and SELECT are done. It returns any bytes read past the
// handshake replies. While the breaker is open it fails at once with
// ErrBreakerOpen.
func (p *Pool) DialRaw(proto int) (net.Conn, []byte, error) {
	if !p.brk.Allow() {
		return nil, nil, ErrBreakerOpen
	}
	return p.dialRaw(proto, true)
}

// dialRaw is DialRaw whatever the breaker's state; its outcome counts.
func (p *Pool) dialRaw(proto int, ping bool) (net.Conn, []byte, error) {
	nc, left, err := p.dialOnce(proto, ping)
	if err != nil {
		if !errors.Is(err, ErrNoMaster) {
			p.brk.Failure()
		}
		return nil, nil, err
	}
	p.brk.Success()
	p.brk.Wake() // when open: the node answers again, probe it now
	return nc, left, nil
}

func (p *Pool) dialOnce(proto int, ping bool) (net.Conn, []byte, error) {
	d := net.Dialer{Timeout: p.opts.DialTimeout, KeepAlive: 30 * time.Second}
	addr := p.Addr()
	if addr == "" {
		return nil, nil, ErrNoMaster
	}
	nc, err := d.Dial(p.opts.Network, addr)
	if err != nil {
		return nil, nil, err
	}
	if p.opts.TLS != nil {
		cfg := p.opts.TLS
		if cfg.ServerName == "" {
			// A node found through Sentinel or Cluster: verify the name
			// it is reached by.
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		tc.SetDeadline(time.Now().Add(p.opts.DialTimeout))
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, nil, err
		}
		nc = tc
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	left, err := p.handshake(nc, proto, ping)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, left, nil
}

func (p *Pool) handshake(nc net.Conn, proto int, ping bool) ([]byte, error) {
	var req [][]string
	hello := proto == 3
	if hello {
		h := []string{"HELLO", "3"}
		if p.opts.Password != "" {
			user := p.opts.Username
			if user == "" {
				user = "default"
			}
			h = append(h, "AUTH", user, p.opts.Password)
		}
		req = append(req, h)
	} else if p.opts.Password != "" {
		if p.opts.Username != "" {
			req = append(req, []string{"AUTH", p.opts.Username, p.opts.Password})
		} else {
			req = append(req, []string{"AUTH", p.opts.Password})
		}
	}
	if p.opts.DB != 0 {
		req = append(req, []string{"SELECT", strconv.Itoa(p.opts.DB)})
	}
	if len(req) == 0 && ping {
		// A PING proves the server answers: a hung one accepts
		// connections (the kernel does) but never replies.
		req = append(req, []string{"PING"})
	}
	if p.opts.RequireMaster {
		req = append(req, []string{"ROLE"})
	}
	if len(req) == 0 {
		return nil, nil
	}
	var out []byte
	for _, r := range req {
		out = AppendCommand(out, r...)
	}
	nc.SetDeadline(time.Now().Add(p.opts.DialTimeout))
	defer nc.SetDeadline(time.Time{})
	if _, err := nc.Write(out); err != nil {
		return nil, err
	}
	replies, left, err := ReadFrames(nc, len(req))
	if err != nil {
		return nil, err
	}
	for i, r := range replies {
		if req[i][0] == "ROLE" && !bytes.HasPrefix(r, []byte("*3\r\n$6\r\nmaster\r\n")) {
			return nil, fmt.Errorf("%s is not a master (ROLE: %.40q)", nc.RemoteAddr(), r)
		}
		if req[i][0] == "PING" {
			// Any reply proves the server answers (-BUSY while a
			// script runs, -LOADING at start: as Redis's own clients
			// would see them).
			continue
		}
		if len(r) > 0 && r[0] == '-' {
			msg := string(bytes.TrimRight(r[1:], "\r\n"))
			if i == 0 && hello {
				p.resp3.Store(false)
			}
			return nil, fmt.Errorf("upstream refused %s: %s", req[i][0], msg)
		}
	}
	if hello {
		if v := helloVersion(replies[0]); v != "" {
			p.version.Store(v)
		}
	}
	return left, nil
}

// helloVersion finds the version field in a raw HELLO reply.
func helloVersion(r []byte) string {
	i := bytes.Index(r, []byte("\r\nversion\r\n"))
	if i < 0 {
		return ""
	}
	rest := r[i+len("\r\nversion\r\n"):]
	j := bytes.Index(rest, []byte("\r\n"))
	if j < 0 || len(rest) == 0 || rest[0] != '$' {
		return ""
	}
	n, ok := parseLen(rest[1:j])
	if !ok || n < 0 || len(rest) < j+2+n {
		return ""
	}
	return string(rest[j+2 : j+2+n])
}

// AppendCommand appends a RESP command array of args to b.
func AppendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// ReadFrames reads n complete replies from nc (control-plane use: small
// replies, synchronous). It returns the frames and any bytes read past them.
func ReadFrames(nc net.Conn, n int) (frames [][]byte, left []byte, err error) {
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	var f Framer
	start, pos := 0, 0
	for len(frames) < n {
		if pos < len(buf) {
			k, done, err := f.Scan(buf[pos:])
			if err != nil {
				return nil, nil, err
			}
			pos += k
			if done {
				frames = append(frames, buf[start:pos])
				start = pos
				continue
			}
		}
		m, err := nc.Read(tmp)
		if m > 0 {
			buf = append(buf, tmp[:m]...)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if pos < len(buf) {
		left = append([]byte(nil), buf[pos:]...)
	}
	return frames, left, nil
}

// ErrUnavailable is returned when no connection to the node can be had.
var ErrUnavailable = errors.New("upstream unavailable")

// ErrNoMaster is returned while Sentinel has named no master yet.
var ErrNoMaster = errors.New("no master known yet: the sentinels did not answer")

// ErrMoved closes the connections to a node that moved (a failover).
var ErrMoved = errors.New("the master moved (failover); connection closed")

// ErrBreakerOpen is returned while the node's circuit breaker is open.
var ErrBreakerOpen = errors.New("upstream circuit breaker open")
