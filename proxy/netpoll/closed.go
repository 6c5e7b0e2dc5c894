package netpoll

import (
	"errors"
	"sync"
)

// ErrClosed is returned by a Poller's methods after Close.
var ErrClosed = errors.New("netpoll: poller closed")

// closeGuard keeps Wake (any goroutine) from using the wake-up descriptor once Close has
// released it: the kernel hands out the lowest free descriptor number at once (FreeBSD
// sys/kern/kern_descrip.c fdalloc, Linux alike), so a late Wake — a dial that completes
// after its loop stopped, posting a task — would otherwise write into whatever socket or
// file now has that number. Wake holds the read lock while it writes; Close takes the
// write lock to set closed, so it waits for a Wake in progress and no Wake starts after.
type closeGuard struct {
	mu     sync.RWMutex
	closed bool
}

// enter reports whether the poller is open; when it is, the caller must call leave.
func (g *closeGuard) enter() bool {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	return true
}

func (g *closeGuard) leave() { g.mu.RUnlock() }

// isClosed is for the loop's own calls (Add, Set, Remove, Wait), which never race Close.
func (g *closeGuard) isClosed() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.closed
}

// close marks the poller closed and reports whether this call did (Close is idempotent).
func (g *closeGuard) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	return true
}
