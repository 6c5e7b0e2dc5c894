package gate

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// freeBind sets IP_BINDANY (IPV6_BINDANY for IPv6); it needs the PRIV_NETINET_BINDANY
// privilege (root). Without it the bind is attempted anyway: in BACKUP the VIP stays
// configured on the CARP interface, so a plain bind usually works.
func freeBind(network, address string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		if network == "tcp6" {
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_BINDANY, 1)
		} else {
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BINDANY, 1)
		}
	})
}
