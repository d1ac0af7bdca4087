package policy

import (
	"github.com/agentproxy/agentproxy/internal/ratelimit"

	"strconv"
	"time"
)

// Limits are the rate limits ([ratelimit]): commands and request bytes per
// second, per user and per workspace (0: none), with Burst the time at the
// rate a bucket holds. They bind agents and read-only users; admins are
// operators and are not limited.
type Limits struct {
	UserCommands, UserBytes           float64
	WorkspaceCommands, WorkspaceBytes float64
	Burst                             time.Duration
	// On: any limit is set (the hot path checks only this).
	On bool
}

// NewLimits compiles the rate limits.
func NewLimits(userCmds, userBytes, wsCmds, wsBytes int, burst time.Duration) Limits {
	l := Limits{UserCommands: float64(userCmds), UserBytes: float64(userBytes),
		WorkspaceCommands: float64(wsCmds), WorkspaceBytes: float64(wsBytes), Burst: burst}
	l.On = userCmds > 0 || userBytes > 0 || wsCmds > 0 || wsBytes > 0
	return l
}

// RateLimited is the TRYAGAIN error of a command over a limit: what is
// limited, the configured rate, and how long until it would pass.
func RateLimited(who, name, what string, rate float64, wait time.Duration, key string) string {
	ms := wait.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return "TRYAGAIN rate limit: " + who + " '" + name + "' is over " + strconv.FormatFloat(rate, 'f', -1, 64) + " " + what +
		"/s; retry in " + strconv.FormatInt(ms, 10) + " ms (ratelimit." + key + ")"
}

// RateLimiter keeps the buckets of the rate limits: one per user and one
// per workspace. The zero value is ready.
type RateLimiter struct {
	users, workspaces ratelimit.Limiter
}

// Take charges cmds commands of bytes request bytes to the identity's
// user and workspace (the connection's current one). It returns "" when
// they pass, else the TRYAGAIN error, and then charges nothing.
func (r *RateLimiter) Take(l *Limits, id *Identity, cmds, bytes float64, now time.Time) string {
	if !l.On || id.Role == RoleAdmin {
		return ""
	}
	user := id.Name()
	if w := r.users.Take2(user, cmds, l.UserCommands, bytes, l.UserBytes, l.Burst, now); w.Wait > 0 {
		if w.First {
			return RateLimited("user", user, "commands", l.UserCommands, w.Wait, "user_commands")
		}
		return RateLimited("user", user, "bytes", l.UserBytes, w.Wait, "user_bytes")
	}
	if w := r.workspaces.Take2(id.Workspace, cmds, l.WorkspaceCommands, bytes, l.WorkspaceBytes, l.Burst, now); w.Wait > 0 {
		r.users.Give2(user, cmds, l.UserCommands, bytes, l.UserBytes)
		if w.First {
			return RateLimited("workspace", id.Workspace, "commands", l.WorkspaceCommands, w.Wait, "workspace_commands")
		}
		return RateLimited("workspace", id.Workspace, "bytes", l.WorkspaceBytes, w.Wait, "workspace_bytes")
	}
	return ""
}
