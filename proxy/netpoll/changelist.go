package netpoll

import "fmt"

// The kqueue poller (netpoll_freebsd.go) does not make a system call per interest
// change: it queues the changes here and passes them as the changelist of its next
// kevent wait, which applies them before it collects events (sys/kern/kern_event.c
// kern_kevent: kqueue_register for each change, then kqueue_scan). A filter is added
// (EV_ADD, which allocates a knote) once, then toggled with EV_ENABLE/EV_DISABLE (no
// allocation), and deleted when the descriptor is removed. This file is the planning
// only, in kqueue's terms but without its types, so that it is tested on every system.

// kqueue's filters and flags (sys/sys/event.h; the same on every FreeBSD architecture;
// netpoll_freebsd.go checks them against x/sys/unix at compile time).
const (
	evfiltRead  = -1
	evfiltWrite = -2

	evAdd     = 0x1
	evDelete  = 0x2
	evEnable  = 0x4
	evDisable = 0x8
)

// kchange is one kevent change.
type kchange struct {
	fd     int
	filter int16
	flags  uint16
}

// filterState is what the kernel has (or will have once the pending changes are
// applied) for one filter of one descriptor.
type filterState struct {
	added   bool // an EV_ADD was submitted or is pending
	enabled bool
	pending int // 1 + the index of this filter's change in the pending list; 0: none
}

// fdState is a registered descriptor's two filters.
type fdState struct {
	read, write filterState
}

// pendingChange is a queued change; dead ones were cancelled by a later call in the
// same batch and are not submitted.
type pendingChange struct {
	kchange
	dead bool
}

// changeList plans the kevent changes of a poller: Add, Set and Remove queue them (and
// coalesce those of one batch: enabling and disabling a filter before the next wait
// submits nothing), take hands them to the next wait.
type changeList struct {
	fds     map[int]*fdState
	pending []pendingChange
	out     []kchange
}

func newChangeList() *changeList { return &changeList{fds: map[int]*fdState{}} }

// registered reports whether fd was added and not removed since.
func (c *changeList) registered(fd int) bool { return c.fds[fd] != nil }

// add registers fd with read interest, and write interest if write is set (the write
// filter is added when first wanted).
func (c *changeList) add(fd int, write bool) {
	st := c.fds[fd]
	if st == nil {
		st = &fdState{}
		c.fds[fd] = st
	}
	c.want(fd, evfiltRead, &st.read, true)
	c.want(fd, evfiltWrite, &st.write, write)
}

// set changes the interests of a registered fd.
func (c *changeList) set(fd int, read, write bool) error {
	st := c.fds[fd]
	if st == nil {
		return fmt.Errorf("netpoll: fd %d is not registered", fd)
	}
	c.want(fd, evfiltRead, &st.read, read)
	c.want(fd, evfiltWrite, &st.write, write)
	return nil
}

// remove unregisters fd. Filters the kernel never saw (added in this batch) are simply
// dropped; the others are deleted. When fd is closed before the change is applied, the
// EV_DELETE fails (EBADF, or ENOENT once the number is reused: closing a descriptor
// removes its knotes, kern_event.c knote_fdclose), which the poller ignores for a
// descriptor no longer registered.
func (c *changeList) remove(fd int) {
	st := c.fds[fd]
	if st == nil {
		return
	}
	for _, f := range []struct {
		filter int16
		st     *filterState
	}{{evfiltRead, &st.read}, {evfiltWrite, &st.write}} {
		if !f.st.added {
			continue
		}
		if f.st.pending > 0 {
			p := &c.pending[f.st.pending-1]
			p.dead = true
			if p.flags&evAdd != 0 {
				continue // the kernel never had this filter
			}
		}
		c.push(fd, f.filter, evDelete)
	}
	delete(c.fds, fd)
}

// want makes filter of fd enabled (on) or disabled.
func (c *changeList) want(fd int, filter int16, f *filterState, on bool) {
	if !f.added {
		if on {
			f.added, f.enabled = true, true
			f.pending = c.push(fd, filter, evAdd|evEnable)
		}
		return
	}
	if f.enabled == on {
		return
	}
	f.enabled = on
	flag := uint16(evDisable)
	if on {
		flag = evEnable
	}
	if f.pending > 0 {
		p := &c.pending[f.pending-1]
		if p.flags&evAdd != 0 {
			p.flags = evAdd | flag // added in this batch: added in the new state
			return
		}
		// A pending toggle is a flip of what the kernel has: flipping back cancels it.
		p.dead = true
		f.pending = 0
		return
	}
	f.pending = c.push(fd, filter, flag)
}

func (c *changeList) push(fd int, filter int16, flags uint16) int {
	c.pending = append(c.pending, pendingChange{kchange: kchange{fd: fd, filter: filter, flags: flags}})
	return len(c.pending)
}

// take returns the changes to submit with the next wait and starts a new batch. The
// returned slice is valid until the next take.
func (c *changeList) take() []kchange {
	c.out = c.out[:0]
	for i, p := range c.pending {
		if st := c.fds[p.fd]; st != nil {
			if st.read.pending == i+1 {
				st.read.pending = 0
			}
			if st.write.pending == i+1 {
				st.write.pending = 0
			}
		}
		if !p.dead {
			c.out = append(c.out, p.kchange)
		}
	}
	c.pending = c.pending[:0]
	return c.out
}

// len is the number of changes take would return.
func (c *changeList) len() int {
	n := 0
	for _, p := range c.pending {
		if !p.dead {
			n++
		}
	}
	return n
}
