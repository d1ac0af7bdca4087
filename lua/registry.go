// Package lua holds the agent domain's server-side scripts (one .lua file
// per command, embedded) and how to call them: EVALSHA first, and the full
// EVAL when Redis answers NOSCRIPT (after a restart, failover or SCRIPT
// FLUSH), which also caches the script again. Every key a script touches is
// passed in KEYS and carries the workspace's hash tag, so the scripts run
// unchanged on Redis Cluster, on a single Redis and on the embedded store.
package lua

import (
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

//go:embed scripts/*.lua
var files embed.FS

// prelude holds the helpers every script shares (fence checks, events);
// it is prepended to each script, so the SHA covers it too.
//
//go:embed prelude.lua
var prelude string

// Script is one embedded script.
type Script struct {
	Name string // file name without .lua, e.g. "lock_acquire"
	Src  string
	SHA  string // hex SHA-1, as Redis names it
}

var scripts = func() map[string]*Script {
	m := map[string]*Script{}
	entries, err := files.ReadDir("scripts")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		b, err := files.ReadFile("scripts/" + e.Name())
		if err != nil {
			panic(err)
		}
		src := prelude + "\n" + string(b)
		sum := sha1.Sum([]byte(src))
		name := strings.TrimSuffix(e.Name(), ".lua")
		m[name] = &Script{Name: name, Src: src, SHA: hex.EncodeToString(sum[:])}
	}
	return m
}()

// Get returns the named script; it panics on a name that is not embedded
// (a programming error caught by tests).
func Get(name string) *Script {
	s := scripts[name]
	if s == nil {
		panic(fmt.Sprintf("lua: no script %q", name))
	}
	return s
}

// All returns every embedded script.
func All() []*Script {
	out := make([]*Script, 0, len(scripts))
	for _, s := range scripts {
		out = append(out, s)
	}
	return out
}

// AppendEvalSHA appends EVALSHA sha numkeys keys... args... as RESP.
func (s *Script) AppendEvalSHA(b []byte, keys, args []string) []byte {
	return appendEval(b, "EVALSHA", s.SHA, keys, args, 0)
}

// AppendEval appends EVAL src numkeys keys... args... as RESP.
func (s *Script) AppendEval(b []byte, keys, args []string) []byte {
	return appendEval(b, "EVAL", s.Src, keys, args, 0)
}

// AppendCall is AppendEvalSHA (or AppendEval when full) for a call whose
// last extra arguments the caller appends itself as bulk strings, so large
// values need not be copied into strings first.
func (s *Script) AppendCall(b []byte, full bool, keys, args []string, extra int) []byte {
	if full {
		return appendEval(b, "EVAL", s.Src, keys, args, extra)
	}
	return appendEval(b, "EVALSHA", s.SHA, keys, args, extra)
}

func appendEval(b []byte, cmd, body string, keys, args []string, extra int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(3+len(keys)+len(args)+extra), 10)
	b = append(b, '\r', '\n')
	b = appendBulk(b, cmd)
	b = appendBulk(b, body)
	b = appendBulk(b, strconv.Itoa(len(keys)))
	for _, k := range keys {
		b = appendBulk(b, k)
	}
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}

func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// IsNoScript reports whether a raw reply is Redis's NOSCRIPT error.
func IsNoScript(reply []byte) bool {
	return len(reply) > 9 && string(reply[:9]) == "-NOSCRIPT"
}
