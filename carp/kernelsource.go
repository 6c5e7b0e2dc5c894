package carp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
)

// freebsdSource reads the kernel's CARP state of one vhid: netlink (14+), else the
// SIOCGVH ioctl (13, removed in 16), else `ifconfig IFNAME`. It learns the interface and
// vhid from the VIP (ifconfig's address lines) when they are not configured.
type freebsdSource struct {
	vip  netip.Addr
	run  cmdrun.Runner
	pipe string
	// The kernel readers (carp_freebsd.go); errUnavailable makes the next one be used.
	readNetlink, readIoctl func(ifname string, vhid int) (State, error)
	closers                []io.Closer // what the readers hold open (the netlink socket)
	// now and reprobe (default fallbackReprobe) time the retries of unavailable readers.
	now     func() time.Time
	reprobe time.Duration

	mu sync.Mutex // one read at a time
	// idmu guards ifname and vhid, written by resolve under mu too: devd's events are
	// matched against them without waiting for a read in progress.
	idmu   sync.Mutex
	ifname string
	vhid   int
	// Until then a reader found unavailable is skipped: netlink (or its carp family)
	// absent, SIOCGVH refused. Not for good: started before carp.ko is loaded, both
	// answer "unavailable" (sys/net/if.c: EPROTONOSUPPORT without carp_ioctl_p), and
	// ifconfig would otherwise run every poll for the life of the process.
	noNetlinkUntil time.Time
	noIoctlUntil   time.Time
}

// fallbackReprobe is how long a reader found unavailable is skipped before it is tried
// again.
const fallbackReprobe = time.Minute

func (s *freebsdSource) skipUntil() time.Time {
	now, d := time.Now, s.reprobe
	if s.now != nil {
		now = s.now
	}
	if d <= 0 {
		d = fallbackReprobe
	}
	return now().Add(d)
}

func (s *freebsdSource) skipping(until time.Time) bool {
	if until.IsZero() {
		return false
	}
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	return now().Before(until)
}

// Close releases what the kernel readers hold open.
func (s *freebsdSource) Close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// netlinkError classifies an error of the generic netlink reader: no netlink at all
// (FreeBSD 13: the socket fails with EAFNOSUPPORT or EPROTONOSUPPORT) or no "carp"
// family (carp.ko without netlink support: nlctrl answers ENOENT) make the next reader
// be used; anything else is a failed read.
func netlinkError(err error) error {
	if errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EPROTONOSUPPORT) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	return err
}

// ioctlError classifies the errno of SIOCGVH: the ioctl missing (ENOTTY, EOPNOTSUPP,
// ENOSYS; EPROTONOSUPPORT is what sys/net/if.c answers when carp.ko is not loaded) makes
// the ifconfig reader be used; ENOENT is no such vhid on the interface.
func ioctlError(e syscall.Errno) error {
	switch e {
	case syscall.ENOTTY, syscall.EOPNOTSUPP, syscall.ENOSYS, syscall.EPROTONOSUPPORT:
		return fmt.Errorf("%w: %w", errUnavailable, e)
	case syscall.ENOENT:
		return fmt.Errorf("%w: %w", ErrNoVHID, e)
	}
	return e
}

// resolve finds the interface and vhid of the VIP if they are not known yet.
func (s *freebsdSource) resolve(ctx context.Context) error {
	if s.ifname != "" && s.vhid != 0 {
		return nil
	}
	arg := "-a"
	if s.ifname != "" {
		arg = s.ifname
	}
	out, err := s.run.Run(ctx, nil, "/sbin/ifconfig", arg)
	if err != nil {
		return fmt.Errorf("carp: find the vhid of %s: %w", s.vip, err)
	}
	ifname, vhid, err := findVHID(string(out), s.vip)
	if err != nil {
		return fmt.Errorf("carp: find the vhid of %s: %w", s.vip, err)
	}
	if s.vhid != 0 && s.vhid != vhid {
		return fmt.Errorf("carp: %s has vhid %d on %s, configured carp-vhid is %d", s.vip, vhid, ifname, s.vhid)
	}
	s.idmu.Lock()
	s.ifname, s.vhid = ifname, vhid
	s.idmu.Unlock()
	return nil
}

func (s *freebsdSource) read(ctx context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.resolve(ctx); err != nil {
		return Init, err
	}
	if !s.skipping(s.noNetlinkUntil) {
		st, err := s.readNetlink(s.ifname, s.vhid)
		if err == nil {
			s.noNetlinkUntil = time.Time{}
			return st, nil
		}
		if !errors.Is(err, errUnavailable) {
			return Init, fmt.Errorf("carp: read %s vhid %d (netlink): %w", s.ifname, s.vhid, err)
		}
		s.noNetlinkUntil = s.skipUntil()
	}
	if !s.skipping(s.noIoctlUntil) {
		st, err := s.readIoctl(s.ifname, s.vhid)
		if err == nil {
			s.noIoctlUntil = time.Time{}
			return st, nil
		}
		if !errors.Is(err, errUnavailable) {
			return Init, fmt.Errorf("carp: read %s vhid %d (SIOCGVH): %w", s.ifname, s.vhid, err)
		}
		s.noIoctlUntil = s.skipUntil()
	}
	out, err := s.run.Run(ctx, nil, "/sbin/ifconfig", s.ifname)
	if err != nil {
		return Init, fmt.Errorf("carp: read %s vhid %d (ifconfig): %w", s.ifname, s.vhid, err)
	}
	c, err := parseIfconfigCarp(string(out), s.vhid)
	if err != nil {
		return Init, fmt.Errorf("carp: read %s vhid %d: %w", s.ifname, s.vhid, err)
	}
	return c.state, nil
}

// watch follows devd's CARP events for our vhid over the process's one devd connection
// (devdhub.go); it returns when devd goes away (the poller reattaches later and re-reads
// the state).
func (s *freebsdSource) watch(ctx context.Context, kick chan<- struct{}) error {
	return watchDevd(ctx, s.pipe, func(ev devdEvent) bool {
		s.idmu.Lock()
		defer s.idmu.Unlock()
		return s.vhid == 0 || ev.vhid == s.vhid && ev.ifname == s.ifname
	}, kick)
}
