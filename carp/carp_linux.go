package carp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// afNetlink is AF_NETLINK.
const afNetlink = unix.AF_NETLINK

func newFreeBSDSource(Config, netip.Addr) (source, error) {
	return nil, fmt.Errorf("carp: mode freebsd: %w (%s)", ErrNotSupported, runtime.GOOS)
}

// vipSource is MASTER while the VIP is assigned to a local interface (the one named in
// Interface, or any), as keepalived and ucarp do it on Linux.
type vipSource struct {
	ifname string
	vip    netip.Addr
}

func newVIPSource(cfg Config, vip netip.Addr) (source, error) {
	return &vipSource{ifname: cfg.Interface, vip: vip}, nil
}

func (v *vipSource) read(context.Context) (State, error) {
	var addrs []net.Addr
	var err error
	if v.ifname != "" {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(v.ifname); err == nil {
			addrs, err = ifi.Addrs()
		}
	} else {
		addrs, err = net.InterfaceAddrs()
	}
	if err != nil {
		return Init, fmt.Errorf("carp: list addresses of %q: %w", v.ifname, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == v.vip {
				return Master, nil
			}
		}
	}
	return Backup, nil
}

// watch subscribes to rtnetlink address (and link) events and kicks on each of them.
func (v *vipSource) watch(ctx context.Context, kick chan<- struct{}) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("carp: rtnetlink socket: %w", err)
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK,
		Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_LINK}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return fmt.Errorf("carp: rtnetlink subscribe: %w", err)
	}
	f := os.NewFile(uintptr(fd), "rtnetlink")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		f.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) {
				// Events were dropped: re-read the state.
				kickNow(kick)
				continue
			}
			return fmt.Errorf("carp: rtnetlink read: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			kickNow(kick)
			continue
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.RTM_NEWADDR, unix.RTM_DELADDR, unix.RTM_NEWLINK, unix.RTM_DELLINK:
				kickNow(kick)
			}
		}
	}
}
