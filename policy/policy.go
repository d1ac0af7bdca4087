// Package policy decides, for each command a client sends, whether the
// proxy forwards it: the role of the user (agent, readonly, admin), the
// workspace of the connection and the key grammar. A Policy is immutable
// once built; a config reload builds a new one and swaps it in.
package policy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/agentproxy/agentproxy/keyspace"
)

// Role is what a user may do.
type Role uint8

// Roles.
const (
	RoleAgent    Role = iota // read and write inside its workspace
	RoleReadonly             // read inside its workspace
	RoleAdmin                // everything, everywhere
)

// ParseRole reads "agent", "readonly" or "admin".
func ParseRole(s string) (Role, bool) {
	switch s {
	case "agent":
		return RoleAgent, true
	case "readonly":
		return RoleReadonly, true
	case "admin":
		return RoleAdmin, true
	}
	return 0, false
}

func (r Role) String() string {
	switch r {
	case RoleReadonly:
		return "readonly"
	case RoleAdmin:
		return "admin"
	}
	return "agent"
}

// Mode is how key-grammar violations are handled.
type Mode uint8

// Modes.
const (
	Enforce Mode = iota // refuse
	Warn                // forward, log and count
	Off                 // pure proxy
)

// ParseMode reads "enforce", "warn" or "off".
func ParseMode(s string) (Mode, bool) {
	switch s {
	case "enforce":
		return Enforce, true
	case "warn":
		return Warn, true
	case "off":
		return Off, true
	}
	return 0, false
}

// User is a configured identity.
type User struct {
	Name       string
	hash       [32]byte // sha256 of the password
	Workspaces []string // allowed; "*" allows any
	Role       Role
}

// NewUser builds a user from its configured hex SHA-256 password hash.
func NewUser(name, passwordSHA256 string, workspaces []string, role Role) (*User, bool) {
	b, err := hex.DecodeString(passwordSHA256)
	if err != nil || len(b) != 32 {
		return nil, false
	}
	u := &User{Name: name, Workspaces: workspaces, Role: role}
	copy(u.hash[:], b)
	return u, true
}

// Check reports whether pass is the user's password, in constant time.
func (u *User) Check(pass []byte) bool {
	sum := sha256.Sum256(pass)
	return subtle.ConstantTimeCompare(sum[:], u.hash[:]) == 1
}

// Allows reports whether the user may use workspace ws.
func (u *User) Allows(ws string) bool {
	for _, w := range u.Workspaces {
		if w == ws || w == "*" {
			return true
		}
	}
	return false
}

// Identity is who a connection is: its user (nil for the unauthenticated
// loopback default), role and current workspace.
type Identity struct {
	User      *User
	Role      Role
	Workspace string
}

// Name is the user name for messages and logs.
func (id *Identity) Name() string {
	if id.User == nil {
		return "default"
	}
	return id.User.Name
}

// Policy is the compiled runtime policy.
type Policy struct {
	Grammar      *keyspace.Grammar
	Mode         Mode
	AllowScripts bool
	Users        map[string]*User
	DefaultWS    string
	DefaultRole  Role
}

// Verdict is the outcome of a check.
type Verdict uint8

// Verdicts.
const (
	Allow  Verdict = iota
	Refuse         // answer with the message, send nothing
	WarnOK         // forward, but count and log the violation (warn mode)
)

// Check decides about one command with its extracted access. msg is the
// wire error (for Refuse) or the violation (for WarnOK), built only then.
func (p *Policy) Check(id *Identity, c *keyspace.Command, args [][]byte, acc *keyspace.Access) (Verdict, string) {
	if id.Role == RoleAdmin {
		return Allow, ""
	}
	if c.Has(keyspace.Admin) {
		return Refuse, "NOPERM '" + c.Name + "' is for admin users only; user '" + id.Name() + "' has role " + id.Role.String()
	}
	if c.Has(keyspace.Script) && !p.AllowScripts {
		return Refuse, "NOPERM '" + c.Name + "' is off for agents (a script can touch keys it did not declare); use the domain commands, or set keyspace.allow_scripts"
	}
	if id.Role == RoleReadonly && (c.Has(keyspace.Write) || acc.Writes || c.Has(keyspace.Script) || c.Name == "publish" || c.Name == "spublish") {
		return Refuse, "NOPERM user '" + id.Name() + "' is read-only; '" + c.Name + "' writes"
	}
	if p.Mode == Off {
		return Allow, ""
	}
	g, ws := p.Grammar, id.Workspace
	for _, i := range acc.Keys {
		switch g.Key(args[i], ws) {
		case keyspace.Outside:
			return p.violation("NOPERM key '" + quote(args[i]) + "' is outside workspace '" + ws + "'; keys must start with " + g.WorkspacePrefix(ws))
		case keyspace.BadKind:
			return p.violation("BADKEY key '" + quote(args[i]) + "' does not follow the key grammar: use " + g.WorkspacePrefix(ws) + "<kind>[:<rest>] with kind one of " + g.Kinds())
		}
	}
	for _, i := range acc.Channels {
		if c.Name == "unsubscribe" || c.Name == "sunsubscribe" {
			continue // leaving a channel is always allowed
		}
		switch g.Channel(args[i], ws) {
		case keyspace.Outside:
			return p.violation("NOPERM channel '" + quote(args[i]) + "' is outside workspace '" + ws + "'; channels must start with " + g.WorkspacePrefix(ws) + "events")
		case keyspace.BadKind:
			return p.violation("BADKEY channel '" + quote(args[i]) + "' does not follow the grammar: use " + g.WorkspacePrefix(ws) + "events[:<rest>]")
		}
	}
	if len(acc.Patterns) == 0 {
		switch {
		case c.Name == "pubsub|channels" || c.Name == "pubsub|shardchannels":
			return p.violation("NOPERM '" + c.Name + "' without a pattern lists every workspace's channels; add the pattern " + g.WorkspacePrefix(ws) + "events*")
		case c.Name == "client|tracking" && hasArg(args, "bcast"):
			return p.violation("NOPERM CLIENT TRACKING BCAST without PREFIX reports the keys of every workspace; add PREFIX " + g.WorkspacePrefix(ws))
		}
	}
	for _, i := range acc.Patterns {
		if c.Name == "punsubscribe" {
			continue
		}
		if g.Pattern(args[i], ws) != keyspace.OK {
			return p.violation("NOPERM pattern '" + quote(args[i]) + "' of '" + c.Name + "' reaches outside workspace '" + ws + "'; patterns must start with " + g.WorkspacePrefix(ws))
		}
	}
	return Allow, ""
}

// hasArg reports whether an option word is among the arguments.
func hasArg(args [][]byte, word string) bool {
	for _, a := range args[1:] {
		if strings.EqualFold(string(a), word) {
			return true
		}
	}
	return false
}

func (p *Policy) violation(msg string) (Verdict, string) {
	if p.Mode == Warn {
		return WarnOK, msg
	}
	return Refuse, msg
}

// quote shortens a name for an error message and keeps it on one line.
func quote(b []byte) string {
	s := string(b)
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// UnknownCommand is Redis's own reply to a command it does not know, so a
// command unknown to the proxy's table is refused exactly as Redis would.
func UnknownCommand(args [][]byte) string {
	// Redis formats with C's %.*s: arguments stop at a NUL byte and are
	// cut to what is left of 128 bytes; other bytes are sent unchanged
	// (not as UTF-8), except CR and LF, which become spaces.
	b := append(make([]byte, 0, 192), "ERR unknown command '"...)
	b = appendCString(b, args[0], 128)
	b = append(b, "', with args beginning with: "...)
	start := len(b)
	for i := 1; i < len(args) && len(b)-start < 128; i++ {
		b = append(b, '\'')
		b = appendCString(b, args[i], 128-(len(b)-1-start))
		b = append(b, "' "...)
	}
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}

// appendCString appends s as printf's "%.*s" prints it: up to the first NUL
// byte and at most max bytes.
func appendCString(b, s []byte, max int) []byte {
	for i, c := range s {
		if c == 0 {
			s = s[:i]
			break
		}
	}
	if len(s) > max {
		s = s[:max]
	}
	return append(b, s...)
}

// WrongArity is Redis's reply to a known command with the wrong number of
// arguments.
func WrongArity(name string) string {
	if name == "exec" {
		// Redis answers every EXEC it rejects with EXECABORT (and leaves
		// MULTI), in or out of a transaction.
		return "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"
	}
	return "ERR wrong number of arguments for '" + name + "' command"
}

// Config is what New needs from the configuration.
type Config struct {
	Prefix       string
	Kinds        []string
	Mode         string
	AllowScripts bool
	DefaultWS    string
	DefaultRole  string
	Users        []UserConfig
}

// UserConfig is one configured user.
type UserConfig struct {
	Name, PasswordSHA256, Role string
	Workspaces                 []string
}

// New compiles a policy. The configuration is assumed validated; anything
// still wrong is reported.
func New(c Config) (*Policy, error) {
	mode, ok := ParseMode(c.Mode)
	if !ok {
		return nil, errors.New("keyspace.mode: must be enforce, warn or off")
	}
	p := &Policy{Grammar: keyspace.NewGrammar(c.Prefix, c.Kinds), Mode: mode, AllowScripts: c.AllowScripts,
		Users: map[string]*User{}, DefaultWS: c.DefaultWS, DefaultRole: RoleAgent}
	if c.DefaultRole != "" {
		if p.DefaultRole, ok = ParseRole(c.DefaultRole); !ok {
			return nil, errors.New("keyspace.default_role: must be agent, readonly or admin")
		}
	}
	for _, uc := range c.Users {
		role, ok := ParseRole(uc.Role)
		if !ok {
			return nil, errors.New("users: bad role for " + uc.Name)
		}
		u, ok := NewUser(uc.Name, uc.PasswordSHA256, uc.Workspaces, role)
		if !ok {
			return nil, errors.New("users: bad password_sha256 for " + uc.Name)
		}
		p.Users[uc.Name] = u
	}
	return p, nil
}

// FirstWorkspace is the workspace a user starts in: its first concrete one,
// else the default.
func (p *Policy) FirstWorkspace(u *User) string {
	for _, w := range u.Workspaces {
		if w != "*" {
			return w
		}
	}
	return p.DefaultWS
}
