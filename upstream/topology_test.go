package upstream

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		url     string
		mode    Mode
		seeds   string
		master  string
		user    string
		pass    string
		spass   string
		db      int
		tls     bool
		wantErr string
	}{
		{url: "redis://127.0.0.1:6379/2", mode: Standalone, db: 2},
		{url: "redis-sentinel://a:26379,b:26380/mymaster", mode: SentinelMode, seeds: "a:26379,b:26380", master: "mymaster"},
		{url: "redis-sentinel://u:p@a:1,b:2/m?db=3&sentinel_password=sp", mode: SentinelMode, seeds: "a:1,b:2", master: "m", user: "u", pass: "p", spass: "sp", db: 3},
		{url: "rediss-sentinel://a:1/m", mode: SentinelMode, seeds: "a:1", master: "m", tls: true},
		{url: "redis-cluster://a:7000,b:7001,c:7002", mode: ClusterMode, seeds: "a:7000,b:7001,c:7002"},
		{url: "rediss-cluster://secret@a:7000", mode: ClusterMode, seeds: "a:7000", pass: "secret", tls: true},
		{url: "redis-sentinel://a:1", wantErr: "master name"},
		{url: "redis-sentinel://a/m", wantErr: "host:port"},
		{url: "redis-cluster://", wantErr: "no host:port"},
		{url: "redis-cluster://a:1/2", wantErr: "no database"},
		{url: "redis-cluster://a:1?db=1", wantErr: "only database 0"},
		{url: "redis-cluster://a:1?tls=1", wantErr: "unknown parameter"},
		{url: "http://a:1", wantErr: "scheme"},
	} {
		got, err := ParseTarget(tc.url)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.url, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if got.Mode != tc.mode || strings.Join(got.Seeds, ",") != tc.seeds || got.Master != tc.master ||
			got.Node.Username != tc.user || got.Node.Password != tc.pass || got.SentinelPassword != tc.spass ||
			got.Node.DB != tc.db || (got.Node.TLS != nil) != tc.tls {
			t.Errorf("%s: %+v", tc.url, got)
		}
		if got.Node.TLS != nil && got.Node.TLS.ServerName != "" {
			t.Errorf("%s: a fixed TLS server name %q for every node", tc.url, got.Node.TLS.ServerName)
		}
	}
}

func TestKeySlot(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("crc16: %#x", got)
	}
	for key, want := range map[string]int{
		"foo": 12182, "{user1000}.following": 3443, "{user1000}.followers": 3443, "foo{}{bar}": 8363, "{}": 15257,
	} {
		if got := KeySlot([]byte(key)); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
	if KeySlot([]byte("deepagents:{acme}:kv:x")) != TagSlot("acme") {
		t.Error("a workspace's keys are not in its slot")
	}
}

func TestParseRedirect(t *testing.T) {
	if r, ok := ParseRedirect([]byte("-MOVED 3999 127.0.0.1:6381\r\n")); !ok || r.Ask || r.Slot != 3999 || r.Addr != "127.0.0.1:6381" {
		t.Errorf("MOVED: %+v %v", r, ok)
	}
	if r, ok := ParseRedirect([]byte("-ASK 1 10.0.0.1:7000\r\n")); !ok || !r.Ask || r.Slot != 1 {
		t.Errorf("ASK: %+v %v", r, ok)
	}
	for _, bad := range []string{"-MOVED\r\n", "-MOVED x a:1\r\n", "-MOVED 99999 a:1\r\n", "-MOVED 1 \r\n", "+OK\r\n", "-ERR MOVED 1 a:1\r\n"} {
		if _, ok := ParseRedirect([]byte(bad)); ok {
			t.Errorf("%q read as a redirect", bad)
		}
	}
}

func TestSplitCommands(t *testing.T) {
	p := AppendCommand(AppendCommand(nil, "SET", "a", "1"), "GET", "a")
	cmds := splitCommands(p, 2)
	if len(cmds) != 2 || string(cmds[1]) != string(AppendCommand(nil, "GET", "a")) {
		t.Fatalf("%q", cmds)
	}
	if splitCommands(p[:len(p)-1], 2) != nil {
		t.Error("a torn payload split")
	}
}
