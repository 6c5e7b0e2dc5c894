package handoff

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// credReader reads the user id of a unix socket's peer: LOCAL_PEERCRED on FreeBSD,
// SO_PEERCRED on Linux (creds_*.go). A variable so that tests can refuse a peer.
type credReader interface {
	peerUID(fd int) (uint32, error)
}

var creds credReader = osCreds{}

// osCreds reads the kernel's record of the peer.
type osCreds struct{}

// Room reports how many more descriptors this process can open: RLIMIT_NOFILE's soft
// limit minus those open now (openFDs, per OS), less reserve for its own use. A receiver
// that runs out of descriptors loses all of a message's, so it asks only for this many.
func Room(reserve int) (int, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("handoff: RLIMIT_NOFILE: %w", err)
	}
	open, err := openFDs()
	if err != nil {
		return 0, err
	}
	return roomFrom(uint64(rl.Cur), open, reserve), nil
}

// roomFrom is Room's arithmetic.
func roomFrom(limit uint64, open, reserve int) int {
	if limit > 1<<30 {
		limit = 1 << 30
	}
	return max(int(limit)-open-reserve, 0)
}
