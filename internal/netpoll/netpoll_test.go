package netpoll

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newPair(t *testing.T) (a, b int) {
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
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := newPair(t)
	if err := p.Add(a, false); err != nil {
		t.Fatal(err)
	}
	// Nothing to read: the wait times out empty.
	evs, woke, err := p.Wait(nil, 10)
	if err != nil || woke || len(evs) != 0 {
		t.Fatalf("idle wait = %v, %v, %v; want nothing", evs, woke, err)
	}
	unix.Write(b, []byte("x"))
	for i := 0; i < 2; i++ { // level-triggered: reported again until read
		evs, _, err = p.Wait(evs[:0], 1000)
		if e, ok := find(evs, a); err != nil || !ok || !e.Readable || e.Writable {
			t.Fatalf("wait %d after write = %v, %v; want %d readable only", i, evs, err, a)
		}
	}
	var buf [4]byte
	unix.Read(a, buf[:])
	if err := p.Set(a, true, true); err != nil {
		t.Fatal(err)
	}
	evs, _, _ = p.Wait(evs[:0], 1000)
	if e, ok := find(evs, a); !ok || !e.Writable {
		t.Fatalf("write interest: %v; want %d writable", evs, a)
	}
	if err := p.Set(a, false, false); err != nil {
		t.Fatal(err)
	}
	unix.Write(b, []byte("y"))
	if evs, _, _ = p.Wait(evs[:0], 10); len(evs) != 0 {
		t.Fatalf("no interest: %v; want nothing", evs)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		p.Wake()
	}()
	start := time.Now()
	evs, woke, err = p.Wait(evs[:0], 5000)
	if err != nil || !woke || time.Since(start) > 2*time.Second {
		t.Fatalf("wake: woke=%v err=%v after %v", woke, err, time.Since(start))
	}
	// Hang-up is reported as readable, so the reader finds EOF.
	if err := p.Set(a, true, false); err != nil {
		t.Fatal(err)
	}
	unix.Read(a, buf[:])
	unix.Shutdown(b, unix.SHUT_WR)
	evs, _, _ = p.Wait(evs[:0], 1000)
	if e, ok := find(evs, a); !ok || !e.Readable {
		t.Fatalf("hang-up: %v; want %d readable", evs, a)
	}
	if err := p.Remove(a); err != nil {
		t.Fatal(err)
	}
}
