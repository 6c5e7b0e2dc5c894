//go:build linux || freebsd

package proxy

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A task posted after its loop stopped (a backend dial completing late, a client accepted
// as the server stops) still runs, with stopping set, so that the descriptor it carries is
// closed instead of leaked; it never wakes the closed poller.
func TestPostAfterLoopExit(t *testing.T) {
	l, err := newLoop(nil, 0)
	if err != nil {
		t.Skip("no event loop here:", err)
	}
	l.stopping = true
	l.p.Close() // as shutdown does
	l.exit()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	ran := make(chan bool, 2)
	for range 2 {
		l.post(func() {
			if l.stopping {
				unix.Close(fds[0]) // as lbackend.dialed does with a late descriptor
			}
			ran <- l.stopping
		})
	}
	for range 2 {
		select {
		case stopping := <-ran:
			if !stopping {
				t.Fatal("late task ran without stopping set")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a task posted after the loop stopped never ran: its descriptor leaks")
		}
	}
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("descriptor %d still open: %v", fds[0], err)
	}
	// A task that posts another one (lclient.close posting a drain) does not deadlock.
	nested := make(chan struct{})
	l.post(func() { l.post(func() { close(nested) }) })
	select {
	case <-nested:
	case <-time.After(2 * time.Second):
		t.Fatal("a task posted by a late task never ran")
	}
}
