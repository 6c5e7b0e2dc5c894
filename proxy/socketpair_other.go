//go:build !linux && !freebsd && !windows

package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketpair returns a connected pair of stream sockets, marked close-on-exec under the
// fork lock (these systems have no SOCK_CLOEXEC). The proxy serves only on Linux and
// FreeBSD; this keeps the package building elsewhere.
func socketpair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	return fds, err
}
