package quota

import "testing"

func TestQuota(t *testing.T) {
	q := &Quota{Max: 2}
	if !q.Take("a") || !q.Take("a") || q.Take("a") || !q.Take("b") {
		t.Fatal("limits")
	}
	q.Give("a")
	if !q.Take("a") {
		t.Fatal("not given back")
	}
	var none Quota
	for i := 0; i < 10; i++ {
		if !none.Take("x") {
			t.Fatal("no limit refuses")
		}
	}
}
