package carp

import (
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
)

// afNetlink is AF_NETLINK on FreeBSD (x/sys/unix has no FreeBSD netlink constants).
const afNetlink = 38

// devdPipe is devd's SOCK_SEQPACKET client socket: one event per read.
const devdPipe = "/var/run/devd.seqpacket.pipe"

func newFreeBSDSource(cfg Config, vip netip.Addr) (source, error) {
	if cfg.Interface != "" {
		if _, ok := ifName(cfg.Interface); !ok {
			return nil, fmt.Errorf("carp: bad interface name %q", cfg.Interface)
		}
	}
	nl := &netlinkReader{open: func() (nlConn, error) { return openGenl(time.Second) }}
	return &freebsdSource{vip: vip, run: cmdrun.Exec{}, pipe: devdPipe, ifname: cfg.Interface, vhid: cfg.VHID,
		readNetlink: nl.read, readIoctl: readIoctl, closers: []io.Closer{nl}}, nil
}

func newVIPSource(Config, netip.Addr) (source, error) {
	return nil, fmt.Errorf("carp: mode vip: %w (%s); use carp-mode freebsd", ErrNotSupported, runtime.GOOS)
}

func readIoctl(ifname string, vhid int) (State, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Init, err
	}
	defer unix.Close(fd)
	cr := &carpreq{Count: 1, VHID: int32(vhid)}
	ifr := &ifreqCarp{Data: cr}
	ifr.Name, _ = ifName(ifname)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocgvh, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	runtime.KeepAlive(cr)
	if e != 0 {
		return Init, ioctlError(e)
	}
	if cr.VHID != int32(vhid) {
		return Init, ErrNoVHID
	}
	return State(cr.State), nil
}
