package proxy

import (
	"runtime"
	"testing"
)

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

	b := &lbackend{l: l, wchain: wchain{out: make([]byte, 0, 4<<20)}}
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

// TestReqRingKeepsBurstArray: a ring is FIFO across wrap-around and growth, keeps its array
// while bursts use it (emptying between them) and gives it back after a quiet tick.
func TestReqRingKeepsBurstArray(t *testing.T) {
	var q reqRing
	reqs := make([]*lreq, 1000)
	for i := range reqs {
		reqs[i] = &lreq{slot: i}
	}
	next, want := 0, 0
	for burst := 0; burst < 5; burst++ {
		for i := 0; i < 150; i++ { // pop half as fast as pushed: wraps and grows
			q.push(reqs[next%len(reqs)])
			next++
			if i%2 == 1 {
				if r := q.pop(); r.slot != want%len(reqs) {
					t.Fatalf("popped %d, want %d", r.slot, want%len(reqs))
				}
				want++
			}
		}
		for q.len() > 0 {
			if r := q.pop(); r.slot != want%len(reqs) {
				t.Fatalf("popped %d, want %d", r.slot, want%len(reqs))
			}
			want++
		}
		if burst == 0 {
			continue
		}
		q.trim() // a tick during the load
		if len(q.buf) != 128 {
			t.Fatalf("burst %d: array of %d after trim, want the burst's 128 kept", burst, len(q.buf))
		}
	}
	q.trim() // a quiet tick
	if q.buf != nil {
		t.Fatalf("idle ring kept an array of %d", len(q.buf))
	}
	q.push(reqs[0])
	if q.pop() != reqs[0] || q.len() != 0 {
		t.Fatal("ring unusable after trim")
	}
}

// TestLoopHoldsPOnlyWithOneToSpare checks the rule that keeps a one-core host responsive:
// a loop may keep its P while it waits only when GOMAXPROCS leaves a P for everything else.
func TestLoopHoldsPOnlyWithOneToSpare(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	for _, tc := range []struct{ procs, loops int }{{1, 1}, {2, 1}, {2, 2}, {3, 2}, {8, 4}} {
		l := &loop{s: &Server{loops: make([]*loop, tc.loops)}}
		runtime.GOMAXPROCS(tc.procs)
		if got, want := l.canHoldP(), tc.procs > tc.loops; got != want {
			t.Errorf("GOMAXPROCS %d, %d loops: canHoldP = %v, want %v", tc.procs, tc.loops, got, want)
		}
	}
}
