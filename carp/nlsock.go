//go:build linux || freebsd

package carp

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// nlSocket is a generic netlink socket (AF_NETLINK differs: 16 on Linux, 38 on FreeBSD).
type nlSocket struct {
	f       *os.File
	timeout time.Duration
}

func openGenl(timeout time.Duration) (*nlSocket, error) {
	fd, err := unix.Socket(afNetlink, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, netlinkGeneric)
	if err != nil {
		return nil, fmt.Errorf("carp: generic netlink socket: %w", err)
	}
	return &nlSocket{f: os.NewFile(uintptr(fd), "genetlink"), timeout: timeout}, nil
}

func (s *nlSocket) send(b []byte) error {
	s.f.SetWriteDeadline(time.Now().Add(s.timeout))
	_, err := s.f.Write(b)
	return err
}

func (s *nlSocket) recv(b []byte) (int, error) {
	s.f.SetReadDeadline(time.Now().Add(s.timeout))
	return s.f.Read(b)
}

func (s *nlSocket) Close() error { return s.f.Close() }
