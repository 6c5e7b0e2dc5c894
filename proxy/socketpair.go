//go:build linux || freebsd

package proxy

import "golang.org/x/sys/unix"

// socketpair returns a connected pair of stream sockets, close-on-exec from the start (the
// proxy runs ifconfig, sysctl and pfctl concurrently: no descriptor may leak into them).
func socketpair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}
