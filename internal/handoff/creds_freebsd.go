package handoff

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xucredVersion is XUCRED_VERSION (sys/sys/ucred.h).
const xucredVersion = 0

// peerUID reads LOCAL_PEERCRED (sys/kern/uipc_usrreq.c): the credentials the peer had
// when it connected (or listened); a struct of another version is refused.
func (osCreds) peerUID(fd int) (uint32, error) {
	x, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, err
	}
	if x.Version != xucredVersion {
		return 0, fmt.Errorf("xucred version %d", x.Version)
	}
	return x.Uid, nil
}

// The sysctl kern.proc.nfds (CTL_KERN, KERN_PROC, KERN_PROC_NFDS, 0): the number of the
// calling process's open descriptors, read without opening one (/dev/fd lists only 0-2
// without fdescfs).
const (
	ctlKern      = 1
	kernProc     = 14
	kernProcNfds = 43
)

func openFDs() (int, error) {
	mib := [4]int32{ctlKern, kernProc, kernProcNfds, 0}
	var n int32
	size := uintptr(unsafe.Sizeof(n))
	_, _, e := unix.Syscall6(unix.SYS___SYSCTL, uintptr(unsafe.Pointer(&mib[0])), 4,
		uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&size)), 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("handoff: kern.proc.nfds: %w", e)
	}
	return int(n), nil
}

// recvFlags: descriptors arrive close-on-exec (MSG_CMSG_CLOEXEC, FreeBSD since 2013).
const recvFlags = unix.MSG_CMSG_CLOEXEC
