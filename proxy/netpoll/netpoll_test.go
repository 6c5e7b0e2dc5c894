package netpoll

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newPair(t testing.TB) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func find(evs []Event, fd int) (Event, bool) {
	for _, e := range evs {
		if e.Fd == fd {
			return e, true
		}
	}
	return Event{}, false
}

func TestPollerReadWriteWake(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "freebsd" {
		t.Skip("netpoll has no implementation on", runtime.GOOS)
	}
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) { testPoller(t, hold) })
	}
}

func testPoller(t *testing.T, hold bool) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// wait is p.Wait, repeated while it returns nothing before ms passed: a signal (the
	// runtime's preemption) ends a held wait early.
	wait := func(dst []Event, ms int) ([]Event, bool, error) {
		start := time.Now()
		for {
			evs, woke, err := p.Wait(dst, ms, hold)
			if len(evs) > 0 || woke || err != nil || time.Since(start) >= time.Duration(ms)*time.Millisecond {
				return evs, woke, err
			}
		}
	}
	a, b := newPair(t)
	if err := p.Add(a, false); err != nil {
		t.Fatal(err)
	}
	// Nothing to read: the wait times out empty.
	evs, woke, err := wait(nil, 10)
	if err != nil || woke || len(evs) != 0 {
		t.Fatalf("idle wait = %v, %v, %v; want nothing", evs, woke, err)
	}
	unix.Write(b, []byte("x"))
	for i := 0; i < 2; i++ { // level-triggered: reported again until read
		evs, _, err = wait(evs[:0], 1000)
		if e, ok := find(evs, a); err != nil || !ok || !e.Readable || e.Writable {
			t.Fatalf("wait %d after write = %v, %v; want %d readable only", i, evs, err, a)
		}
	}
	var buf [4]byte
	unix.Read(a, buf[:])
	if err := p.Set(a, true, true); err != nil {
		t.Fatal(err)
	}
	evs, _, _ = wait(evs[:0], 1000)
	if e, ok := find(evs, a); !ok || !e.Writable {
		t.Fatalf("write interest: %v; want %d writable", evs, a)
	}
	if err := p.Set(a, false, false); err != nil {
		t.Fatal(err)
	}
	unix.Write(b, []byte("y"))
	if evs, _, _ = wait(evs[:0], 10); len(evs) != 0 {
		t.Fatalf("no interest: %v; want nothing", evs)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		p.Wake()
	}()
	start := time.Now()
	evs, woke, err = wait(evs[:0], 5000)
	if err != nil || !woke || time.Since(start) > 2*time.Second {
		t.Fatalf("wake: woke=%v err=%v after %v", woke, err, time.Since(start))
	}
	// Hang-up is reported as readable, so the reader finds EOF.
	if err := p.Set(a, true, false); err != nil {
		t.Fatal(err)
	}
	unix.Read(a, buf[:])
	unix.Shutdown(b, unix.SHUT_WR)
	evs, _, _ = wait(evs[:0], 1000)
	if e, ok := find(evs, a); !ok || !e.Readable {
		t.Fatalf("hang-up: %v; want %d readable", evs, a)
	}
	if err := p.Remove(a); err != nil {
		t.Fatal(err)
	}
}

// TestHeldWaitLetsRuntimeStopTheWorld: a goroutine blocked in a held wait (a raw system
// call that keeps its P) does not hold up a garbage collection, which must stop every P:
// the runtime's preemption signal ends the wait early.
func TestHeldWaitLetsRuntimeStopTheWorld(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "freebsd" {
		t.Skip("netpoll has no implementation on", runtime.GOOS)
	}
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("a held wait needs a second P for the rest of the program")
	}
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.Wait(nil, 3000, true)
		}
	}()
	time.Sleep(50 * time.Millisecond) // the goroutine is in its wait
	start := time.Now()
	runtime.GC()
	took := time.Since(start)
	close(stop)
	p.Wake()
	<-done
	if took > time.Second {
		t.Fatalf("garbage collection took %v while a held wait of 3 s ran", took)
	}
}
