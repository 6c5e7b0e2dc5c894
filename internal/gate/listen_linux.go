package gate

import "golang.org/x/sys/unix"

// setFreeBind sets IP_FREEBIND (IPV6_FREEBIND for IPv6); it needs no privilege.
var setFreeBind = func(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
	}
	return unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1)
}

// freeBindOptional: IP_FREEBIND failing is an error of the listen.
var freeBindOptional = false
