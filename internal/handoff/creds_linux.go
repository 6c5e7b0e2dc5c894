package handoff

import (
	"os"

	"golang.org/x/sys/unix"
)

// peerUID reads SO_PEERCRED: the credentials the peer had when it connected (or listened).
func (osCreds) peerUID(fd int) (uint32, error) {
	u, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, err
	}
	return u.Uid, nil
}

// openFDs counts the process's open descriptors (/proc/self/fd).
func openFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// recvFlags: descriptors arrive close-on-exec (MSG_CMSG_CLOEXEC, atomically).
const recvFlags = unix.MSG_CMSG_CLOEXEC
