package proxy

import "golang.org/x/sys/unix"

// setCork holds (on) or pushes (off) a socket's partial segments: TCP_NOPUSH (clearing it
// sends what is queued, tcp_usrreq.c; a close sends the data with the FIN). A drain corks
// a client's last reply so that the reply and the close leave in one segment (flush).
func setCork(fd int, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOPUSH, v)
}
