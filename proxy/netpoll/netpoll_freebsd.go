package netpoll

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller is a kqueue with a pipe for wake-ups. Read interest is an EVFILT_READ filter that
// stays added; write interest adds and deletes an EVFILT_WRITE filter.
type Poller struct {
	kq     int
	wakeR  int
	wakeW  int
	evs    []unix.Kevent_t
	writes map[int]bool // fds with an EVFILT_WRITE filter
	reads  map[int]bool // fds with an enabled EVFILT_READ filter
	g      closeGuard
}

// New returns a Poller able to report up to batch events per Wait.
func New(batch int) (*Poller, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, fmt.Errorf("netpoll: kqueue: %w", err)
	}
	unix.CloseOnExec(kq)
	var pfd [2]int
	if err := unix.Pipe2(pfd[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		unix.Close(kq)
		return nil, fmt.Errorf("netpoll: pipe2: %w", err)
	}
	p := &Poller{kq: kq, wakeR: pfd[0], wakeW: pfd[1], evs: make([]unix.Kevent_t, batch),
		writes: map[int]bool{}, reads: map[int]bool{}}
	if err := p.change(p.wakeR, unix.EVFILT_READ, unix.EV_ADD); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Poller) change(fd, filter, flags int) error {
	var ch [1]unix.Kevent_t
	unix.SetKevent(&ch[0], fd, filter, flags)
	if _, err := unix.Kevent(p.kq, ch[:], nil, nil); err != nil {
		return fmt.Errorf("netpoll: kevent fd %d filter %d: %w", fd, filter, err)
	}
	return nil
}

// Add registers fd with read interest (and write interest if write is set).
func (p *Poller) Add(fd int, write bool) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	if err := p.change(fd, unix.EVFILT_READ, unix.EV_ADD|unix.EV_ENABLE); err != nil {
		return err
	}
	p.reads[fd] = true
	if write {
		return p.Set(fd, true, true)
	}
	return nil
}

// Set changes the interests of a registered fd.
func (p *Poller) Set(fd int, read, write bool) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	if read != p.reads[fd] {
		flags := unix.EV_DISABLE
		if read {
			flags = unix.EV_ENABLE
		}
		if err := p.change(fd, unix.EVFILT_READ, flags); err != nil {
			return err
		}
		p.reads[fd] = read
	}
	if write != p.writes[fd] {
		flags := unix.EV_DELETE
		if write {
			flags = unix.EV_ADD | unix.EV_ENABLE
		}
		if err := p.change(fd, unix.EVFILT_WRITE, flags); err != nil {
			return err
		}
		if write {
			p.writes[fd] = true
		} else {
			delete(p.writes, fd)
		}
	}
	return nil
}

// Remove unregisters fd (before it is closed).
func (p *Poller) Remove(fd int) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	err := p.change(fd, unix.EVFILT_READ, unix.EV_DELETE)
	if p.writes[fd] {
		p.change(fd, unix.EVFILT_WRITE, unix.EV_DELETE)
	}
	delete(p.writes, fd)
	delete(p.reads, fd)
	return err
}

// Wait blocks until a registered fd is ready, Wake is called or timeoutMs passes (-1:
// no timeout), and appends the ready fds to dst. woke reports a Wake. With hold set the wait
// is a raw system call (see the package comment); a signal ends it early with no events.
func (p *Poller) Wait(dst []Event, timeoutMs int, hold bool) (events []Event, woke bool, err error) {
	if p.g.isClosed() {
		return dst, false, ErrClosed
	}
	var ts *unix.Timespec
	if timeoutMs >= 0 {
		t := unix.NsecToTimespec((time.Duration(timeoutMs) * time.Millisecond).Nanoseconds())
		ts = &t
	}
	var n int
	if hold {
		r, _, e := unix.RawSyscall6(unix.SYS_KEVENT, uintptr(p.kq), 0, 0,
			uintptr(unsafe.Pointer(&p.evs[0])), uintptr(len(p.evs)), uintptr(unsafe.Pointer(ts)))
		n = int(r)
		if e != 0 {
			n, err = 0, e
		}
	} else {
		n, err = unix.Kevent(p.kq, nil, p.evs, ts)
	}
	if err != nil {
		if err == unix.EINTR {
			return dst, false, nil
		}
		return dst, false, fmt.Errorf("netpoll: kevent wait: %w", err)
	}
	for i := 0; i < n; i++ {
		ev := &p.evs[i]
		fd := int(ev.Ident)
		if fd == p.wakeR {
			var buf [64]byte
			for {
				if n, err := unix.Read(p.wakeR, buf[:]); n <= 0 || err != nil {
					break
				}
			}
			woke = true
			continue
		}
		e := Event{Fd: fd}
		switch {
		case ev.Flags&unix.EV_ERROR != 0:
			e.Readable = true
		case ev.Filter == unix.EVFILT_READ:
			e.Readable = true
		case ev.Filter == unix.EVFILT_WRITE:
			e.Writable = true
			if ev.Flags&unix.EV_EOF != 0 {
				e.Readable = true
			}
		}
		dst = append(dst, e)
	}
	return dst, woke, nil
}

// Wake interrupts a Wait in progress, or makes the next one return at once. After Close
// it returns ErrClosed and touches no descriptor.
func (p *Poller) Wake() error {
	if !p.g.enter() {
		return ErrClosed
	}
	defer p.g.leave()
	_, err := unix.Write(p.wakeW, []byte{1})
	if err != nil && err != unix.EAGAIN { // EAGAIN: the pipe is full of wake-ups already
		return fmt.Errorf("netpoll: wake: %w", err)
	}
	return nil
}

// Close releases the poller's descriptors; later calls of any method return ErrClosed.
func (p *Poller) Close() error {
	if !p.g.close() {
		return nil
	}
	unix.Close(p.wakeR)
	unix.Close(p.wakeW)
	return unix.Close(p.kq)
}

func (p *Poller) wakeWriteFd() int { return p.wakeW }
