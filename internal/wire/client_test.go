package wire

import (
	"strings"
	"testing"
)

func TestParseHello(t *testing.T) {
	args := func(s string) [][]byte {
		var out [][]byte
		for _, f := range strings.Fields(s) {
			out = append(out, []byte(f))
		}
		return out
	}
	for _, tc := range []struct {
		in   string
		want Hello
		err  string
	}{
		{"", Hello{}, ""},
		{"3", Hello{Proto: 3}, ""},
		{"2 AUTH u p SETNAME n", Hello{Proto: 2, Auth: true, User: []byte("u"), Pass: []byte("p"), Name: "n", SetName: true}, ""},
		{"3 setname n auth u p", Hello{Proto: 3, Auth: true, User: []byte("u"), Pass: []byte("p"), Name: "n", SetName: true}, ""},
		{"x", Hello{}, "ERR Protocol version is not an integer or out of range"},
		{"4", Hello{}, ErrNoProto},
		{"3 AUTH u", Hello{}, ErrHelloSyntax + "AUTH'"},
		{"3 SETNAME", Hello{}, ErrHelloSyntax + "SETNAME'"},
		// Redis parses every option before acting on any: a bad option
		// after AUTH refuses the whole HELLO.
		{"3 AUTH u p BOGUS", Hello{}, ErrHelloSyntax + "BOGUS'"},
	} {
		h, err := ParseHello(args(tc.in))
		if err != tc.err {
			t.Errorf("%q: error %q, want %q", tc.in, err, tc.err)
			continue
		}
		if err == "" && (h.Proto != tc.want.Proto || h.Auth != tc.want.Auth || string(h.User) != string(tc.want.User) ||
			string(h.Pass) != string(tc.want.Pass) || h.Name != tc.want.Name || h.SetName != tc.want.SetName) {
			t.Errorf("%q: %+v, want %+v", tc.in, h, tc.want)
		}
	}
}

func TestProxyClientVisible(t *testing.T) {
	me := &ProxyClient{User: "u1", Authed: true, Workspace: "a"}
	anon := &ProxyClient{User: "default", Authed: true, Anonymous: true, Workspace: "a"}
	for _, c := range []struct {
		name string
		c    *ProxyClient
		me   *ProxyClient
		want bool
	}{
		{"same user, other workspace", &ProxyClient{User: "u1", Authed: true, Workspace: "b"}, me, true},
		{"other user", &ProxyClient{User: "u2", Authed: true, Workspace: "a"}, me, false},
		{"not yet authenticated", &ProxyClient{User: "u1", Workspace: "a"}, me, false},
		{"configured user named default vs anonymous", &ProxyClient{User: "default", Authed: true, Workspace: "a"}, anon, false},
		{"anonymous, same workspace", &ProxyClient{User: "default", Authed: true, Anonymous: true, Workspace: "a"}, anon, true},
		{"anonymous, other workspace", &ProxyClient{User: "default", Authed: true, Anonymous: true, Workspace: "b"}, anon, false},
		{"anonymous not authenticated", &ProxyClient{User: "default", Anonymous: true, Workspace: "a"}, anon, false},
	} {
		if got := c.c.VisibleTo(c.me); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if _, msg := ParseHello([][]byte{[]byte("2"), []byte("SETNAME"), []byte("a\nb")}); msg != ErrClientName {
		t.Errorf("HELLO SETNAME with a newline: %q", msg)
	}
}
