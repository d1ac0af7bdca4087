package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Mode is how the upstream is deployed.
type Mode int

// The modes.
const (
	Standalone Mode = iota
	SentinelMode
	ClusterMode
)

// Target is a parsed upstream URL: one node, a Sentinel-watched master or a
// Cluster.
type Target struct {
	Mode Mode
	// Node is the template for every data node's connections: credentials,
	// TLS, database, timeouts (Addr is the node for Standalone).
	Node Options
	// Seeds are the sentinels (SentinelMode) or the cluster nodes to
	// discover the topology from (ClusterMode).
	Seeds []string
	// Master is the name of the master Sentinel watches.
	Master string
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (query parameters sentinel_username, sentinel_password).
	SentinelUsername, SentinelPassword string
}

// Redact hides the passwords of an upstream URL, for logs, errors and
// PROXY CONFIG GET: the user information before the host and every query
// parameter whose name holds "pass" (sentinel_password). It reads the text
// only, so it also works on a URL that does not parse.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = "***" + rest[at:]
	}
	out := scheme + "://" + rest
	if hasQuery {
		parts := strings.Split(query, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			if dk, err := url.QueryUnescape(k); err != nil || strings.Contains(strings.ToLower(dk), "pass") {
				parts[i] = k + "=***"
			}
		}
		out += "?" + strings.Join(parts, "&")
	}
	return out
}

// redactErr keeps a URL's passwords out of an error about it.
func redactErr(raw string, err error) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.ReplaceAll(strings.ReplaceAll(err.Error(), strconv.Quote(raw), strconv.Quote(Redact(raw))), raw, Redact(raw)))
}

// ParseTarget reads any upstream URL: those of ParseURL, and
// redis-sentinel://[user:pass@]host:port[,host:port...]/master-name[?sentinel_password=...&db=n]
// and redis-cluster://[user:pass@]host:port[,host:port...]; rediss-sentinel://
// and rediss-cluster:// use TLS to every node (and the sentinels).
func ParseTarget(raw string) (Target, error) {
	t, err := parseTarget(raw)
	return t, redactErr(raw, err)
}

func parseTarget(raw string) (Target, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	var t Target
	switch scheme {
	case "redis-sentinel", "rediss-sentinel":
		t.Mode = SentinelMode
	case "redis-cluster", "rediss-cluster":
		t.Mode = ClusterMode
	default:
		o, err := parseURL(raw)
		return Target{Mode: Standalone, Node: o}, err
	}
	if !ok {
		return t, fmt.Errorf("upstream url %q: missing hosts", raw)
	}
	// Reuse ParseURL for credentials, TLS and the defaults: the first host
	// stands in for the node.
	rest, query, _ := strings.Cut(rest, "?")
	rest, path, _ := strings.Cut(rest, "/")
	user, hosts := "", rest
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, hosts = rest[:i+1], rest[i+1:]
	}
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return t, fmt.Errorf("upstream url %q: %q is not host:port", raw, h)
		}
		t.Seeds = append(t.Seeds, h)
	}
	if len(t.Seeds) == 0 {
		return t, fmt.Errorf("upstream url %q: no host:port given", raw)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return t, fmt.Errorf("upstream url %q: %w", raw, err)
	}
	nodeScheme := "redis"
	if strings.HasPrefix(scheme, "rediss") {
		nodeScheme = "rediss"
	}
	db := q.Get("db")
	if t.Mode == SentinelMode {
		t.Master = path
		if t.Master == "" {
			return t, fmt.Errorf("upstream url %q: missing the master name (redis-sentinel://host:port,host:port/master-name)", raw)
		}
		t.SentinelUsername, t.SentinelPassword = q.Get("sentinel_username"), q.Get("sentinel_password")
	} else if path != "" {
		return t, fmt.Errorf("upstream url %q: a cluster has no database or path (got /%s)", raw, path)
	} else if db != "" && db != "0" {
		return t, fmt.Errorf("upstream url %q: a cluster has only database 0", raw)
	}
	node := nodeScheme + "://" + user + t.Seeds[0]
	if db != "" {
		node += "/" + db
	}
	if t.Node, err = ParseURL(node); err != nil {
		return t, fmt.Errorf("upstream url %q: %w", raw, err)
	}
	if t.Node.TLS != nil {
		t.Node.TLS.ServerName = "" // each node's own name
	}
	t.Node.Addr = ""
	for k := range q {
		if k != "db" && k != "sentinel_username" && k != "sentinel_password" {
			return t, fmt.Errorf("upstream url %q: unknown parameter %q", raw, k)
		}
	}
	return t, nil
}

// String describes the target for logs, without secrets.
func (t Target) String() string {
	switch t.Mode {
	case SentinelMode:
		return "sentinel " + strings.Join(t.Seeds, ",") + " master " + t.Master
	case ClusterMode:
		return "cluster " + strings.Join(t.Seeds, ",")
	}
	return t.Node.Addr
}

// controlOptions are go-redis options for the control plane at addr (a
// sentinel, or a cluster node asked for the topology), with the sentinels'
// credentials; the cluster's caller sets the nodes'.
func (t Target) controlOptions(addr string) *redis.Options {
	o := &redis.Options{Addr: addr, Username: t.SentinelUsername, Password: t.SentinelPassword,
		DialTimeout: t.Node.DialTimeout, ReadTimeout: t.Node.DialTimeout, WriteTimeout: t.Node.DialTimeout,
		MaxRetries: -1, PoolSize: 2, Protocol: 2, DisableIdentity: true}
	if t.Node.TLS != nil {
		cfg := t.Node.TLS.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
		o.TLSConfig = cfg
	}
	return o
}

// FollowSentinel keeps pool pointed at the master the sentinels name, until
// ctx ends: it asks them at once, then listens for +switch-master and asks
// again every second (a missed message, a sentinel that went away). It
// returns once the first answer came, or after the dial timeout for each
// sentinel, so the proxy starts with the master known when it can be.
func FollowSentinel(ctx context.Context, t Target, pool *Pool, log *zap.Logger) {
	first := make(chan struct{})
	go followSentinel(ctx, t, pool, log, first)
	select {
	case <-first:
	case <-time.After(time.Duration(len(t.Seeds)+1) * t.Node.DialTimeout):
	case <-ctx.Done():
	}
}

func followSentinel(ctx context.Context, t Target, pool *Pool, log *zap.Logger, first chan struct{}) {
	once := false
	found := func(addr string, why string) {
		if pool.SetAddr(addr) {
			log.Warn("master moved: following it", zap.String("master", t.Master), zap.String("addr", addr), zap.String("source", why))
		}
		if !once {
			once = true
			close(first)
		}
	}
	backoff := 10 * time.Millisecond
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(t.Seeds) {
		err := watchSentinel(ctx, t, t.Seeds[i], found)
		if ctx.Err() != nil {
			return
		}
		log.Info("sentinel unavailable; trying the next", zap.String("sentinel", t.Seeds[i]), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// watchSentinel follows the master through one sentinel until it fails.
func watchSentinel(ctx context.Context, t Target, addr string, found func(addr, why string)) error {
	sc := redis.NewSentinelClient(t.controlOptions(addr))
	defer sc.Close()
	ask := func() error {
		c, cancel := context.WithTimeout(ctx, t.Node.DialTimeout)
		defer cancel()
		hp, err := sc.GetMasterAddrByName(c, t.Master).Result()
		if err != nil {
			return err
		}
		if len(hp) != 2 {
			return fmt.Errorf("sentinel %s: master %q: unexpected reply %q", addr, t.Master, hp)
		}
		found(net.JoinHostPort(hp[0], hp[1]), "sentinel "+addr)
		return nil
	}
	if err := ask(); err != nil {
		return err
	}
	// +promoted-slave comes as soon as the chosen replica answers as a
	// master; +switch-master only when the failover is over, seconds later.
	sub := sc.Subscribe(ctx, "+switch-master", "+promoted-slave")
	defer sub.Close()
	msgs := sub.Channel(redis.WithChannelHealthCheckInterval(0))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return fmt.Errorf("sentinel %s: subscription closed", addr)
			}
			f := strings.Fields(m.Payload)
			switch {
			case m.Channel == "+switch-master" && len(f) == 5 && f[0] == t.Master:
				// "<name> <old-ip> <old-port> <new-ip> <new-port>"
				found(net.JoinHostPort(f[3], f[4]), "+switch-master from "+addr)
			case m.Channel == "+promoted-slave" && len(f) == 8 && f[0] == "slave" && f[5] == t.Master:
				// "slave <ip:port> <ip> <port> @ <name> <master-ip> <master-port>"
				found(net.JoinHostPort(f[2], f[3]), "+promoted-slave from "+addr)
			}
		case <-tick.C:
			if err := ask(); err != nil {
				return err
			}
		}
	}
}
