package policy

import (
	"bytes"
	"strings"

	"github.com/agentproxy/agentproxy/internal/wire"
)

// infoAgent lists what an agent's INFO keeps from Redis's (SPEC §10,
// "information across workspaces"): fields of the whole server that say
// nothing about other workspaces, other clients or the host.
var infoAgent = map[string]map[string]bool{
	"server": {"redis_version": true, "redis_mode": true, "arch_bits": true, "uptime_in_seconds": true,
		"uptime_in_days": true, "hz": true},
	"memory":  {"used_memory_human": true, "maxmemory_human": true, "maxmemory_policy": true},
	"cluster": {"cluster_enabled": true},
}

// AppendAgentInfo appends section sec of a Redis INFO text as an agent may
// see it: only the fields in infoAgent (nothing for other sections).
func AppendAgentInfo(b, info []byte, sec string) []byte {
	keep := infoAgent[sec]
	in := false
	wrote := false
	for _, line := range bytes.Split(info, []byte("\r\n")) {
		if len(line) > 0 && line[0] == '#' {
			in = strings.EqualFold(strings.TrimSpace(string(line[1:])), sec)
			continue
		}
		if !in {
			continue
		}
		k, _, ok := bytes.Cut(line, []byte(":"))
		if !ok || !keep[string(k)] {
			continue
		}
		if !wrote {
			b = append(b, "# "...)
			b = append(b, strings.ToUpper(sec[:1])+sec[1:]...)
			b = append(b, "\r\n"...)
			wrote = true
		}
		b = append(b, line...)
		b = append(b, "\r\n"...)
	}
	if wrote {
		b = append(b, "\r\n"...)
	}
	return b
}

// Info assembles INFO args for a user. Admins get Redis's own answer
// (redis runs a command upstream; false: it failed and answered the client
// itself); other users get only the fields in infoAgent, the proxy's own
// Clients section instead of Redis's (which counts the proxy's upstream
// connections), and the Proxy section.
func Info(args [][]byte, admin bool, redis func(argv [][]byte) ([]byte, bool), clients, proxy func([]byte) []byte) ([]byte, bool) {
	all, want := wire.InfoSections(args)
	var text []byte
	if admin {
		up, ok := redis(append([][]byte{[]byte("INFO")}, args...))
		if !ok {
			return nil, false
		}
		text = up
	} else {
		// Plain INFO: its default sections hold server, memory and
		// cluster, and the embedded store takes no more than one argument.
		up, ok := redis([][]byte{[]byte("INFO")})
		if !ok {
			return nil, false
		}
		for _, sec := range []string{"server", "clients", "memory", "cluster"} {
			switch {
			case !all && !want[sec]:
			case sec == "clients":
				text = clients(text)
			default:
				text = AppendAgentInfo(text, up, sec)
			}
		}
	}
	if all || want["proxy"] {
		if text = bytes.TrimRight(text, "\r\n"); len(text) > 0 {
			text = append(text, "\r\n\r\n"...)
		}
		text = proxy(text)
	}
	// As Redis: sections apart by a blank line, the last line ends in CRLF.
	if text = bytes.TrimRight(text, "\r\n"); len(text) > 0 {
		text = append(text, "\r\n"...)
	}
	return text, true
}
