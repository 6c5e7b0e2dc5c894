package netpoll

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The planning constants of changelist.go are kqueue's (a mismatch is a negative or
// non-zero array length here, a compile error).
var (
	_ [0]struct{} = [unix.EVFILT_READ - evfiltRead]struct{}{}
	_ [0]struct{} = [unix.EVFILT_WRITE - evfiltWrite]struct{}{}
	_ [0]struct{} = [unix.EV_ADD - evAdd]struct{}{}
	_ [0]struct{} = [unix.EV_DELETE - evDelete]struct{}{}
	_ [0]struct{} = [unix.EV_ENABLE - evEnable]struct{}{}
	_ [0]struct{} = [unix.EV_DISABLE - evDisable]struct{}{}
)

// wakeIdent identifies the poller's EVFILT_USER event (user events have their own
// identifier space, apart from descriptors).
const wakeIdent = 0x6e70 // "np"

// Poller is a kqueue. Interest changes are queued (changelist.go) and applied by the
// next Wait, in the same kevent call; a filter is added once and then enabled and
// disabled. Wake triggers an EVFILT_USER event (NOTE_TRIGGER; EV_CLEAR resets it when
// Wait reports it), as Go's runtime does (runtime/netpoll_kqueue_event.go): no pipe, and
// nothing allocated per call.
type Poller struct {
	kq  int
	evs []unix.Kevent_t
	cl  *changeList
	chg []unix.Kevent_t // the changelist passed to kevent
	// wake is the NOTE_TRIGGER change Wake submits; never written after New, so any
	// goroutine may pass it to the kernel.
	wake  [1]unix.Kevent_t
	g     closeGuard
	calls atomic.Uint64 // kevent system calls made (tests count them per request)
}

// New returns a Poller able to report up to batch events per Wait.
func New(batch int) (*Poller, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, fmt.Errorf("netpoll: kqueue: %w", err)
	}
	unix.CloseOnExec(kq)
	p := &Poller{kq: kq, evs: make([]unix.Kevent_t, max(batch, 1)), cl: newChangeList()}
	p.wake[0] = unix.Kevent_t{Ident: wakeIdent, Filter: unix.EVFILT_USER, Fflags: unix.NOTE_TRIGGER}
	reg := [1]unix.Kevent_t{{Ident: wakeIdent, Filter: unix.EVFILT_USER, Flags: unix.EV_ADD | unix.EV_CLEAR}}
	p.calls.Add(1)
	if _, err := unix.Kevent(kq, reg[:], nil, nil); err != nil {
		unix.Close(kq)
		return nil, fmt.Errorf("netpoll: kevent EVFILT_USER: %w", err)
	}
	return p, nil
}

// Add registers fd with read interest (and write interest if write is set). The change
// is applied by the next Wait; a registration the kernel refuses is reported by that
// Wait as an Event with Err set.
func (p *Poller) Add(fd int, write bool) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	p.cl.add(fd, write)
	return nil
}

// Set changes the interests of a registered fd (applied by the next Wait).
func (p *Poller) Set(fd int, read, write bool) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	return p.cl.set(fd, read, write)
}

// Remove unregisters fd (before it is closed; applied by the next Wait).
func (p *Poller) Remove(fd int) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	p.cl.remove(fd)
	return nil
}

// changelist converts the queued changes for kevent.
func (p *Poller) changelist() []unix.Kevent_t {
	p.chg = p.chg[:0]
	for _, c := range p.cl.take() {
		var k unix.Kevent_t
		unix.SetKevent(&k, c.fd, int(c.filter), int(c.flags))
		p.chg = append(p.chg, k)
	}
	return p.chg
}

// kevent is one kevent(2) call: changes applied, then up to len(p.evs) events (or the
// changes' errors) collected into p.evs, waiting at most ts (nil: no limit). With hold
// it is a raw system call (see the package comment).
func (p *Poller) kevent(changes []unix.Kevent_t, ts *unix.Timespec, hold bool) (int, error) {
	var chp unsafe.Pointer
	if len(changes) > 0 {
		chp = unsafe.Pointer(&changes[0])
	}
	p.calls.Add(1)
	var r uintptr
	var e syscall.Errno
	if hold {
		r, _, e = unix.RawSyscall6(unix.SYS_KEVENT, uintptr(p.kq), uintptr(chp), uintptr(len(changes)),
			uintptr(unsafe.Pointer(&p.evs[0])), uintptr(len(p.evs)), uintptr(unsafe.Pointer(ts)))
	} else {
		r, _, e = unix.Syscall6(unix.SYS_KEVENT, uintptr(p.kq), uintptr(chp), uintptr(len(changes)),
			uintptr(unsafe.Pointer(&p.evs[0])), uintptr(len(p.evs)), uintptr(unsafe.Pointer(ts)))
	}
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Wait applies the queued interest changes and blocks until a registered fd is ready,
// Wake is called or timeoutMs passes (-1: no timeout), and appends the ready fds to dst.
// woke reports a Wake. With hold set the wait is a raw system call (see the package
// comment); a signal ends it early with no events.
//
// A change the kernel refuses comes back as an EV_ERROR entry, and then kevent returns
// at once without waiting (kern_event.c kern_kevent: "if (nerrors) ... goto done"): an
// error for a descriptor still registered is reported as readable with Err set (its
// reader finds the cause); one for a descriptor removed since (closed before the change
// was applied) is expected and dropped.
func (p *Poller) Wait(dst []Event, timeoutMs int, hold bool) (events []Event, woke bool, err error) {
	if p.g.isClosed() {
		return dst, false, ErrClosed
	}
	changes := p.changelist()
	// Each refused change takes an event slot; beyond len(p.evs) of them kevent fails and
	// leaves the rest unapplied. Larger batches go first without waiting: the events such
	// a call collects are level-triggered and reported again, except a wake-up, kept here.
	for len(changes) > len(p.evs) {
		var zero unix.Timespec
		chunk := changes[:len(p.evs)]
		n, err := p.kevent(chunk, &zero, hold)
		changes = changes[len(p.evs):]
		if err != nil && err != unix.EINTR {
			return dst, woke, fmt.Errorf("netpoll: kevent changes: %w", err)
		}
		for i := 0; i < n; i++ {
			ev := &p.evs[i]
			switch {
			case ev.Flags&unix.EV_ERROR != 0:
				dst = p.changeError(dst, ev, chunk)
			case ev.Filter == unix.EVFILT_USER:
				woke = true
			}
		}
	}
	var ts *unix.Timespec
	if timeoutMs >= 0 {
		t := unix.NsecToTimespec((time.Duration(timeoutMs) * time.Millisecond).Nanoseconds())
		ts = &t
	}
	if woke || len(dst) > 0 {
		ts = &unix.Timespec{} // something to report already: do not block
	}
	n, err := p.kevent(changes, ts, hold)
	if err != nil {
		if err == unix.EINTR {
			return dst, woke, nil
		}
		return dst, woke, fmt.Errorf("netpoll: kevent wait: %w", err)
	}
	for i := 0; i < n; i++ {
		ev := &p.evs[i]
		if ev.Flags&unix.EV_ERROR != 0 {
			dst = p.changeError(dst, ev, changes)
			continue
		}
		if ev.Filter == unix.EVFILT_USER {
			woke = true
			continue
		}
		e := Event{Fd: int(ev.Ident)}
		switch ev.Filter {
		case unix.EVFILT_READ:
			e.Readable = true
		case unix.EVFILT_WRITE:
			e.Writable = true
			if ev.Flags&unix.EV_EOF != 0 {
				e.Readable = true
			}
		}
		dst = append(dst, e)
	}
	return dst, woke, nil
}

// changeError turns a refused change (of submitted) into an event for a registered
// descriptor. The kernel overwrites the entry's flags with EV_ERROR, so which change it
// was is looked up: an EV_DELETE refused with EBADF or ENOENT is the expected end of a
// descriptor closed after Remove (its knotes went with it, kern_event.c knote_fdclose;
// ENOENT when its number was already reused), even when the number is registered again.
func (p *Poller) changeError(dst []Event, ev *unix.Kevent_t, submitted []unix.Kevent_t) []Event {
	fd := int(ev.Ident)
	if ev.Filter == unix.EVFILT_USER || !p.cl.registered(fd) {
		return dst
	}
	errno := syscall.Errno(ev.Data)
	if errno == unix.EBADF || errno == unix.ENOENT {
		for i := range submitted {
			c := &submitted[i]
			if c.Ident == ev.Ident && c.Filter == ev.Filter && c.Flags&unix.EV_DELETE != 0 {
				return dst
			}
		}
	}
	return append(dst, Event{Fd: fd, Readable: true, Err: errno})
}

// Wake interrupts a Wait in progress, or makes the next one return at once. After Close
// it returns ErrClosed and touches no descriptor.
func (p *Poller) Wake() error {
	if !p.g.enter() {
		return ErrClosed
	}
	defer p.g.leave()
	p.calls.Add(1)
	_, _, e := unix.Syscall6(unix.SYS_KEVENT, uintptr(p.kq), uintptr(unsafe.Pointer(&p.wake[0])), 1, 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("netpoll: wake: %w", e)
	}
	return nil
}

// Close releases the poller's descriptor; later calls of any method return ErrClosed.
func (p *Poller) Close() error {
	if !p.g.close() {
		return nil
	}
	return unix.Close(p.kq)
}

func (p *Poller) wakeWriteFd() int { return p.kq }

// keventCalls is the number of kevent system calls made so far.
func (p *Poller) keventCalls() uint64 { return p.calls.Load() }
