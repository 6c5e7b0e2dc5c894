// Package netpoll is the readiness poller under the proxy's event loops: epoll on Linux,
// kqueue on FreeBSD. It is level-triggered: a descriptor is reported readable (or writable,
// while write interest is on) on every Wait until the condition is consumed. A Poller also
// has a wake-up descriptor, so that another goroutine can interrupt a Wait.
//
// A Poller is used by one goroutine (its loop), except Wake, which any goroutine may call.
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
}
