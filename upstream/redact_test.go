package upstream

import (
	"strings"
	"testing"
)

// TestRedact: no password of an upstream URL survives, in the URL or in the
// error about a URL that does not parse.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:sekrit@h:1/0": "redis://***@h:1/0",
		"redis://u:sekrit@h:1":  "redis://***@h:1",
		"redis://h:1":           "redis://h:1",
		"redis-sentinel://h:1,h:2/m?sentinel_password=sekrit&db=1": "redis-sentinel://h:1,h:2/m?sentinel_password=***&db=1",
		"redis-sentinel://h:1/m?sentinel%5Fpassword=sekrit":        "redis-sentinel://h:1/m?sentinel%5Fpassword=***",
		"redis-sentinel://h:1/m?sentinel_password=a@b:1":           "redis-sentinel://h:1/m?sentinel_password=***",
		"redis-sentinel://:sekrit@h:1/m?sentinel_username=x":       "redis-sentinel://***@h:1/m?sentinel_username=x",
		"unix:///run/redis.sock":                                   "unix:///run/redis.sock",
		"embedded":                                                 "embedded",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"redis-sentinel://:sekrit@h:1?bogus=1", "redis://:sekrit@h:notaport", "redis-cluster://:sekrit@h:1/3",
		"redis-sentinel://h:1/m?sentinel_password=sekrit&nope=1", "ftp://:sekrit@h:1"} {
		_, err := ParseTarget(bad)
		if err == nil {
			t.Errorf("%q parsed", bad)
			continue
		}
		if strings.Contains(err.Error(), "sekrit") {
			t.Errorf("the error about %q shows the password: %v", bad, err)
		}
	}
}
