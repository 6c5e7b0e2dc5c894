package proxy

import (
	"strconv"
	"testing"
	"time"
)

// TestHotkeysFindHotAmongUniform: three keys taking a quarter of the traffic each surface
// at the top of the report above 20,000 uniformly requested ones, and the floor that spares
// the scan for the weakest candidate never exceeds a candidate's estimate.
func TestHotkeysFindHotAmongUniform(t *testing.T) {
	h := newHotkeys(1, time.Hour)
	hot := []string{"user:1", "cart:42", "session:x"}
	for i := 0; i < 400000; i++ {
		var key string
		if i%4 != 3 {
			key = hot[i%4]
		} else {
			key = "key:" + strconv.Itoa(i*7919%20000)
		}
		h.record([]byte(key))
	}
	top := h.top(3)
	if len(top) != 3 {
		t.Fatalf("top 3: %v", top)
	}
	for _, k := range top {
		if k.Key != hot[0] && k.Key != hot[1] && k.Key != hot[2] {
			t.Fatalf("top 3 = %v, want %v", top, hot)
		}
	}
	for k, v := range h.cur.cands {
		if v < h.cur.floor {
			t.Fatalf("candidate %q estimated %d below the floor %d", k, v, h.cur.floor)
		}
	}
	if h.cur.floor == 0 {
		t.Fatal("floor never set: every cold sample scanned the candidates")
	}
}
