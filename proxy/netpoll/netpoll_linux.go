package netpoll

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller is an epoll instance with an eventfd for wake-ups.
type Poller struct {
	epfd   int
	wakefd int
	evs    []unix.EpollEvent
	g      closeGuard
}

// New returns a Poller able to report up to batch events per Wait.
func New(batch int) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	p := &Poller{epfd: epfd, wakefd: wfd, evs: make([]unix.EpollEvent, batch)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)}); err != nil {
		p.Close()
		return nil, fmt.Errorf("netpoll: add eventfd: %w", err)
	}
	return p, nil
}

// Add registers fd with read interest (and write interest if write is set).
func (p *Poller) Add(fd int, write bool) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	return p.ctl(unix.EPOLL_CTL_ADD, fd, true, write)
}

// Set changes the interests of a registered fd.
func (p *Poller) Set(fd int, read, write bool) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	return p.ctl(unix.EPOLL_CTL_MOD, fd, read, write)
}

// Remove unregisters fd (before it is closed).
func (p *Poller) Remove(fd int) error {
	if p.g.isClosed() {
		return ErrClosed
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("netpoll: epoll_ctl del fd %d: %w", fd, err)
	}
	return nil
}

func (p *Poller) ctl(op, fd int, read, write bool) error {
	ev := unix.EpollEvent{Fd: int32(fd)}
	if read {
		ev.Events |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if write {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		return fmt.Errorf("netpoll: epoll_ctl fd %d: %w", fd, err)
	}
	return nil
}

// Wait blocks until a registered fd is ready, Wake is called or timeoutMs passes (-1:
// no timeout), and appends the ready fds to dst. woke reports a Wake. With hold set the wait
// is a raw system call (see the package comment); a signal ends it early with no events.
func (p *Poller) Wait(dst []Event, timeoutMs int, hold bool) (events []Event, woke bool, err error) {
	if p.g.isClosed() {
		return dst, false, ErrClosed
	}
	var n int
	if hold {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.evs[0])),
			uintptr(len(p.evs)), uintptr(timeoutMs), 0, 0)
		n = int(r)
		if e != 0 {
			n, err = 0, e
		}
	} else {
		n, err = unix.EpollWait(p.epfd, p.evs, timeoutMs)
	}
	if err != nil {
		if err == unix.EINTR {
			return dst, false, nil
		}
		return dst, false, fmt.Errorf("netpoll: epoll_wait: %w", err)
	}
	for i := 0; i < n; i++ {
		ev := &p.evs[i]
		if int(ev.Fd) == p.wakefd {
			var buf [8]byte
			unix.Read(p.wakefd, buf[:])
			woke = true
			continue
		}
		dst = append(dst, Event{
			Fd:       int(ev.Fd),
			Readable: ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0,
			Writable: ev.Events&(unix.EPOLLOUT|unix.EPOLLERR) != 0,
		})
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
	one := [8]byte{1}
	_, err := unix.Write(p.wakefd, one[:])
	if err != nil && err != unix.EAGAIN { // EAGAIN: a wake-up is already pending
		return fmt.Errorf("netpoll: wake: %w", err)
	}
	return nil
}

// Close releases the poller's descriptors; later calls of any method return ErrClosed.
func (p *Poller) Close() error {
	if !p.g.close() {
		return nil
	}
	unix.Close(p.wakefd)
	return unix.Close(p.epfd)
}

func (p *Poller) wakeWriteFd() int { return p.wakefd }
