//go:build linux || freebsd

package netpoll

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// A Wake after Close (a dial that completes after its loop stopped posts a task) must not
// write into the descriptor number the wake-up used: the kernel hands the lowest free
// number to the next socket or pipe at once. Add, Set, Remove and Wait after Close are
// errors, not system calls on a reused number.
func TestWakeAfterClose(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	old := p.wakeWriteFd()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil { // idempotent
		t.Fatalf("second Close: %v", err)
	}
	// Open pipes until one's write end has the old number (the next free ones).
	var r, w int = -1, -1
	for i := 0; i < 8 && w != old; i++ {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		r, w = fds[0], fds[1]
	}
	if w != old {
		t.Skipf("descriptor %d not reused by a pipe's write end here", old)
	}
	if err := p.Wake(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wake after Close = %v, want ErrClosed", err)
	}
	var buf [16]byte
	if n, err := unix.Read(r, buf[:]); n > 0 || err != unix.EAGAIN {
		t.Fatalf("Wake after Close wrote into the reused descriptor %d: read %d bytes, %v", old, n, err)
	}
	a, _ := newPair(t)
	for name, err := range map[string]error{"Add": p.Add(a, false), "Set": p.Set(a, true, true), "Remove": p.Remove(a)} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if _, _, err := p.Wait(nil, 0, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close = %v, want ErrClosed", err)
	}
}

// Wake racing Close never writes into a closed descriptor (go test -race; the guard makes
// Close wait for a Wake in progress).
func TestWakeRacesClose(t *testing.T) {
	for range 200 {
		p, err := New(4)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			var err error
			for range 20 {
				if e := p.Wake(); e != nil && !errors.Is(e, ErrClosed) {
					err = e
				}
			}
			done <- err
		}()
		p.Close()
		if err := <-done; err != nil {
			t.Fatalf("Wake racing Close: %v", err)
		}
	}
}
