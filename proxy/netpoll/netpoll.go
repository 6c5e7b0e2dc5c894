// Package netpoll is the readiness poller under the proxy's event loops: epoll on Linux,
// kqueue on FreeBSD. It is level-triggered: a descriptor is reported readable (or writable,
// while write interest is on) on every Wait until the condition is consumed. A Poller also
// has a wake-up (an eventfd on Linux, an EVFILT_USER event on FreeBSD), so that another
// goroutine can interrupt a Wait. On FreeBSD, Add, Set and Remove only queue their
// changes: the next Wait applies them in its kevent call (changelist.go).
//
// A Poller is used by one goroutine (its loop), except Wake, which any goroutine may call.
// After Close every method returns ErrClosed.
//
// Wait can block in one of two ways. The ordinary way tells the Go scheduler that the
// goroutine is in a system call, and the scheduler may hand the goroutine's P to other
// work; when the wait ends the goroutine must get a P back, often on another thread (a
// futex wake-up and a thread switch). At a few hundred thousand waits per second that
// hand-off costs more than the wait. A held wait is a raw system call: the goroutine keeps
// its P and thread while it blocks, so the caller must bound the wait and leave a P for the
// rest of the program (GOMAXPROCS above the number of holding loops). Signals end a held
// wait early, so the runtime can still preempt the goroutine (garbage collection, the
// scheduler's 10 ms time slice): epoll_wait is never restarted after a signal handler
// (signal(7)), and FreeBSD's kqueue_scan turns ERESTART into EINTR ("don't restart after
// signals", sys/kern/kern_event.c), so Go's SA_RESTART handlers do not resume either wait.
package netpoll

import "errors"

// ErrNotSupported is returned by New on systems without an implementation.
var ErrNotSupported = errors.New("netpoll: not supported on this system")

// Event is the readiness of one descriptor.
type Event struct {
	Fd int
	// Readable is also set on hang-up and error, so that the reader finds the cause.
	Readable bool
	Writable bool
	// Err is set when the kernel refused a registration change of Fd (kqueue reports
	// those with the events); Readable is set with it so that the reader finds out.
	Err error
}
