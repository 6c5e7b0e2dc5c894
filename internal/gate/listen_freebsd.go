package gate

import "golang.org/x/sys/unix"

// setFreeBind sets IP_BINDANY (IPV6_BINDANY for IPv6).
var setFreeBind = func(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_BINDANY, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BINDANY, 1)
}

// freeBindOptional: a refused IP_BINDANY is logged, and the bind attempted anyway.
var freeBindOptional = true
