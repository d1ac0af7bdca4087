package app

import (
	"errors"
	"path"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/agentproxy/agentproxy/config"
	"github.com/agentproxy/agentproxy/internal/wire"
	"github.com/agentproxy/agentproxy/upstream"
)

// The PROXY subcommands about the running application (proxy.Control):
// CONFIG GET, RELOAD and HELP. The command table refuses CONFIG and RELOAD
// to users who are not admins.

var proxyHelp = []string{
	"PROXY <subcommand> [<arg> ...]. Subcommands are:",
	"INFO", "    The proxy's state and this connection's identity (the # Proxy section of INFO).",
	"CLIENTS", "    The client connections of your user (an admin's: every one).",
	"CONFIG GET <pattern>", "    The settings whose names match a glob pattern, secrets masked (admin).",
	"RELOAD", "    Read the configuration again and apply it, as SIGHUP does (admin).",
	"HELP", "    Print this help.",
}

// Command answers PROXY CONFIG GET, RELOAD and HELP (args: the whole
// command) in the client's protocol.
func (a *App) Command(b []byte, args [][]byte, proto int) []byte {
	switch strings.ToLower(string(args[1])) {
	case "help":
		b = redcon.AppendArray(b, len(proxyHelp))
		for _, l := range proxyHelp {
			b = redcon.AppendBulkString(b, l)
		}
		return b
	case "config":
		if len(args) != 4 || !strings.EqualFold(string(args[2]), "get") {
			return wire.AppendError(b, "ERR syntax error: PROXY CONFIG GET <pattern>")
		}
		kv := a.ConfigGet(strings.ToLower(string(args[3])))
		b = wire.AppendMap(b, len(kv)/2, proto)
		for _, s := range kv {
			b = redcon.AppendBulkString(b, s)
		}
		return b
	case "reload":
		restartOnly, err := a.ReloadFromSource()
		switch {
		case err != nil:
			return wire.AppendError(b, "ERR reload failed, the previous configuration stays: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		case len(restartOnly) > 0:
			return redcon.AppendBulkString(b, "OK, except what changes only on a restart (these keep their running values): "+
				strings.Join(restartOnly, ", "))
		}
		return redcon.AppendOK(b)
	}
	return wire.AppendError(b, "ERR unknown subcommand '"+string(args[1])+"'. Try PROXY HELP.")
}

// ConfigGet returns the running settings whose names match a glob pattern
// (as CONFIG GET), as name, value pairs; password hashes and the upstream
// URL's passwords are masked.
func (a *App) ConfigGet(pattern string) []string {
	a.reloadMu.Lock()
	all := config.Flatten(a.cfg)
	a.reloadMu.Unlock()
	var out []string
	for i := 0; i+1 < len(all); i += 2 {
		name, v := all[i], all[i+1]
		if ok, _ := path.Match(pattern, name); !ok {
			continue
		}
		switch {
		case name == "upstream.url":
			v = upstream.Redact(v)
		case strings.Contains(name, "password") && v != "":
			v = "***"
		}
		out = append(out, name, v)
	}
	return out
}

// SetSource gives the application the way to read its configuration again
// (file, environment, flags), for SIGHUP and PROXY RELOAD.
func (a *App) SetSource(f func() (config.Config, error)) {
	a.reloadMu.Lock()
	a.source = f
	a.reloadMu.Unlock()
}

// ReloadFromSource reads the configuration again and applies it (Reload);
// a file that does not load changes nothing and is reported.
func (a *App) ReloadFromSource() ([]string, error) {
	a.reloadMu.Lock()
	src := a.source
	a.reloadMu.Unlock()
	if src == nil {
		return nil, errors.New("this proxy was started without a configuration to read again")
	}
	cfg, err := src()
	if err != nil {
		a.ReloadFailed(err)
		a.Hangup()
		return nil, err
	}
	return a.Reload(cfg)
}

// upstreamKind names the upstream for INFO's Proxy section.
func upstreamKind(embedded bool, m upstream.Mode) string {
	switch {
	case embedded:
		return "embedded"
	case m == upstream.ClusterMode:
		return "cluster"
	case m == upstream.SentinelMode:
		return "sentinel"
	}
	return "standalone"
}
