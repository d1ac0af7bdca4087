package embedded_test

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/embedded"
)

func TestTmpBig(t *testing.T) {
	st, _ := embedded.Start(filepath.Join(t.TempDir(), "s"), 0, nil)
	d := st.Miniredis().DB(0)
	for i := 0; i < 100000; i++ {
		d.Set("key:"+strconv.Itoa(i), "value-"+strconv.Itoa(i))
	}
	s := time.Now()
	if err := st.Snapshot(); err != nil {
		t.Fatal(err)
	}
	t.Logf("100k keys: %v", time.Since(s))
	st.Close()
}
