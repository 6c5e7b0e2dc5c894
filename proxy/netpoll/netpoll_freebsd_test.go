package netpoll

import (
	"errors"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// echoRequest is one request through a poller as the loop handles a reply whose write
// would block: the request arrives (a wait reports a readable), the reply is held back
// (write interest on, a wait reports writable), written, write interest off.
func echoRequest(tb testing.TB, p *Poller, a, b int, buf []byte) {
	unix.Write(b, []byte("PING\r\n"))
	evs, _, err := p.Wait(nil, 1000, false)
	if e, ok := find(evs, a); err != nil || !ok || !e.Readable {
		tb.Fatalf("request: %v %v", evs, err)
	}
	unix.Read(a, buf)
	if err := p.Set(a, true, true); err != nil {
		tb.Fatal(err)
	}
	evs, _, err = p.Wait(evs[:0], 1000, false)
	if e, ok := find(evs, a); err != nil || !ok || !e.Writable {
		tb.Fatalf("writable: %v %v", evs, err)
	}
	unix.Write(a, []byte("+PONG\r\n"))
	if err := p.Set(a, true, false); err != nil {
		tb.Fatal(err)
	}
	unix.Read(b, buf)
}

// The interest changes ride in the waits' changelists: a request costs its two waits
// and not one kevent call more (the old poller made four: EV_ADD and EV_DELETE of the
// write filter on top).
func TestKeventCallsPerRequest(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := newPair(t)
	if err := p.Add(a, false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	echoRequest(t, p, a, b, buf) // the first request also submits the EV_ADDs
	const n = 100
	before := p.keventCalls()
	for range n {
		echoRequest(t, p, a, b, buf)
	}
	if got := p.keventCalls() - before; got != 2*n {
		t.Fatalf("%d kevent calls for %d requests, want %d (two waits each)", got, n, 2*n)
	}
}

func BenchmarkKeventCallsPerRequest(b *testing.B) {
	p, err := New(16)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	x, y := newPair(b)
	p.Add(x, false)
	buf := make([]byte, 64)
	echoRequest(b, p, x, y, buf)
	before := p.keventCalls()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		echoRequest(b, p, x, y, buf)
	}
	b.ReportMetric(float64(p.keventCalls()-before)/float64(b.N), "kevent-calls/op")
}

// A change the kernel refuses comes back as an EV_ERROR entry of the next wait: for a
// registered descriptor as an event with Err (and Readable, so the reader finds out);
// for one removed since (closed before the change was applied) it is dropped.
func TestChangeErrorsReported(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[1])
	bad := fds[0]
	unix.Close(bad) // a number that is not open: EV_ADD fails with EBADF
	p.Add(bad, false)
	evs, _, err := p.Wait(nil, 1000, false)
	if e, ok := find(evs, bad); err != nil || !ok || !e.Readable || !errors.Is(e.Err, syscall.EBADF) {
		t.Fatalf("refused EV_ADD: %+v %v", evs, err)
	}
	p.Remove(bad)
	// Removed, then closed before the next wait: the EV_DELETE's error is expected.
	a, _ := newPair(t)
	p.Add(a, false)
	p.Wait(nil, 0, false)
	p.Remove(a)
	dup, _ := unix.Dup(a)
	unix.Close(a)
	defer unix.Close(dup)
	evs, _, err = p.Wait(nil, 10, false)
	if err != nil || len(evs) != 0 {
		t.Fatalf("delete of a closed descriptor: %+v %v", evs, err)
	}
	// Removed and closed, its number reused at once by a new connection added in the
	// same batch: the old filters' EV_DELETE fails (ENOENT), and is not reported as an
	// error of the new one.
	c, d := newPair(t)
	p.Add(c, false)
	p.Wait(nil, 0, false)
	p.Remove(c)
	unix.Close(c)
	e, f := newPair(t) // takes c's number
	if e != c {
		t.Skipf("descriptor %d not reused (got %d)", c, e)
	}
	p.Add(e, false)
	unix.Write(f, []byte("x"))
	_ = d
	for range 3 { // the refused delete ends one wait early
		evs, _, err = p.Wait(evs[:0], 1000, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Err != nil {
				t.Fatalf("error reported for the reused descriptor: %+v", ev)
			}
		}
		if ev, ok := find(evs, e); ok && ev.Readable {
			return
		}
	}
	t.Fatal("the new connection on the reused number never became readable")
}

// More changes than the event buffer holds are submitted in several calls; a wake-up
// collected by one of them is not lost.
func TestLargeChangelist(t *testing.T) {
	p, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var socks []int
	for range 5 {
		a, b := newPair(t)
		socks = append(socks, a)
		unix.Write(b, []byte("x"))
		p.Add(a, false)
	}
	p.Wake()
	seen := map[int]bool{}
	woke := false
	for range 10 {
		evs, w, err := p.Wait(nil, 100, false)
		if err != nil {
			t.Fatal(err)
		}
		woke = woke || w
		for _, e := range evs {
			seen[e.Fd] = true
		}
	}
	if !woke || len(seen) != len(socks) {
		t.Fatalf("woke %v, readable %v of %v", woke, seen, socks)
	}
}
