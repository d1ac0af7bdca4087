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
	"strconv"
	"strings"

	"github.com/agentproxy/agentproxy/internal/wire"
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
	// AllowCommands are the @dangerous commands config lets agents use.
	AllowCommands map[string]bool
	Users         map[string]*User
	DefaultWS     string
	DefaultRole   Role

	// Writes are the rules for plain writes (fencing, TTLs, events).
	Writes *Writes
	// AllowSelect lets agents SELECT another database (enforce mode).
	AllowSelect bool
	// Limits are the rate limits.
	Limits Limits

	kinds        []kindRule // by the grammar's kind index
	eventsDomain bool       // the workspace's event channel is the domain's
}

// kindRule is who may write a kind with raw commands.
type kindRule struct {
	name   string
	domain bool   // written only by the domain commands (and admins)
	secret bool   // raw reads refused too: it holds a lock's holder and token
	use    string // what to use instead, for messages
}

// Owner values of keyspace.owners.
const (
	OwnerDomain = "domain"
	OwnerAgents = "agents"
)

// domainUse names the domain commands that write each domain kind.
var domainUse = map[string]string{
	"lock":   "LOCK.ACQUIRE, LOCK.EXTEND or LOCK.RELEASE (LOCK.INFO reads it)",
	"fence":  "LOCK.ACQUIRE (fencing tokens come from this counter, which never goes backwards; LOCK.INFO reads it)",
	"files":  "FILE.WRITE, FILE.EDIT, FILE.APPEND, FILE.DEL or FILE.BEGIN/CHUNK/COMMIT",
	"todos":  "TODO.REPLACE, TODO.ADD, TODO.UPDATE, TODO.CLAIM or TODO.REMOVE",
	"todo":   "TODO.REPLACE, TODO.ADD, TODO.UPDATE, TODO.CLAIM or TODO.REMOVE",
	"events": "nothing: events come from writes (EVENTS.READ reads them; publish your own on <ws>:events:<name>)",
	"cache":  "CACHE.SET",
}

// MustBeDomain are kinds whose raw writes would break the fencing
// guarantees; config cannot hand them to agents.
var MustBeDomain = []string{"lock", "fence"}

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
	switch c.Agents {
	case keyspace.AgentsNever:
		return Refuse, Unsupported(c)
	case keyspace.AgentsAdmin:
		return Refuse, "NOPERM '" + c.Name + "' is for admin users only; user '" + id.Name() + "' has role " + id.Role.String()
	case keyspace.AgentsScript:
		if !p.AllowScripts {
			return Refuse, "NOPERM '" + c.Name + "' is off for agents (a script can touch keys it did not declare); use the domain commands, or set keyspace.allow_scripts"
		}
	}
	if id.Role == RoleReadonly && (c.Has(keyspace.Write) || acc.Writes || c.Has(keyspace.Script) || c.Name == "publish" || c.Name == "spublish") {
		return Refuse, "NOPERM user '" + id.Name() + "' is read-only; '" + c.Name + "' writes"
	}
	if c.Agents == keyspace.AgentsDangerous && !p.AllowCommands[c.Name] {
		return Refuse, "NOPERM '" + c.Name + "' is refused for agents: it " + c.Why + "; an operator can allow it with keyspace.allow_commands"
	}
	if c.Container && len(args) > 1 {
		// A subcommand the table does not know; a newer Redis may know it
		// and do anything with it.
		return Refuse, "ERR unknown subcommand '" + quote(args[1]) + "'. Try " + strings.ToUpper(c.Name) + " HELP."
	}
	if p.Mode == Off {
		return Allow, ""
	}
	g, ws := p.Grammar, id.Workspace
	for _, i := range acc.Keys {
		prob, kind := g.KeyKind(args[i], ws)
		switch prob {
		case keyspace.Outside:
			return p.violation("NOPERM key '" + quote(args[i]) + "' is outside workspace '" + ws + "'; keys must start with " + g.WorkspacePrefix(ws))
		case keyspace.BadKind:
			return p.violation("BADKEY key '" + quote(args[i]) + "' does not follow the key grammar: use " + g.WorkspacePrefix(ws) + "<kind>[:<rest>] with kind one of " + g.Kinds())
		}
		if kind < len(p.kinds) {
			if r := &p.kinds[kind]; r.secret || r.domain && acc.IsWritten(i) {
				return p.violation(r.refusal(args[i], acc.IsWritten(i)))
			}
		}
	}
	if p.Writes.checkTTL {
		if msg := p.requiresTTL(c, args, acc, ws); msg != "" {
			return p.violation(msg)
		}
	}
	if c.Name == "copy" && hasArg(args, "db") {
		return p.violation("NOPERM COPY ... DB writes another database, outside the connection's; copy inside the database")
	}
	for _, i := range acc.Channels {
		if c.Name == "unsubscribe" || c.Name == "sunsubscribe" {
			continue // leaving a channel is always allowed
		}
		if (c.Name == "publish" || c.Name == "spublish") && g.IsLocksChannel(args[i], ws) {
			return p.violation("NOPERM channel '" + quote(args[i]) + "' announces the workspace's locks, published only by the lock commands (a forged announcement would mislead the proxies' fencing)")
		}
		if p.eventsDomain && (c.Name == "publish" || c.Name == "spublish") && g.IsEventsChannel(args[i], ws) {
			return p.violation("NOPERM channel '" + quote(args[i]) + "' is the workspace's event feed, written only by the proxy (events come from writes); publish your own on " + g.WorkspacePrefix(ws) + "events:<name>")
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
		if c.Name == "sort" || c.Name == "sort_ro" {
			// BY and GET read the keys they build: the kind must be
			// spelt out before the first *, and readable.
			kind := g.SortPatternKind(args[i], ws)
			if kind < 0 {
				return p.violation("NOPERM pattern '" + quote(args[i]) + "' of SORT may build keys of any kind; spell out the kind before the first *, as " + g.WorkspacePrefix(ws) + "kv:*")
			}
			if kind < len(p.kinds) && p.kinds[kind].secret {
				return p.violation(p.kinds[kind].refusal(args[i], false))
			}
		}
	}
	return Allow, ""
}

// refusal is the message for a raw read or write of key under r.
func (r *kindRule) refusal(key []byte, write bool) string {
	if write {
		return "NOPERM key '" + quote(key) + "' is written only by the domain commands (kind '" + r.name + "' is owned by the domain); use " + r.use
	}
	return "NOPERM key '" + quote(key) + "' holds a lock's holder and token, which only its holder may know; use LOCK.INFO"
}

// ConnRefusal is a refusal that holds for every user, admins too: commands
// that cannot work through a multiplexer, and forms that name a Redis
// connection (CLIENT TRACKING ... REDIRECT: connection ids name Redis's
// connections, which the proxy shares). "" lets the command through.
func ConnRefusal(info *keyspace.Command, args [][]byte) string {
	if info.Agents == keyspace.AgentsNever {
		return Unsupported(info)
	}
	if info == cmdTracking && hasArg(args[1:], "redirect") {
		return "ERR CLIENT TRACKING REDIRECT is not supported through agentproxy: connection ids name Redis's connections, which the proxy shares; use RESP3 (HELLO 3) to get invalidations on this connection"
	}
	return ""
}

var cmdTracking = keyspace.Resolve([][]byte{[]byte("client"), []byte("tracking")})

// Unsupported is the refusal of a command no user may send through the
// proxy.
func Unsupported(c *keyspace.Command) string {
	return "ERR '" + c.Name + "' is not supported through agentproxy: it " + c.Why
}

// hasArg reports whether an option word is among the arguments after the
// command's name.
func hasArg(args [][]byte, word string) bool { return keyspace.HasArg(args[1:], word) }

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
	Prefix        string
	Kinds         []string
	Mode          string
	AllowScripts  bool
	AllowCommands []string
	// Owners maps kinds to OwnerDomain or OwnerAgents; kinds it does not
	// name take DefaultOwners, else OwnerAgents.
	Owners      map[string]string
	DefaultWS   string
	DefaultRole string
	Users       []UserConfig
	// The rules for plain writes: guarded kinds, whether every guarded
	// write is checked in Redis, TTL rules, kinds whose writes emit events.
	FenceKinds  []string
	FenceStrict bool
	TTL         []TTLConfig
	EventKinds  []string
	AllowSelect bool
	Limits      Limits
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
		Users: map[string]*User{}, DefaultWS: c.DefaultWS, DefaultRole: RoleAgent, AllowCommands: map[string]bool{}}
	for _, name := range c.AllowCommands {
		cmd := keyspace.Resolve([][]byte{[]byte(name)})
		if parent, sub, ok := strings.Cut(name, "|"); ok {
			cmd = keyspace.Resolve([][]byte{[]byte(parent), []byte(sub)})
		}
		if cmd == nil || cmd.Agents != keyspace.AgentsDangerous {
			return nil, errors.New("keyspace.allow_commands: " + name + " is not a command agents can be allowed (only " + strings.Join(keyspace.ConfinableNames(), ", ") + ")")
		}
		p.AllowCommands[cmd.Name] = true
	}
	for k, o := range c.Owners {
		if p.Grammar.KindIndex(k) < 0 {
			return nil, errors.New("keyspace.owners: " + k + " is not a kind")
		}
		if o != OwnerDomain && o != OwnerAgents {
			return nil, errors.New("keyspace.owners." + k + ": must be domain or agents")
		}
	}
	for _, k := range MustBeDomain {
		if c.Owners[k] == OwnerAgents {
			return nil, errors.New("keyspace.owners." + k + ": must stay domain (raw writes would break fencing)")
		}
	}
	for _, k := range p.Grammar.KindNames() {
		owner := c.Owners[k]
		if owner == "" {
			owner = keyspace.DefaultOwners()[k]
		}
		r := kindRule{name: k, domain: owner == OwnerDomain, secret: k == "lock" || k == "fence", use: domainUse[k]}
		if r.use == "" {
			r.use = "an admin connection (keyspace.owners." + k + " = \"domain\")"
		}
		p.kinds = append(p.kinds, r)
	}
	if i := p.Grammar.KindIndex("events"); i >= 0 {
		p.eventsDomain = p.kinds[i].domain
	}
	p.AllowSelect, p.Limits = c.AllowSelect, c.Limits
	p.compileWrites(c)
	switch {
	case c.DefaultRole != "":
		if p.DefaultRole, ok = ParseRole(c.DefaultRole); !ok {
			return nil, errors.New("keyspace.default_role: must be agent, readonly or admin")
		}
	case p.Mode == Off:
		// A pure proxy: clients that do not authenticate (loopback only)
		// get every command, as on the Redis behind it; configured users
		// keep their roles.
		p.DefaultRole = RoleAdmin
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

// SelectRefusal is the refusal of SELECT args for id (db: the configured
// database), or "": in enforce mode agents stay in the configured database
// unless keyspace.allow_select; the domain commands and Redis Cluster use
// only that one, and keys live in workspaces, not databases.
func (p *Policy) SelectRefusal(id *Identity, args [][]byte, db int) string {
	if len(args) != 2 || id.Role == RoleAdmin || p.Mode != Enforce || p.AllowSelect {
		return ""
	}
	if n, err := strconv.Atoi(string(args[1])); err != nil || n == db {
		return ""
	}
	return "NOPERM SELECT of another database is refused for agents: the domain commands and Redis Cluster use only database " +
		strconv.Itoa(db) + "; keys live in workspaces, not databases (keyspace.allow_select)"
}

// WorkspaceRefusal is the refusal of WORKSPACE ws for id, or "": admins may
// enter any workspace, users the ones they are allowed, and without users
// everyone the default one.
func (p *Policy) WorkspaceRefusal(id *Identity, ws string) string {
	if !keyspace.ValidWorkspace(ws) {
		return wire.ErrWSInvalid
	}
	allowed := id.Role == RoleAdmin
	if id.User != nil {
		allowed = allowed || id.User.Allows(ws)
	} else {
		allowed = allowed || ws == p.DefaultWS
	}
	if !allowed {
		return "NOPERM workspace '" + ws + "' is not allowed for user '" + id.Name() + "'"
	}
	return ""
}
