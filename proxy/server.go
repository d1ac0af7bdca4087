// Package proxy serves Redis clients: it reads their pipelined requests,
// answers what the proxy owns (PING, HELLO, AUTH, CLIENT SETNAME, ...),
// forwards the rest as raw RESP over shared upstream connections, and pins a
// client to a dedicated connection while it holds connection state
// (MULTI/WATCH, blocking commands, subscriptions).
//
// Goroutines: Serve's accept loop (exits when the listener closes); one per
// client session (exits when the client leaves, on a protocol error, or on
// shutdown); while a client waits in a blocking command, one watcher that
// notices the client leaving (joined before the session goes on); in tunnel
// mode (subscriptions, MONITOR), one pump copying upstream frames to the
// client (exits when either side closes; the session closes both).
package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/domain"
	"github.com/agentproxy/agentproxy/fencing"
	"github.com/agentproxy/agentproxy/internal/membudget"
	"github.com/agentproxy/agentproxy/internal/obs"
	"github.com/agentproxy/agentproxy/internal/quota"
	"github.com/agentproxy/agentproxy/internal/rawio"
	"github.com/agentproxy/agentproxy/internal/seq"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/policy"
	"github.com/agentproxy/agentproxy/upstream"
)

// Options bound what one client may cost.
type Options struct {
	MaxClients      int
	MaxRequestBytes int
	MaxArgs         int
	MaxPipeline     int
	MaxOutputBytes  int
	// ClientWriteTimeout cuts off a client that stops reading its replies
	// (a slow consumer).
	ClientWriteTimeout time.Duration
	// IdleTimeout closes clients silent for this long; 0 keeps them.
	IdleTimeout time.Duration
	// RequireAuth makes loopback clients authenticate too.
	RequireAuth bool
	// AuthMaxFailures and AuthWindow rate-limit failed AUTH per address.
	AuthMaxFailures int
	AuthWindow      time.Duration
	// Disabled lists the domain command families switched off in config
	// ("cache", "todos", "files", "coord").
	Disabled map[string]bool
	// Embedded says the upstream is the in-process miniredis store, whose
	// gaps the proxy papers over (COMMAND DOCS).
	Embedded bool
	// ReadBufferSize is the initial per-client read buffer; it grows for
	// large requests and shrinks back when idle.
	ReadBufferSize int
	// MemoryBudget bounds the bytes held for incomplete requests and
	// undelivered replies across all clients (0: membudget.Default()).
	MemoryBudget int64
	// Locks is the fencing registry of the locks that may guard plain
	// writes (its Watch runs elsewhere); nil: a new, never-synced one
	// (every guarded write takes the script).
	Locks *fencing.Registry
	// Cluster routes by hash slot (redis-cluster:// upstreams); nil for
	// one node.
	Cluster *upstream.Cluster
	// OnWrite, when set, receives the keys of evented kinds written by
	// acknowledged plain writes (the event emitter).
	OnWrite func(fencing.Written)
	// MaxDedicatedPerWorkspace bounds the dedicated upstream connections
	// (transactions, blocking commands, subscriptions, bulk transfers) the
	// clients of one workspace hold at once, so one workspace cannot use
	// up Redis's connections; admins are not counted. 0: no limit.
	MaxDedicatedPerWorkspace int
	// UpstreamKind names the upstream in INFO: embedded, standalone, sentinel or cluster.
	UpstreamKind string
	// Control serves PROXY CONFIG GET and PROXY RELOAD (nil: they answer
	// that there is nothing to reload).
	Control Control
	// Domain is what the domain commands share (their options, counters
	// and state); New fills in the pool and the output limit. Nil: a new
	// one with the defaults.
	Domain *domain.Env
}

// DefaultOptions returns the defaults documented in config.example.toml.
func DefaultOptions() Options {
	return Options{
		MaxClients:         10000,
		MaxRequestBytes:    64 << 20,
		MaxArgs:            1 << 20,
		MaxPipeline:        1024,
		MaxOutputBytes:     256 << 20,
		ClientWriteTimeout: 30 * time.Second,
		ReadBufferSize:     1024,
	}
}

// Stats are the server's counters and latency histograms.
type Stats = obs.Stats

// Server accepts clients and runs a session for each.
type Server struct {
	opts Options
	pool *upstream.Pool
	log  *zap.Logger

	Stats Stats

	nextID  atomic.Int64
	closing atomic.Bool

	policy   atomic.Pointer[policy.Policy]
	limiter  *policy.AuthLimiter
	rates    policy.RateLimiter
	lastWarn atomic.Int64

	env    *domain.Env
	locks  *fencing.Registry
	budget *membudget.Budget
	bulk   chan struct{} // slots of the bulk lane (bulk.go)
	// blockSeq orders blocking commands as read; blockOrderWait bounds a wait.
	blockSeq seq.Sequencer
	ded      quota.Quota // dedicated connections held per workspace

	mu       sync.Mutex
	sessions map[*session]struct{}
	lns      []net.Listener
	wg       sync.WaitGroup
}

// New returns a server forwarding to pool under policy p.
func New(opts Options, pool *upstream.Pool, p *policy.Policy, log *zap.Logger) *Server {
	d := DefaultOptions()
	if opts.MaxClients <= 0 {
		opts.MaxClients = d.MaxClients
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = d.MaxRequestBytes
	}
	if opts.MaxArgs <= 0 {
		opts.MaxArgs = d.MaxArgs
	}
	if opts.MaxPipeline <= 0 {
		opts.MaxPipeline = d.MaxPipeline
	}
	if opts.MaxOutputBytes <= 0 {
		opts.MaxOutputBytes = d.MaxOutputBytes
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = d.ReadBufferSize
	}
	locks := opts.Locks
	if locks == nil {
		locks = fencing.NewRegistry()
	}
	env := opts.Domain
	if env == nil {
		env = &domain.Env{}
	}
	env.Pool, env.Cluster, env.MaxOutput = pool, opts.Cluster, opts.MaxOutputBytes
	if env.Files.ChunkSize <= 0 {
		env.Files.ChunkSize = 256 << 10
	}
	if env.Files.MaxBytes <= 0 {
		env.Files.MaxBytes = 1 << 30
	}
	if env.Files.UploadTTL <= 0 {
		env.Files.UploadTTL = time.Hour
	}
	if opts.MemoryBudget <= 0 {
		opts.MemoryBudget = membudget.Default()
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{opts: opts, pool: pool, log: log, sessions: make(map[*session]struct{}), budget: membudget.New(opts.MemoryBudget), env: env, locks: locks,
		bulk:    make(chan struct{}, bulkSlots),
		ded:     quota.Quota{Max: opts.MaxDedicatedPerWorkspace},
		limiter: policy.NewAuthLimiter(opts.AuthMaxFailures, opts.AuthWindow)}
	s.policy.Store(p)
	return s
}

// SetPolicy swaps the policy; sessions use it from their next batch.
func (s *Server) SetPolicy(p *policy.Policy) { s.policy.Store(p) }

// warnSampled logs a warn-mode violation at most once a second.
func (s *Server) warnSampled(msg, user string) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(time.Second) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("keyspace violation forwarded (warn mode)", zap.String("user", user), zap.String("violation", msg),
		zap.Int64("warned_total", s.Stats.Warned.Load()))
}

// Budget is the proxy-wide memory budget.
func (s *Server) Budget() *membudget.Budget { return s.budget }

// Domain is what the domain commands share (their counters, for metrics).
func (s *Server) Domain() *domain.Env { return s.env }

// Pool is the upstream the server forwards to.
func (s *Server) Pool() *upstream.Pool { return s.pool }

// Serve accepts clients on ln until ln is closed or Shutdown is called.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off, as
				// net/http does, instead of spinning.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("delay", delay))
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.Stats.Accepted.Add(1)
		if s.Stats.Clients.Load() >= int64(s.opts.MaxClients) || s.closing.Load() {
			s.Stats.Rejected.Add(1)
			nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			nc.Write([]byte("-" + wire.ErrMaxClients + "\r\n"))
			nc.Close()
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		sess := newSession(s, rawio.Wrap(nc))
		s.mu.Lock()
		s.sessions[sess] = struct{}{}
		s.mu.Unlock()
		s.Stats.Clients.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sess.serve()
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
			s.Stats.Clients.Add(-1)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, lets every session finish the batch it is
// running (replies are flushed), then closes the sessions. Sessions still
// busy when ctx ends (a client blocked in BLPOP 0) are closed hard.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for _, ln := range s.lns {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.stop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for sess := range s.sessions {
			sess.kill()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// Clients returns the number of connected clients.
func (s *Server) Clients() int { return int(s.Stats.Clients.Load()) }
