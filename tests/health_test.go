package tests

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/agentproxy/agentproxy/internal/testutil"
)

// TestHealthAndReadiness: /readyz fails while Redis is down and recovers
// when it is back; /healthz (the process) stays up throughout.
func TestHealthAndReadiness(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := faultConfig(t, r.URL())
	cfg.Listen.MetricsAddr = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	testutil.StartProxy(t, cfg)
	status := func(path string) int {
		t.Helper()
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://" + cfg.Listen.MetricsAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	await := func(path string, want int) time.Duration {
		t.Helper()
		start := time.Now()
		for status(path) != want {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s is not %d 10 s on", path, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	if s := status("/readyz"); s != 200 {
		t.Fatalf("/readyz with Redis up: %d", s)
	}
	r.Stop()
	down := await("/readyz", 503)
	if s := status("/healthz"); s != 200 {
		t.Errorf("/healthz with Redis down: %d", s)
	}
	r.Start()
	up := await("/readyz", 200)
	if s := status("/healthz"); s != 200 {
		t.Errorf("/healthz after: %d", s)
	}
	t.Logf("/readyz went 503 %v after Redis died and 200 %v after it restarted", down.Round(time.Millisecond), up.Round(time.Millisecond))
}
