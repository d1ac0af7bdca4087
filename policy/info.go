package policy

import (
	"bytes"
	"strings"
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
