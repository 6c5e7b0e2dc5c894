package proxy

import "testing"

// TestLoopLetsIdleBuffersGo: after a burst, the pooled requests above keepFreeReqs and a
// backend's large output buffer are let go, gradually and only once unused; under load the
// buffer is kept.
func TestLoopLetsIdleBuffersGo(t *testing.T) {
	l := &loop{}
	for i := 0; i < keepFreeReqs+8000; i++ {
		l.free = append(l.free, &lreq{})
	}
	l.trimFree()
	if n := len(l.free); n != keepFreeReqs+7000 {
		t.Fatalf("after one tick %d pooled, want %d (an eighth of the excess let go)", n, keepFreeReqs+7000)
	}
	for i := 0; i < 200; i++ {
		l.trimFree()
	}
	if n := len(l.free); n != keepFreeReqs {
		t.Fatalf("after many ticks %d pooled, want %d", n, keepFreeReqs)
	}

	b := &lbackend{l: l, out: make([]byte, 0, 4<<20)}
	for tick := 0; tick < 3*trimOutTicks; tick++ {
		b.outPeak = max(b.outPeak, 3<<20) // a busy pass every tick
		b.trimOut()
	}
	if cap(b.out) != 4<<20 {
		t.Fatalf("buffer in use let go (cap %d)", cap(b.out))
	}
	for tick := 0; tick < trimOutTicks-1; tick++ {
		b.outPeak = max(b.outPeak, 1<<10)
		b.trimOut()
	}
	if cap(b.out) != 4<<20 {
		t.Fatalf("buffer let go before a quiet second passed")
	}
	b.trimOut()
	if b.out != nil {
		t.Fatalf("buffer kept after a quiet second (cap %d)", cap(b.out))
	}
}
