package proxy

import "testing"

// TestHistoBuckets: an observation counts in the first bucket whose upper bound is >= it
// (Prometheus "le"), past the last bound in the overflow count.
func TestHistoBuckets(t *testing.T) {
	bounds := []float64{.001, .01, .1}
	var h histo
	for _, v := range []float64{0, .001, .0011, .01, .05, .1, .2, 7} {
		h.observe(bounds, v)
	}
	want := []uint64{2, 2, 2, 2}
	for i, c := range h.counts {
		if c != want[i] {
			t.Fatalf("counts %v, want %v", h.counts, want)
		}
	}
	if h.n != 8 {
		t.Fatalf("n = %d, want 8", h.n)
	}
}
