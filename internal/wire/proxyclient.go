package wire

import (
	"sort"
	"strconv"
	"time"
)

// ProxyClient is a client connection as PROXY CLIENTS lists it: what its
// session publishes when it changes (the session's own fields are not read
// from other goroutines).
type ProxyClient struct {
	ID              int64
	Addr, LAddr     string
	Name, User      string
	Role, Workspace string
	DB, Proto       int
	Pinned, Tunnel  bool
	// Authed: past AUTH (or trusted on loopback); Anonymous: without a
	// configured user (the "default" identity).
	Authed, Anonymous bool
}

// VisibleTo says whether me (not an admin) may see c in PROXY CLIENTS:
// connections of the same configured user; for anonymous clients, which
// share one name, those in the same workspace.
func (c *ProxyClient) VisibleTo(me *ProxyClient) bool {
	return c.Authed && me.Authed && c.User == me.User && c.Anonymous == me.Anonymous &&
		(!c.Anonymous || c.Workspace == me.Workspace)
}

// AppendProxyClient appends c as a line of PROXY CLIENTS: CLIENT LIST's
// format, with the proxy's view of the client (role, workspace, whether it
// holds a dedicated upstream connection).
func AppendProxyClient(b []byte, c *ProxyClient, ageSeconds, idleSeconds, cmds int64) []byte {
	b = append(b, "id="...)
	b = strconv.AppendInt(b, c.ID, 10)
	b = append(b, " addr="+c.Addr+" laddr="+c.LAddr+" name="+c.Name+" user="+c.User+" role="+c.Role+
		" workspace="+c.Workspace+" db="...)
	b = strconv.AppendInt(b, int64(c.DB), 10)
	b = append(b, " resp="...)
	b = strconv.AppendInt(b, int64(c.Proto), 10)
	b = append(b, " age="...)
	b = strconv.AppendInt(b, ageSeconds, 10)
	b = append(b, " idle="...)
	b = strconv.AppendInt(b, idleSeconds, 10)
	b = append(b, " cmds="...)
	b = strconv.AppendInt(b, cmds, 10)
	b = append(b, " pinned="...)
	b = strconv.AppendBool(b, c.Pinned)
	b = append(b, " tunnel="...)
	b = strconv.AppendBool(b, c.Tunnel)
	return append(b, '\n')
}

// ClientRow is one client of PROXY CLIENTS with its activity.
type ClientRow struct {
	Client *ProxyClient
	Start  time.Time
	Last   int64 // monotonic nanoseconds (obs.Now) of its last command; 0: none yet
	Cmds   int64
}

// AppendProxyClients appends the lines of rows, by client id; now and
// mono are the time and the monotonic clock of Last.
func AppendProxyClients(b []byte, rows []ClientRow, now time.Time, mono int64) []byte {
	sort.Slice(rows, func(i, j int) bool { return rows[i].Client.ID < rows[j].Client.ID })
	for _, r := range rows {
		idle := now.Sub(r.Start)
		if r.Last != 0 {
			idle = time.Duration(mono - r.Last)
		}
		b = AppendProxyClient(b, r.Client, int64(now.Sub(r.Start)/time.Second), int64(idle/time.Second), r.Cmds)
	}
	return b
}
