package main

import (
	"math"
	"testing"
)

func TestParseBenchCSV(t *testing.T) {
	tests := []struct {
		name          string
		out           string
		rps, p50, p99 float64
		wantErr       bool
	}{
		{
			name: "redis 7",
			out: `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET deepagents:{bench}:kv:__rand_int__ xxx","630914.81","1.109","0.328","0.983","2.231","2.815","3.583"
`,
			rps: 630914.81, p50: 0.983, p99: 2.815,
		},
		{
			name: "old redis-benchmark without header",
			out:  "\"GET deepagents:{bench}:kv:__rand_int__\",\"69204.15\"\n",
			rps:  69204.15, p50: math.NaN(), p99: math.NaN(),
		},
		{name: "header only (run failed)", out: `"test","rps"` + "\n", wantErr: true},
		{name: "empty", out: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rps, p50, p99, err := parseBenchCSV(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if !same(rps, tt.rps) || !same(p50, tt.p50) || !same(p99, tt.p99) {
				t.Errorf("got %v %v %v, want %v %v %v", rps, p50, p99, tt.rps, tt.p50, tt.p99)
			}
		})
	}
}

func same(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	stat := "4242 (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 4 0 100 1000 10 0\n"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1234+567 {
		t.Errorf("got %d, want %d", got, 1234+567)
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Error("short stat accepted")
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("odd: %v", m)
	}
	if m := median([]float64{4, 1, math.NaN(), 2, 3}); m != 2.5 {
		t.Errorf("even with NaN: %v", m)
	}
	if m := median(nil); !math.IsNaN(m) {
		t.Errorf("empty: %v", m)
	}
}
