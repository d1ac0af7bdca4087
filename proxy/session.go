package proxy

import (
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/fencing"
	"github.com/agentproxy/agentproxy/internal/clientwatch"
	"github.com/agentproxy/agentproxy/internal/obs"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/keyspace"
	"github.com/agentproxy/agentproxy/policy"
	"github.com/agentproxy/agentproxy/upstream"
)

// route is where one command goes.
type route uint8

const (
	routeShared route = iota // any shared connection
	routePinned              // the session's dedicated connection
	routeLocal               // answered by the proxy
	routeBlock               // a dedicated connection for this call only
	routeTunnel              // a dedicated connection for the rest of the session
	routeRefuse              // answered with an error
	routeOwn                 // a connection of its own, never behind other commands (SCRIPT KILL)
)

// session is one client connection. Its goroutine owns every field except
// those documented otherwise.
type session struct {
	srv  *Server
	nc   net.Conn
	id   int64
	rd   *reader
	out  []byte
	call *upstream.Call
	log  *zap.Logger

	proto int // 2 or 3
	name  string
	quit  bool
	start time.Time
	// blocked says the batch ran a blocking command: its wait is not
	// latency (the client histogram skips it); ticket is its place.
	blocked      bool
	ticket       uint64
	sentBlocking func() // finishes ticket: made once
	// What PROXY CLIENTS reads from other goroutines (control.go).
	addr, laddr string
	view        atomic.Pointer[wire.ProxyClient]
	lastCmd     atomic.Int64 // unix nanoseconds of the last batch
	ncmds       atomic.Int64

	// Pinned state: a dedicated connection held while the client has
	// connection state on it.
	pinned   *upstream.Conn
	pinWS    string // what the pinned connection counts against (dedicated)
	db       int
	inMulti  bool
	watching bool
	sticky   bool // state we cannot track (SELECT inside MULTI, ...): never unpin
	ends     []int

	// Tunnel mode (subscriptions, MONITOR): wmu orders writes to nc
	// between the session and the pump.
	tconn   net.Conn
	untrack func() // the tunnel's, from Pool.Track
	tunWS   string
	tlocal  *wire.Markers
	wmu     sync.Mutex

	scratch []byte
	outHeld int64 // bytes of out's capacity taken from the memory budget
	bulky   int   // batches left in the bulk lane (bulk.go)
	// The batch's write plans (writes.go).
	planned   bool
	wplan     fencing.Write
	wscratch  fencing.Scratch
	slowAhead bool // the batch being checked has a command that may take time before this one
	evKeys    []int
	bulk      *upstream.Stream // the bulk lane's connection while bulky
	bulkWS    string
	slot      bool      // holds a slot of the bulk lane
	slotAt    time.Time // since when
	stopping  atomic.Bool
	wdeadline time.Time // the armed client write deadline

	// Access control: who the client is and the per-command scratch.
	ident       policy.Identity
	authed      bool
	authLimited bool
	authFailed  bool // a failed AUTH left a limiter bucket for this connection
	acc         keyspace.Access
	racc        keyspace.Access // cluster routing's (route)
	rewrite     []byte
	aborted     bool // the client's MULTI was aborted by a refused command

	// dreq is the domain commands' view of this connection (dispatch.go);
	// it keeps their lock tokens and buffers between commands.
	dreq     domain.Req
	mark     int    // len(out) when a domain command started
	capture  []byte // what a domain command queued in MULTI would send
	captured int
	txItems  []txItem // the commands queued in the client's MULTI
	txFix    bool     // some of them are domain commands
}

func newSession(srv *Server, nc net.Conn) *session {
	s := &session{srv: srv, nc: nc, id: srv.nextID.Add(1), proto: 2, call: upstream.NewCall(), start: time.Now(),
		addr: nc.RemoteAddr().String(), laddr: nc.LocalAddr().String()}
	s.rd = newReader(nc, srv.opts.ReadBufferSize, srv.opts.MaxRequestBytes, srv.opts.MaxArgs)
	s.rd.budget = srv.budget
	s.log = srv.log
	s.db = srv.pool.DB()
	p := srv.policy.Load()
	if !srv.opts.RequireAuth && policy.IsLoopback(nc.RemoteAddr()) {
		s.authed = true
		s.ident = policy.Identity{Role: p.DefaultRole, Workspace: p.DefaultWS}
	}
	s.publish()
	return s
}

// stop asks the session to finish its current batch and close. Safe from
// any goroutine.
func (s *session) stop() {
	s.stopping.Store(true)
	s.nc.SetReadDeadline(time.Unix(1, 0))
}

// kill closes the client connection at once. Safe from any goroutine.
func (s *session) kill() {
	s.stopping.Store(true)
	s.nc.Close()
}

func (s *session) serve() {
	defer s.close()
	for {
		if s.srv.opts.IdleTimeout > 0 && !s.stopping.Load() {
			s.nc.SetReadDeadline(time.Now().Add(s.srv.opts.IdleTimeout))
		}
		cmds, err := s.rd.readBatch(s.srv.opts.MaxPipeline)
		if len(cmds) > 0 {
			t0 := obs.Now()
			s.lastCmd.Store(t0)
			s.ncmds.Add(int64(len(cmds)))
			s.srv.Stats.Commands.Add(int64(len(cmds)))
			s.checkBatch(cmds)
			s.blocked = s.tconn != nil // a tunnel's replies come from its pump: no latency
			if s.blocked {
				s.execTunnel(cmds)
			} else {
				s.exec(cmds)
			}
			s.publish()
			if !s.flush() {
				return
			}
			if !s.blocked {
				s.srv.Stats.Client.Since(s.id, t0)
			}
		}
		if err != nil {
			if errors.Is(err, errBudget) {
				s.srv.Stats.BudgetCuts.Add(1)
				s.log.Warn("memory budget exhausted: client sending a large request disconnected", zap.Int64("client", s.id),
					zap.Int64("held", s.rd.held), zap.Int64("budget_used", s.srv.budget.Used()), zap.Int64("budget", s.srv.budget.Limit()))
			}
			if wire.IsProtocolError(err) {
				s.srv.Stats.ProtocolErrors.Add(1)
				s.out = wire.AppendError(s.out, err.Error())
				s.flush()
			}
			return
		}
		if s.quit || s.stopping.Load() && s.rd.buffered() == 0 {
			return
		}
	}
}

func (s *session) close() {
	if s.pinned != nil {
		s.unpin(false)
	}
	if s.tconn != nil {
		s.tconn.Close()
		s.untrack()
		s.srv.Stats.Pinned.Add(-1) // taken in startTunnel
		s.srv.Stats.Tunnels.Add(-1)
		s.giveDedicated(s.tunWS)
	}
	s.nc.Close()
	s.dreq.EndTx()
	s.closeBulk()
	s.rd.release()
	s.srv.budget.Give(s.outHeld)
	s.outHeld = 0
	if s.authFailed {
		s.srv.limiter.Forget("conn:" + strconv.FormatInt(s.id, 10))
	}
}

// flush writes the pending output. It returns false when the client is
// gone or too slow; the session then ends.
func (s *session) flush() bool {
	if len(s.out) == 0 {
		return !s.quit
	}
	if s.tconn != nil {
		s.wmu.Lock()
		defer s.wmu.Unlock()
	}
	if t := s.srv.opts.ClientWriteTimeout; t > 0 {
		// Re-armed only when less than 3/4 of it is left: a write may
		// get between 0.75x and 1x the timeout, without a timer
		// reprogrammed per reply.
		if now := time.Now(); s.wdeadline.Sub(now) < t*3/4 {
			s.wdeadline = now.Add(t)
			s.nc.SetWriteDeadline(s.wdeadline)
		}
	}
	_, err := s.nc.Write(s.out)
	if cap(s.out) > shrinkAbove {
		s.out = nil
		s.srv.budget.Give(s.outHeld)
		s.outHeld = 0
	} else {
		s.out = s.out[:0]
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.srv.Stats.SlowConsumers.Add(1)
			s.log.Info("slow consumer disconnected", zap.Int64("client", s.id))
		}
		return false
	}
	return !s.quit
}

// classify decides where cmd goes in the session's current state.
func (s *session) classify(c *command) route {
	info := c.cmd
	if c.deny != "" {
		return routeRefuse
	}
	if s.inMulti {
		// Inside MULTI Redis queues everything; only QUIT and RESET run
		// at once.
		if lc := localOf(info); lc != nil && lc.immediate {
			return routeLocal
		}
		return routePinned
	}
	if info == nil {
		if s.pinned != nil {
			return routePinned
		}
		return routeShared
	}
	f := info.Flags
	switch {
	case f&(keyspace.Local|keyspace.Proxy) != 0:
		return routeLocal
	case f&keyspace.Unsupported != 0:
		return routeRefuse
	case f&keyspace.Transaction != 0:
		return routePinned
	case f&keyspace.Blocking != 0, f&keyspace.BlockingIfArg != 0 && keyspace.HasBlockArg(c.Args):
		return routeBlock
	case f&(keyspace.PubSub|keyspace.Tunnel) != 0:
		return routeTunnel
	case c.sub.Has(keyspace.Bypass):
		return routeOwn
	}
	if s.pinned != nil {
		return routePinned
	}
	return routeShared
}

// exec runs one batch: consecutive forwarded commands go upstream as one
// write, the proxy's own answers are placed between their replies, and all
// output goes to the client in one flush.
func (s *session) exec(cmds []command) {
	for i := 0; i < len(cmds) && !s.quit; {
		if s.tconn != nil {
			s.execTunnel(cmds[i:])
			return
		}
		c := &cmds[i]
		if c.deny == denyPending {
			s.checkBatch(cmds[i:])
		}
		if s.aborted {
			s.abortedMulti(c)
			i++
			continue
		}
		rt := s.classify(c)
		switch rt {
		case routeLocal:
			rt = s.local(c)
			if rt == routeLocal {
				i++
				continue
			}
		case routeRefuse:
			if c.deny != "" {
				s.refuse(c)
			} else {
				s.out = wire.AppendError(s.out, wire.ErrUnsupported)
			}
			i++
			continue
		}
		switch rt {
		case routeShared, routePinned:
			j := s.runEnd(cmds, i, rt)
			if rt == routeShared {
				s.forwardShared(cmds[i:j])
			} else {
				s.forwardPinned(cmds[i:j])
			}
			i = j
		case routeBlock:
			s.forwardBlocking(c)
			i++
		case routeOwn:
			s.forwardOwn(c)
			i++
		case routeTunnel:
			if msg := s.startTunnel(); msg != "" {
				for ; i < len(cmds); i++ {
					s.out = wire.AppendError(s.out, msg)
				}
				return
			}
		default:
			i++
		}
	}
}

// runEnd returns the end of the run of commands starting at i that go to
// the same connection as cmds[i]. Inside a MULTI started in this very batch
// everything is queued by Redis, so the run follows the transaction.
func (s *session) runEnd(cmds []command, i int, rt route) int {
	multi := s.inMulti || cmds[i].cmd == cmdMulti
	j := i + 1
	for ; j < len(cmds); j++ {
		next := &cmds[j]
		if multi {
			if lc := localOf(next.cmd); next.deny != "" || lc != nil && lc.immediate {
				break
			}
			if isTxEnd(next.cmd) {
				multi = false
			}
			continue
		}
		nrt := s.classify(next)
		if rt == routeShared && nrt != routeShared {
			break
		}
		if rt == routePinned && nrt != routeShared && nrt != routePinned {
			break
		}
		if next.cmd == cmdMulti {
			multi = true
		}
	}
	return j
}

// payload returns the raw bytes of cmds, contiguous in the read buffer when
// possible (no copy), else gathered in scratch.
func (s *session) payload(cmds []command) []byte {
	first, last := &cmds[0], &cmds[len(cmds)-1]
	if first.off >= 0 && last.off >= 0 && last.off+len(last.Raw)-first.off == s.rawLen(cmds) {
		return s.rd.buf[first.off : last.off+len(last.Raw)]
	}
	s.scratch = s.scratch[:0]
	for k := range cmds {
		s.scratch = append(s.scratch, cmds[k].Raw...)
	}
	return s.scratch
}

func (s *session) rawLen(cmds []command) int {
	n := 0
	for k := range cmds {
		if cmds[k].off < 0 {
			return -1
		}
		n += len(cmds[k].Raw)
	}
	return n
}

// do sends cmds on conn and appends their replies (or errors) to out.
func (s *session) do(conn *upstream.Conn, cmds []command, timeout time.Duration, ends bool) error {
	return s.doRun(conn, cmds, s.payload(cmds), timeout, ends)
}

// doRun is do with the payload of cmds already gathered.
func (s *session) doRun(conn *upstream.Conn, cmds []command, payload []byte, timeout time.Duration, ends bool) error {
	if !s.planned || !anyPlanned(cmds) {
		return s.doPayload(conn, payload, len(cmds), timeout, ends)
	}
	start := len(s.out)
	err := s.doPayload(conn, payload, replies(cmds), timeout, true)
	s.afterWrites(cmds, start, err)
	return err
}

func anyPlanned(cmds []command) bool {
	for k := range cmds {
		if c := &cmds[k]; c.hidden > 0 || c.wrap || c.evHi > c.evLo {
			return true
		}
	}
	return false
}

// doPayload sends n commands already encoded in payload on conn and appends
// their replies (or errors) to out.
func (s *session) doPayload(conn *upstream.Conn, payload []byte, n int, timeout time.Duration, ends bool) error {
	call := s.call
	call.Out = s.out
	call.MaxOut = s.srv.opts.MaxOutputBytes
	call.Budget = s.srv.budget
	call.N = n
	call.Timeout = timeout
	cl := s.srv.opts.Cluster
	if ends || cl != nil {
		if s.ends == nil {
			s.ends = make([]int, 0, 16)
		}
		call.Ends = s.ends[:0]
	} else {
		call.Ends = nil
	}
	start := len(s.out)
	t0 := obs.Now() // observed below unless the command blocks (timeout > 0): a wait is not latency
	if err := conn.Do(call, payload); err != nil {
		s.out = call.Out
		s.failRest(n, 0, err)
		return err
	}
	s.out = call.Out
	if timeout == 0 {
		s.srv.Stats.Upstream.Since(s.id, t0)
	}
	if cl != nil && call.Got > 0 && conn.IsShared() {
		s.out = cl.FollowRedirects(s.out, start, call.Ends[:call.Got], payload, s.proto, conn.Pool(), s.srv.opts.MaxOutputBytes)
	}
	s.outHeld += call.Held // the reply buffer's growth, given back when out shrinks
	call.Held = 0
	if ends {
		s.ends = call.Ends
	}
	if call.Err != nil {
		s.failRest(n, call.Got, call.Err)
	}
	return call.Err
}

// node is the pool of the node that holds the session's workspace.
func (s *session) node() *upstream.Pool {
	if c := s.srv.opts.Cluster; c != nil {
		return c.Node(upstream.TagSlot(s.ident.Workspace))
	}
	return s.srv.pool
}

// route finds the node of cmds[0] in a cluster (upstream's CommandNode) and
// how many commands from the first go to it together.
func (s *session) route(cmds []command) (int, *upstream.Pool) {
	cl, def := s.srv.opts.Cluster, s.node()
	first, alone := cl.CommandNode(cmds[0].sub, cmds[0].Args, &s.racc, def)
	if alone {
		return 1, first // its slot is being moved: by itself
	}
	for j := 1; j < len(cmds); j++ {
		if n, a := cl.CommandNode(cmds[j].sub, cmds[j].Args, &s.racc, def); n != first || a {
			return j, first
		}
	}
	return len(cmds), first
}

// failRest answers the commands of a failed call that got no reply.
func (s *session) failRest(n, got int, err error) {
	s.srv.Stats.UpstreamErrors.Add(1)
	if errors.Is(err, upstream.ErrBudget) {
		s.srv.Stats.BudgetCuts.Add(1)
		s.log.Warn("memory budget exhausted: client pulling a large reply disconnected", zap.Int64("client", s.id),
			zap.Int64("budget_used", s.srv.budget.Used()), zap.Int64("budget", s.srv.budget.Limit()))
		s.out = wire.AppendError(s.out[:0], wire.ErrBudgetReply)
		s.quit = true
		return
	}
	if errors.Is(err, upstream.ErrOutputFull) {
		s.srv.Stats.SlowConsumers.Add(1)
		s.log.Info("client output limit reached; disconnecting", zap.Int64("client", s.id))
		s.out = wire.AppendError(s.out[:0], wire.ErrOutputLimit)
		s.quit = true
		return
	}
	msg := wire.CallError(err)
	for k := got; k < n; k++ {
		s.out = wire.AppendError(s.out, msg)
	}
}

func (s *session) forwardShared(cmds []command) {
	node := s.node()
	if s.srv.opts.Cluster != nil {
		var j int
		if j, node = s.route(cmds); j < len(cmds) {
			// Keys on different nodes (an admin, or keyspace mode off):
			// each run of commands goes to its own node, in order.
			s.forwardShared(cmds[:j])
			s.forwardShared(cmds[j:])
			return
		}
	}
	payload := s.payload(cmds)
	if (s.bulky > 0 || len(payload) >= bulkBytes) && !(s.planned && anyPlanned(cmds)) && s.srv.opts.Cluster == nil {
		if s.bulky <= 0 {
			s.bulky = bulkBatches
		}
		s.forwardBulk(cmds, payload)
		return
	}
	conn := node.Shared(s.proto)
	if conn == nil {
		s.srv.Stats.UpstreamErrors.Add(1)
		for range cmds {
			s.out = wire.AppendError(s.out, wire.TryAgainDown(node))
		}
		return
	}
	start := len(s.out)
	s.doRun(conn, cmds, payload, 0, false)
	if len(s.out)-start >= bulkBytes {
		s.bulky = bulkBatches
	}
}

// dedicated takes a dedicated upstream connection for this session,
// counted against its workspace (admins are not counted; ws is "" then).
// On failure it returns the error to answer.
func (s *session) dedicated(ping bool) (c *upstream.Conn, ws string, msg string) {
	if !s.takeDedicated(&ws) {
		return nil, "", wire.ErrTryAgainDedicated
	}
	c, err := s.node().Dedicated(s.proto, ping) // no PING for SCRIPT KILL and friends: Redis may not answer one until they run
	if err != nil {
		s.giveDedicated(ws)
		return nil, "", wire.TryAgainDown(s.node())
	}
	return c, ws, ""
}

// takeDedicated counts one more dedicated connection for the session's
// workspace; false at upstream.max_dedicated_per_workspace.
func (s *session) takeDedicated(ws *string) bool {
	if s.ident.Role == policy.RoleAdmin {
		*ws = ""
		return true
	}
	*ws = "w:" + s.ident.Workspace
	if !s.srv.ded.Take(*ws) {
		s.srv.Stats.DedicatedLimit.Add(1)
		return false
	}
	return true
}

// giveDedicated ends what takeDedicated counted.
func (s *session) giveDedicated(ws string) {
	if ws != "" {
		s.srv.ded.Give(ws)
	}
}

// pin acquires the session's dedicated connection; "" or the error to
// answer.
func (s *session) pin() string {
	if s.pinned != nil {
		return ""
	}
	c, ws, msg := s.dedicated(true)
	if msg != "" {
		return msg
	}
	s.pinned, s.pinWS = c, ws
	s.srv.Stats.Pinned.Add(1)
	return ""
}

// unpin gives the dedicated connection back; clean says it carries no state.
func (s *session) unpin(clean bool) {
	s.pinned.Pool().Release(s.pinned, s.proto, clean)
	s.pinned = nil
	s.giveDedicated(s.pinWS)
	s.pinWS = ""
	s.inMulti, s.watching, s.sticky = false, false, false
	s.dreq.EndTx()
	s.db = s.node().DB()
	s.srv.Stats.Pinned.Add(-1)
}

func (s *session) forwardPinned(cmds []command) {
	if msg := s.pin(); msg != "" {
		for range cmds {
			s.out = wire.AppendError(s.out, msg)
		}
		return
	}
	start := len(s.out)
	err := s.do(s.pinned, cmds, 0, true)
	// Follow the connection state through the replies that arrived.
	prev, shift := start, 0
	for k := 0; k < len(s.ends) && k < len(cmds); k++ {
		end := s.ends[k] + shift
		if s.inMulti && isTxEnd(cmds[k].cmd) && len(s.out) > prev && s.out[prev] != '-' {
			// EXEC's reply: queued domain commands finish theirs.
			n := s.finishExec(prev, end)
			shift, end = shift+n-end, n
		}
		reply := s.out[prev:end]
		prev = end
		s.track(&cmds[k], reply)
	}
	if err != nil {
		s.unpin(false)
		return
	}
	if !s.inMulti && !s.watching && !s.sticky && s.db == s.node().DB() {
		s.unpin(true)
	}
}

// track updates the pinned state from one command and its reply.
func (s *session) track(c *command, reply []byte) {
	ok := len(reply) > 0 && reply[0] != '-'
	switch cmd := c.cmd; {
	case s.inMulti:
		switch {
		case isTxEnd(cmd):
			s.inMulti, s.watching = false, false
			s.txItems, s.txFix = s.txItems[:0], false
			s.dreq.EndTx()
		case ok && len(reply) > 0 && reply[0] == '+':
			s.queued(c)
			if connChanging(cmd) {
				s.sticky = true
			}
		case connChanging(cmd):
			if ok {
				s.sticky = true
			}
		}
	case cmd == cmdMulti:
		s.inMulti = ok
		s.txItems, s.txFix = s.txItems[:0], false
		s.dreq.EndTx()
	case cmd == cmdWatch:
		s.watching = s.watching || ok
	case cmd == cmdUnwatch:
		if ok {
			s.watching = false
		}
	case isTxEnd(cmd):
		// Outside MULTI both are errors that leave WATCH in place.
		if ok {
			s.watching = false
		}
	case cmd == cmdSelect:
		if ok {
			s.db, _ = wire.ParseInt(c.Args[1])
		}
	case cmd == cmdClient:
		// CLIENT NO-EVICT / NO-TOUCH set state on the pinned connection.
		if ok && (c.sub == cmdNoEvict || c.sub == cmdNoTouch) {
			s.sticky = true
		}
	}
}

// forwardOwn runs one command on a dedicated connection of its own: the
// commands that end what occupies Redis (SCRIPT KILL, FUNCTION KILL,
// CLIENT UNPAUSE) must not queue behind the commands they release.
func (s *session) forwardOwn(c *command) {
	conn, ws, msg := s.dedicated(false)
	if msg != "" {
		s.out = wire.AppendError(s.out, msg)
		return
	}
	err := s.do(conn, []command{*c}, 0, false)
	conn.Pool().Release(conn, s.proto, err == nil)
	s.giveDedicated(ws)
}

// forwardBlocking runs one blocking command on a connection of its own, so
// it stalls nobody else, while watching for the client to leave (Redis would
// otherwise hand a popped element to a client that is gone).
func (s *session) forwardBlocking(c *command) {
	s.blocked, s.ticket = true, s.srv.blockSeq.Take() // blocking commands go out in the order read (internal/seq)
	defer s.srv.blockSeq.Finish(s.ticket)
	if s.sentBlocking == nil {
		s.sentBlocking = func() { s.srv.blockSeq.Finish(s.ticket) }
	}
	conn := s.pinned
	own := conn == nil
	if own {
		var ws, msg string
		if conn, ws, msg = s.dedicated(true); msg != "" {
			s.out = wire.AppendError(s.out, msg)
			return
		}
		defer s.giveDedicated(ws)
	}
	b, msg := s.srv.locks.BlockOn(s.srv.policy.Load(), c.sub, c.Args, conn, conn.Pool()) // a lock taken while it waits unblocks it
	if msg != "" {
		s.out = wire.AppendError(s.out, msg)
		if own {
			conn.Pool().Release(conn, s.proto, true)
		}
		return
	}
	defer b.Done()
	// Replies so far reach the client before it blocks, as with Redis.
	if !s.flush() {
		if own {
			conn.Close()
		}
		s.quit = true
		return
	}
	if c.cmd == cmdWait {
		// WAIT counts replicas from the connection's last propagated
		// write; this client's writes went on the shared connection, so
		// propagate one here, after them (PUBLISH is replicated).
		conn.Query("PUBLISH", "agentproxy:wait", "")
	}
	w, mark := clientwatch.Start(s.nc, s.srv.opts.MaxRequestBytes, conn.Close), len(s.out)
	s.srv.blockSeq.Wait(s.ticket, blockOrderWait)
	s.call.Sent = s.sentBlocking
	err := s.do(conn, []command{*c}, keyspace.BlockTimeout(c.cmd, c.Args, max(s.node().ReadTimeout(), minBlockMargin)), false)
	data, gone := w.Stop(s.stopping.Load)
	s.rd.inject(data)
	s.out = b.FixReply(s.out, mark)
	if own {
		conn.Pool().Release(conn, s.proto, err == nil && !gone)
	} else if err != nil {
		s.unpin(false)
	}
	if gone {
		s.quit = true
	}
}
